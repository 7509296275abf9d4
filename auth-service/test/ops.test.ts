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
