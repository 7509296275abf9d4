// The real entry point: starts with real dependencies on port 0, serves, and drains on SIGTERM;
// a bad configuration stops start-up naming the variable.
import { spawn } from 'node:child_process';
import path from 'node:path';
import t from 'tap';
import { AUTH_DIR, createTestDatabase, REDIS_URL, redisPrefix } from './helpers.js';

const url = await createTestDatabase(t);

function start(env: Record<string, string>) {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(AUTH_DIR, 'src/main.ts')], {
    cwd: AUTH_DIR,
    env: { ...process.env, DATABASE_URL: url, REDIS_URL, PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr.on('data', (c: Buffer) => (err += c.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const listening = new Promise<string>((resolve, reject) => {
    child.stdout.on('data', () => {
      const m = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(out);
      if (m) resolve(m[1]!);
    });
    void exited.then((code) => reject(new Error(`exited ${code}: ${err}`)));
  });
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  return { child, listening, exited, output: () => out, errors: () => err };
}

t.test('starts, is ready, issues tokens, drains on SIGTERM and exits 0', async (t) => {
  const s = start({ REDIS_PREFIX: redisPrefix(t, 'main') });
  const base = await s.listening;
  const ready = await fetch(`${base}/readyz`);
  t.equal(ready.status, 200);
  const reg = await fetch(`${base}/auth/register`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: `main.${process.pid}`, password: 'main password' }) });
  t.equal(reg.status, 201);
  const login = await fetch(`${base}/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: `main.${process.pid}`, password: 'main password' }) });
  t.equal(login.status, 200);
  const { access_token } = (await login.json()) as { access_token: string };
  const logout = await fetch(`${base}/auth/logout`, { method: 'POST', headers: { authorization: `Bearer ${access_token}` } });
  t.equal(logout.status, 204, 'logout through the core Redis revocation store');
  s.child.kill('SIGTERM');
  t.equal(await s.exited, 0, 'clean exit');
  t.match(s.output(), /"msg":"draining"[\s\S]*"msg":"stopped"/);
  t.notOk(s.output().includes(access_token), 'no token in the logs');
});

t.test('a bad variable stops start-up with exit 2 naming it', async (t) => {
  const s = start({ ACCESS_TOKEN_TTL_SEC: 'five minutes' });
  s.listening.catch(() => undefined);
  t.equal(await s.exited, 2);
  t.match(s.errors(), /auth-service: invalid configuration: ACCESS_TOKEN_TTL_SEC: must be a whole number/);
});

t.test('a bad hash-limiter knob stops start-up with exit 2 naming it', async (t) => {
  const s = start({ PASSWORD_HASH_QUEUE_MAX: 'lots' });
  s.listening.catch(() => undefined);
  t.equal(await s.exited, 2);
  t.match(s.errors(), /auth-service: invalid configuration: PASSWORD_HASH_QUEUE_MAX: expected auto or a whole number from 0 to 100000 \(got "lots"\)/);
});
