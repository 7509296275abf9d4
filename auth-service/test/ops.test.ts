// Liveness, readiness and Prometheus metrics.
import t from 'tap';
import { createTestApp, registerAndLogin } from './helpers.js';

const ta = await createTestApp(t, { label: 'ops' });

t.test('healthz and readyz', async (t) => {
  const h = await ta.app.inject({ method: 'GET', url: '/healthz' });
  t.equal(h.statusCode, 200);
  t.same(h.json(), { status: 'ok' });
  const r = await ta.app.inject({ method: 'GET', url: '/readyz' });
  t.equal(r.statusCode, 200);
  t.same(r.json(), { status: 'ready', checks: { database: 'ok', redis: 'ok', signing_key: 'ok' } });
});

t.test('metrics: requests by route and status, latency, login and refresh outcomes', async (t) => {
  const u = await registerAndLogin(ta, 'metrics');
  await ta.app.inject({ method: 'POST', url: '/auth/token', payload: { grant_type: 'refresh_token', refresh_token: u.tokens.refresh_token } });
  await ta.app.inject({ method: 'POST', url: '/auth/token', payload: { grant_type: 'refresh_token', refresh_token: 'A'.repeat(43) } });
  const res = await ta.app.inject({ method: 'GET', url: '/metrics' });
  t.equal(res.statusCode, 200);
  t.match(res.headers['content-type'], /^text\/plain/);
  const text = res.body;
  t.match(text, /http_requests_total\{method="POST",route="\/auth\/login",status="200"\} 1/);
  t.match(text, /http_requests_total\{method="POST",route="\/auth\/token",status="400"\} 1/);
  t.match(text, /http_request_duration_seconds_bucket\{le="[\d.]+",method="POST",route="\/auth\/register"\}/);
  t.match(text, /auth_login_total\{outcome="success"\} 1/);
  t.match(text, /auth_refresh_total\{outcome="rotated"\} 1/);
  t.match(text, /auth_refresh_total\{outcome="invalid"\} 1/);
  t.match(text, /auth_password_hash_duration_seconds_count \d+/);
});

t.test('user CLI: creates a user with chosen scopes and roles, updates it on a second run', async (t) => {
  const { main } = await import('../scripts/user.js');
  const env = { ...process.env, DATABASE_URL: ta.config.databaseUrl };
  const out: string[] = [];
  const username = `seed.${process.pid}.${Date.now().toString(36)}`;
  t.equal(await main(['--username', username, '--password', 'seed password', '--scope', 'orders:read introspect', '--role', 'admin'], env, (l) => out.push(l)), 0);
  t.match(out[0], /scopes=\[orders:read introspect\] roles=\[admin\]/);
  const login = await ta.app.inject({ method: 'POST', url: '/auth/login', payload: { username, password: 'seed password' } });
  t.equal(login.statusCode, 200);
  t.equal(login.json().scope, 'orders:read introspect');
  t.equal(await main(['--username', username, '--password', 'new password!', '--scope', 'orders:read'], env, () => undefined), 0);
  const again = await ta.app.inject({ method: 'POST', url: '/auth/login', payload: { username, password: 'new password!' } });
  t.equal(again.json().scope, 'orders:read');
  const errors: string[] = [];
  const orig = console.error;
  console.error = (m: string) => errors.push(m);
  try {
    t.equal(await main(['--username', 'x', '--password', 'seed password'], env, () => undefined), 2);
  } finally {
    console.error = orig;
  }
  t.match(errors[0], /--username must be/);
});
