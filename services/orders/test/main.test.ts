/**
 * `src/main.ts` as a script starts it: configuration from the environment (a bad value stops
 * start-up naming the variable), readiness, and the graceful drain on SIGTERM (exit 0).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { markRevocationsSynced, startTestIssuer, uniquePrefix, waitUntil } from '@jwt-mesh/runtime/testing';
import t from 'tap';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

function run(env: Record<string, string>): { child: ChildProcess; out: () => string; exited: Promise<number | null> } {
  let out = '';
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    cwd: root,
    env: { ...process.env, LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, out: () => out, exited };
}

t.test('a bad variable stops start-up with one line naming it', async (t) => {
  const bad = run({ UPSTREAM_URL: 'ftp://inventory', PORT: '0' });
  t.equal(await bad.exited, 1);
  t.match(bad.out(), /orders: cannot start: invalid configuration: UPSTREAM_URL/);
  const badShared = run({ JWT_CLOCK_TOLERANCE_SEC: 'soon', PORT: '0' });
  t.equal(await badShared.exited, 1);
  t.match(badShared.out(), /JWT_CLOCK_TOLERANCE_SEC/);
});

t.test('starts from env, becomes ready, verifies, drains on SIGTERM and exits 0', async (t) => {
  const issuer = await startTestIssuer();
  t.teardown(() => issuer.close());
  const prefix = uniquePrefix('orders-main');
  await markRevocationsSynced(prefix);
  const svc = run({
    REDIS_PREFIX: prefix,
    PORT: '0',
    HOST: '127.0.0.1',
    JWT_ISSUER: issuer.issuer,
    JWT_AUDIENCE: issuer.audience,
    JWKS_URL: issuer.jwksUrl,
    // Nobody listens there: calls to inventory fail with 502, the service itself still works.
    UPSTREAM_URL: 'http://127.0.0.1:1',
  });
  t.teardown(() => {
    if (svc.child.exitCode === null) svc.child.kill('SIGKILL');
  });
  await waitUntil(() => /Server listening at http:\/\/127\.0\.0\.1:\d+/.test(svc.out()), 'orders to listen', 600);
  const url = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(svc.out())![1]!;
  let ready = false;
  for (let i = 0; i < 200 && !ready; i++) {
    ready = (await fetch(`${url}/readyz`)).status === 200;
    if (!ready) await new Promise((r) => setTimeout(r, 25));
  }
  t.ok(ready, '/readyz turned 200');
  t.equal((await fetch(`${url}/api/orders/ord-1001`)).status, 401);
  const token = await issuer.mint({ scope: 'orders:read' });
  const res = await fetch(`${url}/api/orders/ord-1001`, { headers: { authorization: `Bearer ${token}` } });
  t.equal(res.status, 502, 'verified locally, then inventory was unreachable');
  t.notOk(svc.out().includes(token), 'the token never reaches the log');

  svc.child.kill('SIGTERM');
  t.equal(await svc.exited, 0);
  t.match(svc.out(), /"msg":"draining"/);
  t.match(svc.out(), /"msg":"drained"/);
});
