// Bad request bodies get 400 with an RFC 6749 §5.2-style error, never a 500; the database or
// Redis unreachable (injected faults) gives 503 temporarily_unavailable with a clear description.
import { randomBytes } from 'node:crypto';
import t from 'tap';
import { Redis } from 'ioredis';
import { buildApp } from '../src/app.js';
import { createPrisma } from '../src/db.js';
import { createTestApp, refresh, registerAndLogin, TEST_SCRYPT, uniqueUsername } from './helpers.js';

const ta = await createTestApp(t, { label: 'bad' });
const { app } = ta;

type Case = { name: string; url: string; payload?: unknown; body?: string; type?: string; error?: string; description?: RegExp | string };
const long = (n: number) => 'a'.repeat(n);

const cases: Case[] = [
  { name: 'register: missing password', url: '/auth/register', payload: { username: 'someone' }, description: 'password is required' },
  { name: 'register: missing everything', url: '/auth/register', payload: {}, description: 'username is required' },
  { name: 'register: username a number', url: '/auth/register', payload: { username: 12345, password: 'password1' }, description: 'username must be a string (given once)' },
  { name: 'register: password an object', url: '/auth/register', payload: { username: 'someone', password: { $ne: '' } }, description: /password must be a string/ },
  { name: 'register: password null', url: '/auth/register', payload: { username: 'someone', password: null }, description: /password must be a string/ },
  { name: 'register: username too short', url: '/auth/register', payload: { username: 'ab', password: 'password1' }, description: 'username must be at least 3 characters' },
  { name: 'register: username too long', url: '/auth/register', payload: { username: long(65), password: 'password1' }, description: 'username must be at most 64 characters' },
  { name: 'register: username unsafe characters', url: '/auth/register', payload: { username: 'bob smith<script>', password: 'password1' }, description: /A-Z a-z 0-9/ },
  { name: 'register: password too short', url: '/auth/register', payload: { username: 'someone', password: 'short' }, description: 'password must be at least 8 characters' },
  { name: 'register: huge password', url: '/auth/register', payload: { username: 'someone', password: long(10_000) }, description: 'password must be at most 256 characters' },
  { name: 'login: body is an array', url: '/auth/login', payload: [1, 2], description: /body must be a JSON object/ },
  { name: 'login: body is a JSON string', url: '/auth/login', body: '"hello"', type: 'application/json', description: /body must be a JSON object/ },
  { name: 'login: not JSON', url: '/auth/login', body: '{"username": "x",', type: 'application/json', description: 'the body is not valid JSON' },
  { name: 'login: plain text', url: '/auth/login', body: 'username=x', type: 'text/plain', description: /Content-Type must be/ },
  { name: 'login: XML', url: '/auth/login', body: '<login/>', type: 'application/xml', description: /Content-Type must be/ },
  { name: 'login: empty JSON body', url: '/auth/login', body: '', type: 'application/json', description: /empty|username is required/ },
  { name: 'login: repeated form field', url: '/auth/login', body: 'username=alice&username=bob&password=password1', type: 'application/x-www-form-urlencoded', description: 'username must be a string (given once)' },
  { name: 'login: body over the limit', url: '/auth/login', payload: { username: 'x', password: long(20_000) }, description: /larger than 16384 bytes/ },
  { name: 'login: huge scope', url: '/auth/login', payload: { username: 'someone', password: 'password1', scope: long(2000) }, description: 'scope must be at most 1024 characters' },
  { name: 'login: bad client_id', url: '/auth/login', payload: { username: 'someone', password: 'password1', client_id: 'a b' }, description: /client_id must be/ },
  { name: 'token: no grant_type', url: '/auth/token', payload: {}, description: 'grant_type is required' },
  { name: 'token: grant_type a number', url: '/auth/token', payload: { grant_type: 1 }, description: /grant_type must be a string/ },
  { name: 'token: refresh without refresh_token', url: '/auth/token', payload: { grant_type: 'refresh_token' }, description: 'refresh_token is required' },
  { name: 'token: refresh_token an array', url: '/auth/token', payload: { grant_type: 'refresh_token', refresh_token: ['a', 'b'] }, description: /refresh_token must be a string/ },
  { name: 'token: refresh_token empty', url: '/auth/token', payload: { grant_type: 'refresh_token', refresh_token: '' }, description: 'refresh_token is required' },
  { name: 'token: refresh_token a number', url: '/auth/token', payload: { grant_type: 'refresh_token', refresh_token: 12345 }, description: /refresh_token must be a string/ },
  { name: 'token: refresh_token repeated (form)', url: '/auth/token', body: 'grant_type=refresh_token&refresh_token=a&refresh_token=b', type: 'application/x-www-form-urlencoded', description: 'refresh_token must be a string (given once)' },
  { name: 'token: refresh body over the limit', url: '/auth/token', body: `grant_type=refresh_token&refresh_token=${long(20_000)}`, type: 'application/x-www-form-urlencoded', description: /larger than 16384 bytes/ },
  { name: 'revoke: token missing', url: '/auth/revoke', payload: { token_type_hint: 'access_token' }, description: 'token is required' },
  { name: 'revoke: token a boolean', url: '/auth/revoke', payload: { token: true }, description: /token must be a string/ },
  { name: 'revoke: huge token', url: '/auth/revoke', payload: { token: long(9000) }, description: 'token must be at most 8192 characters' },
];

t.test('bad bodies: 400 invalid_request naming the field, no-store, never a 500', async (t) => {
  for (const c of cases) {
    const res = await app.inject({
      method: 'POST',
      url: c.url,
      ...(c.body !== undefined ? { body: c.body, headers: { 'content-type': c.type ?? 'application/json' } } : { payload: c.payload as object }),
    });
    t.equal(res.statusCode, 400, `${c.name}: 400`);
    const body = res.json() as { error: string; error_description: string };
    t.equal(body.error, c.error ?? 'invalid_request', `${c.name}: error`);
    t.match(body.error_description, c.description ?? /./, `${c.name}: description`);
    t.same(Object.keys(body).sort(), ['error', 'error_description'], `${c.name}: RFC 6749 §5.2 shape`);
    t.equal(res.headers['cache-control'], 'no-store', `${c.name}: no-store`);
  }
  const tooBig = cases.find((c) => c.name === 'register: huge password')!;
  const res = await app.inject({ method: 'POST', url: tooBig.url, payload: tooBig.payload as object });
  t.notOk(res.body.includes(long(100)), 'the value is never echoed');
});

t.test('refresh_token of any shape that is not a live refresh token: 400 invalid_grant (RFC 6749 §5.2)', async (t) => {
  const user = await registerAndLogin(ta, 'shapes');
  const live = user.tokens.refresh_token;
  const shapes: Array<[string, string]> = [
    ['a JWT (our own access token)', user.tokens.access_token],
    ['a random string shaped like ours (43 base64url)', randomBytes(32).toString('base64url')],
    ['a short random string', 'abc'],
    ['one character', 'x'],
    ['513 characters', long(513)],
    ['an over-long value (10 000 characters)', long(10_000)],
    ['non-ASCII', 'ü'.repeat(300)],
    ['whitespace', '   '],
    ['a NUL byte', '\u0000'],
    ['a live token with a trailing space', `${live} `],
    ['a live token, truncated', live.slice(0, -1)],
  ];
  for (const [what, value] of shapes) {
    for (const [how, send] of [
      ['JSON', () => app.inject({ method: 'POST', url: '/auth/token', payload: { grant_type: 'refresh_token', refresh_token: value } })],
      ['form', () => refresh(ta, value)],
    ] as const) {
      const res = await send();
      t.equal(res.statusCode, 400, `${what} (${how}): 400`);
      t.same(res.json(), { error: 'invalid_grant', error_description: res.json().error_description }, `${what} (${how}): invalid_grant`);
      t.equal(res.headers['cache-control'], 'no-store');
      if (value.length > 20) t.notOk(res.body.includes(value.slice(0, 20)), `${what} (${how}): the value is never echoed`);
    }
  }
  const ok = await refresh(ta, live);
  t.equal(ok.statusCode, 200, 'and the live token, untouched by all this, still refreshes');
});

t.test('unknown route: 404 JSON', async (t) => {
  const res = await app.inject({ method: 'GET', url: '/auth/nothing' });
  t.equal(res.statusCode, 404);
  t.same(res.json(), { error: 'not_found', error_description: 'no such endpoint' });
});

t.test('database unreachable (injected fault): 503 temporarily_unavailable with Retry-After, never 500', async (t) => {
  const deadPrisma = createPrisma('postgresql://postgres@127.0.0.1:1/jwt_mesh', { connectionTimeoutMs: 500 });
  t.teardown(() => deadPrisma.$disconnect());
  const dead = buildApp({ config: ta.config, prisma: deadPrisma, redis: ta.redis, keys: ta.keys, revocation: ta.revocation, clock: ta.clock, scrypt: TEST_SCRYPT, logger: ta.app.log as never });
  t.teardown(() => dead.close());
  await dead.ready();
  const user = await registerAndLogin(ta, 'dbdown');
  const requests = [
    { url: '/auth/login', payload: { username: 'someone', password: 'password1' } },
    { url: '/auth/register', payload: { username: uniqueUsername('dbdown'), password: 'password1' } },
    { url: '/auth/token', payload: { grant_type: 'refresh_token', refresh_token: user.tokens.refresh_token } },
    { url: '/auth/revoke', payload: { token: user.tokens.refresh_token } },
  ];
  for (const r of requests) {
    const res = await dead.inject({ method: 'POST', url: r.url, payload: r.payload });
    t.equal(res.statusCode, 503, `${r.url}: 503`);
    t.same(res.json(), { error: 'temporarily_unavailable', error_description: 'the database cannot be reached' }, `${r.url}: clear error`);
    t.equal(res.headers['retry-after'], '1');
  }
  const ready = await dead.inject({ method: 'GET', url: '/readyz' });
  t.equal(ready.statusCode, 503);
  t.match(ready.json(), { status: 'unavailable', checks: { database: 'unavailable', redis: 'ok' } });
});

t.test('Redis unreachable (injected fault): rate-limited routes fail closed with 503, readiness 503', async (t) => {
  const deadRedis = new Redis('redis://127.0.0.1:1', { maxRetriesPerRequest: 0, enableOfflineQueue: false, lazyConnect: true, retryStrategy: () => null });
  deadRedis.on('error', () => undefined);
  t.teardown(() => deadRedis.disconnect());
  const dead = buildApp({ config: ta.config, prisma: ta.prisma, redis: deadRedis, keys: ta.keys, revocation: ta.revocation, clock: ta.clock, scrypt: TEST_SCRYPT, logger: ta.app.log as never });
  t.teardown(() => dead.close());
  await dead.ready();
  const res = await dead.inject({ method: 'POST', url: '/auth/login', payload: { username: 'someone', password: 'password1' } });
  t.equal(res.statusCode, 503);
  t.equal(res.json().error, 'temporarily_unavailable');
  const ready = await dead.inject({ method: 'GET', url: '/readyz' });
  t.equal(ready.statusCode, 503);
  t.match(ready.json(), { checks: { database: 'ok', redis: 'unavailable' } });
});

t.test('readiness waits for the revocation re-sync (verifiers fail closed on a Redis not re-synced)', async (t) => {
  let synced = false;
  const app = buildApp({ config: ta.config, prisma: ta.prisma, redis: ta.redis, keys: ta.keys, revocation: ta.revocation, revocationSync: { synced: () => synced }, clock: ta.clock, scrypt: TEST_SCRYPT, logger: ta.app.log as never });
  t.teardown(() => app.close());
  await app.ready();
  const pending = await app.inject({ method: 'GET', url: '/readyz' });
  t.equal(pending.statusCode, 503, 'not ready before the first re-sync');
  t.match(pending.json(), { status: 'unavailable', checks: { database: 'ok', redis: 'ok', revocation_sync: 'pending' } });
  synced = true;
  const ready = await app.inject({ method: 'GET', url: '/readyz' });
  t.equal(ready.statusCode, 200, 'ready once it has run');
  t.match(ready.json(), { status: 'ready', checks: { revocation_sync: 'ok' } });
});

t.test('a revocation that cannot be published asks the re-sync for a run at once', async (t) => {
  const requested: string[] = [];
  // Injected fault: Redis refuses the write; everything else is the real store.
  const failing = Object.assign(Object.create(ta.revocation) as typeof ta.revocation, {
    revoke: async () => {
      throw new Error('injected: Redis write failed');
    },
  });
  const app = buildApp({
    config: ta.config,
    prisma: ta.prisma,
    redis: ta.redis,
    keys: ta.keys,
    revocation: failing,
    revocationSync: { synced: () => true, request: (reason: string) => void requested.push(reason) },
    clock: ta.clock,
    scrypt: TEST_SCRYPT,
    logger: ta.app.log as never,
  });
  t.teardown(() => app.close());
  await app.ready();
  const user = await registerAndLogin(ta, 'publish-fail');
  const res = await app.inject({ method: 'POST', url: '/auth/revoke', payload: { token: user.tokens.access_token } });
  t.equal(res.statusCode, 503, 'the client is told it did not propagate');
  t.same(requested, ['a revocation could not be published'], 'and the re-sync was asked for a run');
});
