// Rate limits through @fastify/rate-limit's Redis store (shared across replicas): login per
// client address and per username, refresh per address; 429 with Retry-After.
import t from 'tap';
import { createTestApp, createTestDatabase, refresh, registerAndLogin, uniqueUsername } from './helpers.js';

const url = await createTestDatabase(t);

t.test('login: per client address, 429 with Retry-After, shared by two replicas through Redis', async (t) => {
  const env = { LOGIN_RATE_LIMIT_PER_MIN: '3', TRUST_PROXY: 'true' };
  const a = await createTestApp(t, { label: 'rl-addr', databaseUrl: url, env });
  // Replica b shares a's Redis prefix: build it with the same REDIS_PREFIX.
  const b = await createTestApp(t, { label: 'rl-addr-b', databaseUrl: url, env: { ...env, REDIS_PREFIX: a.prefix } });
  const from = { 'x-forwarded-for': '203.0.113.7' };
  const login = (app: typeof a.app, username: string) =>
    app.inject({ method: 'POST', url: '/auth/login', headers: from, payload: { username, password: 'wrong password' } });
  const statuses = [];
  for (const app of [a.app, b.app, a.app]) statuses.push((await login(app, uniqueUsername('addr'))).statusCode);
  t.same(statuses, [400, 400, 400], 'three attempts allowed (over two replicas)');
  const limited = await login(b.app, uniqueUsername('addr'));
  t.equal(limited.statusCode, 429);
  t.match(limited.json(), { error: 'too_many_requests', error_description: /retry in \d+ seconds/ });
  const retryAfter = Number(limited.headers['retry-after']);
  t.ok(retryAfter >= 1 && retryAfter <= 60, `Retry-After ${retryAfter}`);
  const other = await login(a.app, uniqueUsername('addr'));
  t.equal(other.statusCode, 429, 'still limited on the other replica');
  const elsewhere = await a.app.inject({ method: 'POST', url: '/auth/login', headers: { 'x-forwarded-for': '198.51.100.9' }, payload: { username: uniqueUsername('addr'), password: 'wrong password' } });
  t.equal(elsewhere.statusCode, 400, 'another address is not limited');
});

t.test('login: per username, whatever the address (key from the body)', async (t) => {
  const ta = await createTestApp(t, { label: 'rl-user', databaseUrl: url, env: { LOGIN_USERNAME_RATE_LIMIT_PER_MIN: '2', TRUST_PROXY: 'true' } });
  const { username, password } = await registerAndLogin(ta, 'victim'); // 1st attempt for this username
  const attempt = (ip: string, u = username, p = 'wrong password') =>
    ta.app.inject({ method: 'POST', url: '/auth/login', headers: { 'x-forwarded-for': ip }, payload: { username: u, password: p } });
  t.equal((await attempt('192.0.2.1')).statusCode, 400, '2nd attempt');
  const third = await attempt('192.0.2.2', username.toUpperCase(), password);
  t.equal(third.statusCode, 429, 'the 3rd attempt from a new address, even with the right password and another case, is limited');
  t.ok(Number(third.headers['retry-after']) >= 1);
  const viaToken = await ta.app.inject({ method: 'POST', url: '/auth/token', headers: { 'x-forwarded-for': '192.0.2.3' }, payload: { grant_type: 'password', username, password } });
  t.equal(viaToken.statusCode, 429, 'the password grant shares the username limit');
  t.equal((await attempt('192.0.2.4', uniqueUsername('someone-else'))).statusCode, 400, 'other usernames are not limited');
});

t.test('refresh: per client address', async (t) => {
  const ta = await createTestApp(t, { label: 'rl-refresh', databaseUrl: url, env: { REFRESH_RATE_LIMIT_PER_MIN: '2' } });
  const { tokens } = await registerAndLogin(ta, 'rlr');
  const r1 = await refresh(ta, tokens.refresh_token);
  t.equal(r1.statusCode, 200);
  t.equal((await refresh(ta, 'A'.repeat(43))).statusCode, 400);
  const r3 = await refresh(ta, r1.json().refresh_token);
  t.equal(r3.statusCode, 429);
  t.ok(Number(r3.headers['retry-after']) >= 1, 'Retry-After');
  t.equal(r3.headers['x-ratelimit-limit'], '2');
});
