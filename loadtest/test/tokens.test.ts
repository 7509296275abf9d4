import t from 'tap';
import { TokenPool } from '../src/tokens.js';
import { startFakeEdge } from './helpers/fake-edge.js';

const users = [{ username: 'alice', password: 'alice-password' }, { username: 'bob', password: 'bob-password' }];

t.test('the pool logs in round-robin and hands tokens out round-robin', async (t) => {
  const edge = await startFakeEdge();
  t.teardown(edge.close);
  const pool = await TokenPool.create({ baseUrl: edge.url, users, size: 3 });
  t.teardown(() => pool.close());
  t.equal(edge.counts.logins, 3);
  t.same(pool.sessions.map((s) => s.username), ['alice', 'bob', 'alice']);
  t.equal(pool.accessToken(0), pool.sessions[0]?.access);
  t.equal(pool.accessToken(4), pool.sessions[1]?.access);
});

t.test('refresh rotates every session; a failed refresh falls back to a login', async (t) => {
  const edge = await startFakeEdge();
  t.teardown(edge.close);
  const pool = await TokenPool.create({ baseUrl: edge.url, users, size: 2 });
  t.teardown(() => pool.close());
  const before = pool.sessions.map((s) => [s.access, s.refresh]);
  await pool.refreshAll();
  t.equal(edge.counts.refreshes, 2);
  t.equal(pool.stats.refreshes, 2);
  pool.sessions.forEach((s, i) => {
    t.not(s.access, before[i]?.[0], 'new access token');
    t.not(s.refresh, before[i]?.[1], 'rotated refresh token');
  });

  const broken = await startFakeEdge({ refreshFails: true });
  t.teardown(broken.close);
  const pool2 = await TokenPool.create({ baseUrl: broken.url, users, size: 1 });
  t.teardown(() => pool2.close());
  await pool2.refreshAll();
  t.equal(broken.counts.refreshes, 1);
  t.equal(broken.counts.logins, 2, 'logged in again after invalid_grant');
  t.equal(pool2.stats.refreshFailures, 0);
});

t.test('a login that fails names the user and the status', async (t) => {
  const edge = await startFakeEdge();
  t.teardown(edge.close);
  await t.rejects(TokenPool.create({ baseUrl: edge.url, users: [{ username: 'carol', password: 'nope' }], size: 1 }), {
    name: 'TokenError',
    status: 401,
    message: /login as carol .*status 401/,
  });
});
