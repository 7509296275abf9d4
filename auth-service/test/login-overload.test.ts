// Logins under overload, against real PostgreSQL and Redis: past the hash limiter's slots and
// queue, logins are answered 503 temporarily_unavailable with Retry-After at once, the admitted
// ones succeed, and retried logins succeed once the burst is over. Users are stored with the
// production scrypt cost so each check takes long enough for a burst to pile up.
import { randomUUID } from 'node:crypto';
import t from 'tap';
import { hashPassword } from '../src/passwords.js';
import { createTestApp, createTestDatabase, uniqueUsername, type TestApp } from './helpers.js';

const url = await createTestDatabase(t);

/** `n` users with the production KDF cost (N=2^15), all with one password. */
async function productionCostUsers(ta: TestApp, n: number, password: string): Promise<string[]> {
  const passwordHash = await hashPassword(password); // SCRYPT_DEFAULTS
  const usernames = Array.from({ length: n }, () => uniqueUsername('burst'));
  await ta.prisma.user.createMany({
    data: usernames.map((username) => ({ id: randomUUID(), username, passwordHash, scopes: ['orders:read'], roles: ['user'] })),
  });
  return usernames;
}

const login = (ta: TestApp, username: string, password: string) =>
  ta.app.inject({ method: 'POST', url: '/auth/login', payload: { username, password } });

t.test('a burst over the bound: fast 503s with Retry-After, the admitted logins succeed, retries succeed after', async (t) => {
  const ta = await createTestApp(t, {
    label: 'burst',
    databaseUrl: url,
    env: { PASSWORD_HASH_CONCURRENCY: '1', PASSWORD_HASH_QUEUE_MAX: '2', PASSWORD_HASH_QUEUE_TIMEOUT_MS: '30000' },
  });
  const password = 'burst password';
  const users = await productionCostUsers(ta, 12, password);
  const settled: Array<{ username: string; status: number; order: number }> = [];
  const responses = await Promise.all(
    users.map(async (username) => {
      const res = await login(ta, username, password);
      settled.push({ username, status: res.statusCode, order: settled.length });
      return res;
    }),
  );
  const ok = responses.filter((r) => r.statusCode === 200);
  const shed = responses.filter((r) => r.statusCode === 503);
  t.equal(ok.length + shed.length, users.length, 'every answer is 200 or 503: no 500, no hang');
  t.ok(ok.length >= 3, `at least the running and the queued logins succeed (${ok.length})`);
  t.ok(shed.length >= 1, `logins past the queue are shed (${shed.length})`);
  for (const r of shed) {
    t.equal(r.headers['retry-after'], '30', 'Retry-After in seconds (the wait bound)');
    t.equal(r.headers['cache-control'], 'no-store');
    t.same(r.json(), { error: 'temporarily_unavailable', error_description: 'too many password checks in progress; retry in 30 seconds' });
  }
  const lastOk = Math.max(...settled.filter((s) => s.status === 200).map((s) => s.order));
  t.ok(
    settled.filter((s) => s.status === 503).every((s) => s.order < lastOk),
    'each 503 was answered while admitted logins were still hashing (shed at once, not after a wait)',
  );
  t.match(await ta.metrics.registry.getSingleMetricAsString('auth_password_hash_shed_total'), new RegExp(`reason="queue_full"\\} ${shed.length}\\b`));

  // After the burst: the shed users retry and get in.
  for (const s of settled.filter((x) => x.status === 503)) {
    const again = await login(ta, s.username, password);
    t.equal(again.statusCode, 200, `retried login of ${s.username} succeeds`);
  }
  const metrics = await ta.app.inject({ method: 'GET', url: '/metrics' });
  t.match(metrics.body, /auth_password_hash_in_flight 0\b/);
  t.match(metrics.body, /auth_password_hash_queued 0\b/);
});

t.test('a shed answer is the same for a known and an unknown user, and registration is bounded too', async (t) => {
  const ta = await createTestApp(t, {
    label: 'shed-same',
    databaseUrl: url,
    env: { PASSWORD_HASH_CONCURRENCY: '1', PASSWORD_HASH_QUEUE_MAX: '0', PASSWORD_HASH_QUEUE_TIMEOUT_MS: '1000' },
  });
  const [known] = await productionCostUsers(ta, 1, 'some password');
  // The slot holder's hash costs N=2^17 (128 MiB, several times the production cost), so it
  // still runs while the others arrive.
  const holder = uniqueUsername('holder');
  await ta.prisma.user.create({
    data: { id: randomUUID(), username: holder, passwordHash: await hashPassword('some password', { log2N: 17, r: 8, p: 1 }), roles: ['user'] },
  });
  const holding = login(ta, holder, 'some password');
  while (!/auth_password_hash_in_flight 1\b/.test((await ta.app.inject({ method: 'GET', url: '/metrics' })).body)) {
    await new Promise((r) => setTimeout(r, 2));
  }
  const [k, u, reg] = await Promise.all([
    login(ta, known!, 'some password'),
    login(ta, uniqueUsername('ghost'), 'some password'),
    ta.app.inject({ method: 'POST', url: '/auth/register', payload: { username: uniqueUsername('newbie'), password: 'some password' } }),
  ]);
  t.equal((await holding).statusCode, 200, 'the slot holder logs in');
  t.equal(k.statusCode, 503, 'a known user is shed');
  t.equal(u.statusCode, 503, 'an unknown user is shed');
  t.same(u.json(), k.json(), 'same body');
  t.equal(u.headers['retry-after'], k.headers['retry-after'], 'same Retry-After');
  t.equal(reg.statusCode, 503, 'register waits for the same slots');
  t.equal(reg.headers['retry-after'], '1');
});

t.test('a request that waits past PASSWORD_HASH_QUEUE_TIMEOUT_MS gets the 503', async (t) => {
  const ta = await createTestApp(t, {
    label: 'wait',
    databaseUrl: url,
    env: { PASSWORD_HASH_CONCURRENCY: '1', PASSWORD_HASH_QUEUE_MAX: '10', PASSWORD_HASH_QUEUE_TIMEOUT_MS: '1' },
  });
  const users = await productionCostUsers(ta, 4, 'wait password');
  const responses = await Promise.all(users.map((u) => login(ta, u, 'wait password')));
  const statuses = responses.map((r) => r.statusCode);
  t.ok(statuses.includes(200), 'the first login runs');
  t.ok(statuses.includes(503), 'those left waiting longer than 1 ms are shed');
  t.ok(statuses.every((s) => s === 200 || s === 503), `only 200 and 503 (${statuses.join(' ')})`);
  t.match(await ta.metrics.registry.getSingleMetricAsString('auth_password_hash_shed_total'), /reason="wait_timeout"\} [1-9]/);
});
