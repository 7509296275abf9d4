import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import { z } from 'zod';
import {
  commonEnvSchema,
  ConfigError,
  createLogger,
  createMetrics,
  createServiceApp,
  createVerifierStack,
  drain,
  HttpError,
  parseEnv,
  port,
  redactUrl,
} from '../src/index.js';
import { captureLogs, readyTestStack, startTestIssuer, TEST_REDIS_URL, uniquePrefix, waitUntil } from '../src/testing.js';

const issuer = await startTestIssuer();
const stack = await readyTestStack(issuer, uniquePrefix('kit'));
t.teardown(async () => {
  await stack.close();
  await issuer.close();
});

t.test('parseEnv: defaults, coercion, frozen; a bad value names the variable', async (t) => {
  const schema = commonEnvSchema.extend({ PORT: port(3001) });
  const cfg = parseEnv(schema, { PORT: '8080' });
  t.equal(cfg.PORT, 8080);
  t.equal(cfg.HOST, '127.0.0.1');
  t.equal(cfg.LOG_LEVEL, 'info');
  t.ok(Object.isFrozen(cfg));
  t.throws(() => parseEnv(schema, { PORT: 'eighty' }), ConfigError);
  t.throws(() => parseEnv(schema, { PORT: '70000' }), /PORT/);
  t.throws(() => parseEnv(schema, { LOG_LEVEL: 'loud' }), /LOG_LEVEL/);
  t.throws(() => parseEnv(z.object({ UPSTREAM_URL: z.string().url() }), {}), /UPSTREAM_URL/);
});

t.test('redactUrl hides token-like query values only', async (t) => {
  t.equal(redactUrl('/a?access_token=abc&x=1'), '/a?access_token=[REDACTED]&x=1');
  t.equal(redactUrl('/a?x=1&refresh_token=r&code=c'), '/a?x=1&refresh_token=[REDACTED]&code=[REDACTED]');
  t.equal(redactUrl('/a?tokens=1'), '/a?tokens=1');
});

t.test('the logger redacts credentials wherever they are logged', async (t) => {
  const logs = captureLogs();
  const log = createLogger({ service: 'kit', stream: logs.stream });
  log.info({ req: { headers: { authorization: 'Bearer SECRET1', cookie: 'c=SECRET2', 'x-request-id': 'r1' }, url: '/x' } }, 'a');
  log.info({ token: 'SECRET3', body: { refresh_token: 'SECRET4', password: 'SECRET5' } }, 'b');
  log.flush();
  const text = logs.text();
  for (const s of ['SECRET1', 'SECRET2', 'SECRET3', 'SECRET4', 'SECRET5']) t.notOk(text.includes(s), s);
  t.ok(text.includes('r1'), 'other headers are kept');
});

t.test('graceful drain: in-flight requests finish, new connections are refused, closers run after', async (t) => {
  const app = await createServiceApp({
    service: 'kit',
    logger: createLogger({ service: 'kit', level: 'silent' }),
    metrics: createMetrics('kit', { defaultMetrics: false }),
    authenticator: stack.authenticator,
    readiness: stack.readiness,
  });
  let entered!: () => void;
  const inHandler = new Promise<void>((r) => (entered = r));
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  app.get('/slow', { config: { auth: false } }, async () => {
    entered();
    await released;
    return { done: true };
  });
  await app.listen({ port: 0, host: '127.0.0.1' });
  const { port: p } = app.server.address() as AddressInfo;
  const url = `http://127.0.0.1:${p}`;
  t.equal((await fetch(`${url}/readyz`)).status, 200);

  const inflight = fetch(`${url}/slow`, { headers: { connection: 'close' } });
  await inHandler;
  const order: string[] = [];
  const drained = drain({ app, logger: createLogger({ service: 'kit', level: 'silent' }), closers: [async () => void order.push('closer')] });
  t.equal(app.draining, true, 'marked draining at once');
  await waitUntil(() => !app.server.listening, 'the listener to close');
  await t.rejects(fetch(`${url}/healthz`), 'new connections are refused');
  order.push('released');
  release();
  const res = await inflight;
  t.equal(res.status, 200, 'the in-flight request finished');
  t.same(await res.json(), { done: true });
  t.equal(await drained, 0);
  t.same(order, ['released', 'closer'], 'closers run after in-flight requests');
});

t.test('readiness stays 503 while the JWK Set cannot be fetched; errors are JSON, never 500 for bad input', async (t) => {
  const closed = createServer();
  await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
  const deadPort = (closed.address() as AddressInfo).port;
  await new Promise<void>((r) => closed.close(() => r()));
  const down = createVerifierStack({
    issuer: issuer.issuer,
    audience: issuer.audience,
    jwksUrl: `http://127.0.0.1:${deadPort}/.well-known/jwks.json`,
    redisUrl: TEST_REDIS_URL,
    revocationPrefix: uniquePrefix('kit-down'),
  });
  t.teardown(() => down.close());
  const app = await createServiceApp({
    service: 'kit',
    logger: createLogger({ service: 'kit', level: 'silent' }),
    metrics: createMetrics('kit', { defaultMetrics: false }),
    authenticator: down.authenticator,
    readiness: down.readiness,
  });
  app.get('/boom', { config: { auth: false } }, async () => {
    throw new Error('unexpected');
  });
  app.get('/teapot', { config: { auth: false } }, async () => {
    throw new HttpError(409, 'conflict', 'already there');
  });
  app.post('/echo', { config: { auth: false } }, async (request) => request.body);
  await waitUntil(() => down.readiness.report().checks['revocation'] === true, 'the revocation subscriber');
  const ready = await app.inject({ method: 'GET', url: '/readyz' });
  t.equal(ready.statusCode, 503);
  t.same(ready.json().checks, { jwks: false, revocation: true });

  // With the JWK Set unreachable, a token cannot be checked: 503, never an allow.
  const token = await issuer.mint({});
  const denied = await app.inject({ method: 'GET', url: '/nothing', headers: { authorization: `Bearer ${token}` } });
  t.equal(denied.statusCode, 503);
  t.equal(denied.json().error, 'temporarily_unavailable');

  const boom = await app.inject({ method: 'GET', url: '/boom' });
  t.equal(boom.statusCode, 500);
  t.same(boom.json(), { error: 'internal_error', error_description: 'the request could not be completed' });
  const conflict = await app.inject({ method: 'GET', url: '/teapot' });
  t.equal(conflict.statusCode, 409);
  t.same(conflict.json(), { error: 'conflict', error_description: 'already there' });
  const badJson = await app.inject({ method: 'POST', url: '/echo', headers: { 'content-type': 'application/json' }, payload: '{x' });
  t.equal(badJson.statusCode, 400);
  const badType = await app.inject({ method: 'POST', url: '/echo', headers: { 'content-type': 'application/xml' }, payload: '<x/>' });
  t.equal(badType.statusCode, 415);
  await app.close();
});
