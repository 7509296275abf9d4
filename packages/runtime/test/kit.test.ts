import { createServer } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import t from 'tap';
import { z } from 'zod';
import {
  commonEnvSchema,
  ConfigError,
  createLogger,
  createMetrics,
  createServiceVerifierStack,
  createVerifierStack,
  drain,
  parseEnv,
  port,
  redactUrl,
  throttledWarn,
} from '../src/index.js';
import { createServiceApp, HttpError } from '../src/fastify.js';
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

t.test('parseEnv: an empty or blank variable takes its default (PORT= is not port 0)', async (t) => {
  const schema = commonEnvSchema.extend({ PORT: port(3001) });
  const cfg = parseEnv(schema, { PORT: '', HOST: '  ', LOG_LEVEL: '' });
  t.equal(cfg.PORT, 3001);
  t.equal(cfg.HOST, '127.0.0.1');
  t.equal(cfg.LOG_LEVEL, 'info');
  t.throws(() => parseEnv(z.object({ UPSTREAM_URL: z.string().url() }), { UPSTREAM_URL: '' }), /UPSTREAM_URL/, 'a required variable set empty is still missing');
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

t.test("a Redis error carrying its AUTH command never puts the password in a log line (ioredis attaches the failed command's arguments)", async (t) => {
  const logs = captureLogs();
  const log = createLogger({ service: 'kit', stream: logs.stream });
  const err = Object.assign(new Error('WRONGPASS invalid username-password pair'), { command: { name: 'auth', args: ['jwtmesh-verifier', 'SECRET6'] } });
  log.warn({ err }, 'logged whole');
  throttledWarn(log, 'throttled')(err, 'connection');
  log.flush();
  const text = logs.text();
  t.notOk(text.includes('SECRET6'), 'no password, whichever way the error is logged');
  t.ok(text.includes('WRONGPASS'), 'the message is kept');
  t.equal(logs.lines().length, 2);
});

t.test('request logs: at the default level a success writes no line; a denial and a failure write exactly one, with the trace headers and nothing secret', async (t) => {
  const logs = captureLogs();
  const app = await createServiceApp({
    service: 'kit',
    logger: createLogger({ service: 'kit', stream: logs.stream }),
    metrics: createMetrics('kit', { defaultMetrics: false }),
    authenticator: stack.authenticator,
    readiness: stack.readiness,
  });
  app.get('/open', { config: { auth: false } }, async () => ({ ok: true }));
  app.get('/boom', { config: { auth: false } }, async () => {
    throw new Error('kaboom');
  });
  app.get('/private', async () => ({ ok: true }));
  t.teardown(() => app.close());
  const trace = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
  const ok = await app.inject({ url: '/open', headers: { 'x-request-id': 'log-ok' } });
  t.equal(ok.statusCode, 200);
  const denied = await app.inject({ url: '/private', headers: { authorization: 'Bearer not.a.jwt', traceparent: trace, 'x-request-id': 'log-denied' } });
  t.equal(denied.statusCode, 401);
  const failed = await app.inject({ url: '/boom', headers: { cookie: 'c=SECRET', 'x-request-id': 'log-failed' } });
  t.equal(failed.statusCode, 500);
  const lines = logs.lines();
  t.same(lines.filter((l) => l['reqId'] === 'log-ok'), [], 'no line for a success at info');
  const d = lines.filter((l) => l['reqId'] === 'log-denied') as Array<{ level: number; req: { headers: Record<string, string> }; res: { statusCode: number } }>;
  t.equal(d.length, 1, 'one line for the denial');
  t.equal(d[0]?.level, 30, 'at info');
  t.equal(d[0]?.res.statusCode, 401);
  t.equal(d[0]?.req.headers['traceparent'], trace, 'traceparent is on the line');
  t.equal(d[0]?.req.headers['authorization'], '[REDACTED]');
  t.same((d[0] as unknown as { auth: unknown }).auth, { code: 'token_malformed' }, 'with the denial\'s code');
  const f = lines.filter((l) => l['reqId'] === 'log-failed') as Array<{ level: number; err?: { message: string }; req: { headers: Record<string, string> } }>;
  t.equal(f.length, 1, 'one line for the failure');
  t.equal(f[0]?.level, 50, 'at error');
  t.equal(f[0]?.err?.message, 'kaboom', 'with the error');
  t.equal(f[0]?.req.headers['cookie'], '[REDACTED]');
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

t.test('drain grace: /readyz 503 while requests are still served (Connection: close); then the listener closes after in-flight requests', async (t) => {
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

  // The grace period ends when the test says so (an injected clock, nothing timed).
  let graceAsked = -1;
  let endGrace!: () => void;
  const graceOver = new Promise<void>((r) => (endGrace = r));
  const order: string[] = [];
  const drained = drain({
    app,
    logger: createLogger({ service: 'kit', level: 'silent' }),
    closers: [async () => void order.push('closer')],
    graceMs: 1000,
    sleep: async (ms) => {
      graceAsked = ms;
      await graceOver;
    },
  });
  t.equal(graceAsked, 1000, 'waits the grace period');
  const ready = await fetch(`${url}/readyz`);
  t.equal(ready.status, 503, '/readyz 503 during the grace period');
  t.equal(((await ready.json()) as { draining: boolean }).draining, true);
  const during = await fetch(`${url}/healthz`);
  t.equal(during.status, 200, 'still serving during the grace period');
  t.equal(during.headers.get('connection'), 'close', 'answers close the connection while draining');
  t.ok(app.server.listening, 'the listener is still open');
  t.same(order, [], 'nothing closed yet');

  // Two pipelined requests on one connection: the first is in flight when the listener closes,
  // the second is read only after it, while closing.
  const raw = connect(p, '127.0.0.1');
  let answer = '';
  raw.on('data', (d: Buffer) => (answer += d.toString()));
  const ended = new Promise<void>((r) => raw.on('close', () => r()));
  raw.write('GET /slow HTTP/1.1\r\nhost: kit\r\n\r\nGET /healthz HTTP/1.1\r\nhost: kit\r\n\r\n');
  await inHandler;
  endGrace();
  await waitUntil(() => !app.server.listening, 'the listener to close');
  await t.rejects(fetch(`${url}/healthz`), 'new connections are refused after the grace period');
  release();
  await ended;
  t.equal(await drained, 0);
  t.same(order, ['closer'], 'closers ran after the server closed');
  const responses = answer.split(/(?=HTTP\/1\.1 )/);
  t.match(responses[0], /^HTTP\/1\.1 200 /, 'the in-flight request finished');
  t.match(responses[0], /connection: close/i);
  // Its answer carried Connection: close (draining), so the pipelined request behind it is never
  // started: the connection ends instead (Envoy never pipelines; no request starts on a closing connection).
  t.equal(responses.length, 1, 'the request pipelined behind it is not served');
});

t.test('a request that arrives while the listener closes gets 503 temporarily_unavailable with Retry-After', async (t) => {
  const app = await createServiceApp({
    service: 'kit',
    logger: createLogger({ service: 'kit', level: 'silent' }),
    metrics: createMetrics('kit', { defaultMetrics: false }),
    authenticator: stack.authenticator,
    readiness: stack.readiness,
  });
  await app.ready();
  app.listenerClosing = true;
  const res = await app.inject({ method: 'GET', url: '/api/anything', headers: { authorization: 'Bearer x.y.z' } });
  t.equal(res.statusCode, 503, 'before authentication and routing');
  t.equal(res.headers['retry-after'], '1');
  t.same(res.json(), { error: 'temporarily_unavailable', error_description: 'kit is shutting down; retry' });
  await app.close();
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

t.test("createServiceVerifierStack: the service's registry gets the failed JWK Set fetches and the stack's cache counters", async (t) => {
  const closed = createServer();
  await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
  const deadPort = (closed.address() as AddressInfo).port;
  await new Promise<void>((r) => closed.close(() => r()));
  const metrics = createMetrics('kit', { defaultMetrics: false });
  const down = createServiceVerifierStack(
    'kit',
    { issuer: issuer.issuer, audience: issuer.audience, jwksUrl: `http://127.0.0.1:${deadPort}/.well-known/jwks.json`, redisUrl: TEST_REDIS_URL, revocationPrefix: uniquePrefix('kit-metrics') },
    createLogger({ service: 'kit', level: 'silent' }),
    metrics.registry,
  );
  t.teardown(() => down.close());
  await waitUntil(() => down.jwksStats().failures.network > 0, 'a failed JWK Set fetch');
  const text = await metrics.registry.metrics();
  t.match(text, /jwtmesh_jwks_fetch_failures_total\{reason="network",service="kit"\} [1-9]/, 'the refused fetch counted by reason');
  t.match(text, /jwtmesh_jwks_fetch_failures_total\{reason="identity",service="kit"\} 0/, 'every reason exported from the start');
  t.match(text, /jwt_mesh_verified_token_cache_lookups_total\{result="miss",service="kit"\} 0/, 'the verified-token cache counter');
  t.match(text, /jwt_mesh_revocation_cache_lookups_total\{result="hit",service="kit"\} 0/, 'the revocation cache counter');
});
