// OpenTelemetry spans of the auth-service (real PostgreSQL and Redis): the SERVER span of each
// request, auth.login / auth.token / auth.revoke / auth.logout under it, and no password, access
// token or refresh token in any span. Spans go to the SDK's InMemorySpanExporter.
import t from 'tap';
import { SpanKind } from '@opentelemetry/api';
import { installTestTracing, type ReadableSpan } from '@jwt-mesh/tracing/testing';
import { createTestApp, refresh, registerAndLogin, type LoginResponse } from './helpers.js';

const tracing = installTestTracing('auth-service');
t.teardown(() => tracing.uninstall());
const ta = await createTestApp(t, { label: 'tracing' });
const { app } = ta;
t.beforeEach(() => tracing.reset());

const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const EDGE_SPAN = '00f067aa0ba902b7';
const traceparent = `00-${TRACE_ID}-${EDGE_SPAN}-01`;

/** Waits until a SERVER span named `name` ended (it ends in onResponse, after the answer). */
async function serverSpan(name: string): Promise<ReadableSpan> {
  for (let i = 0; i < 500 && tracing.named(name).length === 0; i++) await new Promise((r) => setTimeout(r, 10));
  const [span] = tracing.named(name);
  if (span === undefined) throw new Error(`no span ${name}`);
  return span;
}

function childOf(parent: ReadableSpan, name: string): ReadableSpan | undefined {
  return tracing.named(name).find((s) => s.parentSpanContext?.spanId === parent.spanContext().spanId);
}

t.test('login: SERVER span from the traceparent, auth.login under it', async (t) => {
  const { username, password } = await registerAndLogin(ta, 'trace');
  tracing.reset();
  const res = await app.inject({ method: 'POST', url: '/auth/login', headers: { traceparent }, payload: { username, password } });
  t.equal(res.statusCode, 200);
  const server = await serverSpan('POST /auth/login');
  t.equal(server.kind, SpanKind.SERVER);
  t.equal(server.spanContext().traceId, TRACE_ID);
  t.equal(server.parentSpanContext?.spanId, EDGE_SPAN);
  t.match(server.attributes, { 'http.request.method': 'POST', 'http.route': '/auth/login', 'http.response.status_code': 200 });
  const login = childOf(server, 'auth.login');
  t.ok(login, 'auth.login is a child of the SERVER span');
  t.equal(login?.attributes['jwt_mesh.outcome'], 'ok');
});

t.test('a wrong password: auth.login outcome invalid_grant, not a span error', async (t) => {
  const { username } = await registerAndLogin(ta, 'trace-bad');
  tracing.reset();
  const res = await app.inject({ method: 'POST', url: '/auth/login', payload: { username, password: 'not-the-password-123' } });
  t.equal(res.statusCode, 400);
  const [login] = tracing.named('auth.login');
  t.match(login?.attributes, { 'jwt_mesh.outcome': 'invalid_grant', 'error.type': 'invalid_grant' });
  t.equal(login?.status.code, 0, 'a refused login is not a server error');
});

t.test('token: auth.token with grant_type refresh_token, and password (auth.login nested)', async (t) => {
  const { username, password, tokens } = await registerAndLogin(ta, 'trace-tok');
  tracing.reset();
  t.equal((await refresh(ta, tokens.refresh_token)).statusCode, 200);
  const [viaRefresh] = tracing.named('auth.token');
  t.match(viaRefresh?.attributes, { 'jwt_mesh.grant_type': 'refresh_token', 'jwt_mesh.outcome': 'ok' });

  tracing.reset();
  const res = await app.inject({ method: 'POST', url: '/auth/token', payload: { grant_type: 'password', username, password } });
  t.equal(res.statusCode, 200);
  const [viaPassword] = tracing.named('auth.token');
  t.equal(viaPassword?.attributes['jwt_mesh.grant_type'], 'password');
  t.ok(viaPassword && childOf(viaPassword, 'auth.login'), 'the password grant runs auth.login under auth.token');

  tracing.reset();
  const odd = await app.inject({ method: 'POST', url: '/auth/token', payload: { grant_type: 'urn:something-client-chosen' } });
  t.equal(odd.statusCode, 400);
  t.match(tracing.named('auth.token')[0]?.attributes, { 'jwt_mesh.grant_type': 'unsupported', 'jwt_mesh.outcome': 'unsupported_grant_type' });
});

t.test('revoke: auth.revoke says what it revoked', async (t) => {
  const { tokens } = await registerAndLogin(ta, 'trace-rev');
  tracing.reset();
  t.equal((await app.inject({ method: 'POST', url: '/auth/revoke', payload: { token: tokens.access_token } })).statusCode, 200);
  t.match(tracing.named('auth.revoke')[0]?.attributes, { 'jwt_mesh.revoked': 'jti', 'jwt_mesh.token_type_hint': 'none', 'jwt_mesh.outcome': 'ok' });

  tracing.reset();
  const res = await app.inject({ method: 'POST', url: '/auth/revoke', payload: { token: tokens.refresh_token, token_type_hint: 'refresh_token' } });
  t.equal(res.statusCode, 200);
  t.match(tracing.named('auth.revoke')[0]?.attributes, { 'jwt_mesh.revoked': 'sid', 'jwt_mesh.token_type_hint': 'refresh_token' });

  tracing.reset();
  await app.inject({ method: 'POST', url: '/auth/revoke', payload: { token: 'unknown-token-value' } });
  t.equal(tracing.named('auth.revoke')[0]?.attributes['jwt_mesh.revoked'], 'none', 'an unknown token revokes nothing (RFC 7009 §2.2: still 200)');
});

t.test('logout: auth.logout with the core authenticate span under it', async (t) => {
  const { tokens } = await registerAndLogin(ta, 'trace-out');
  tracing.reset();
  const res = await app.inject({ method: 'POST', url: '/auth/logout', headers: { authorization: `Bearer ${tokens.access_token}` }, payload: {} });
  t.equal(res.statusCode, 204);
  const [logout] = tracing.named('auth.logout');
  t.equal(logout?.attributes['jwt_mesh.outcome'], 'ok');
  t.ok(logout && childOf(logout, 'authenticate'), 'the Bearer check is traced under auth.logout');
});

t.test('no span holds a password, an access token, a refresh token or an Authorization value', async (t) => {
  const { username, password, tokens } = await registerAndLogin(ta, 'trace-sec');
  const wrong = 'wrong-password-secret-987';
  await app.inject({ method: 'POST', url: '/auth/login', headers: { traceparent }, payload: { username, password: wrong } });
  const again = (await app.inject({ method: 'POST', url: '/auth/token', payload: { grant_type: 'password', username, password } })).json() as LoginResponse;
  const rotated = (await refresh(ta, tokens.refresh_token)).json() as LoginResponse;
  await refresh(ta, tokens.refresh_token); // reuse of a rotated refresh token
  await app.inject({ method: 'POST', url: '/auth/introspect', headers: { authorization: `Bearer ${again.access_token}` }, payload: { token: rotated.access_token } });
  await app.inject({ method: 'POST', url: '/auth/revoke', payload: { token: again.refresh_token, token_type_hint: 'refresh_token' } });
  await app.inject({ method: 'POST', url: '/auth/logout', headers: { authorization: `Bearer ${rotated.access_token}` }, payload: { refresh_token: rotated.refresh_token } });
  await serverSpan('POST /auth/logout');

  const dump = tracing.dump();
  t.ok(tracing.spans().length >= 14, 'spans were recorded');
  const secrets = {
    password,
    'wrong password': wrong,
    'access token': tokens.access_token,
    'refresh token': tokens.refresh_token,
    'second access token': again.access_token,
    'second refresh token': again.refresh_token,
    'rotated access token': rotated.access_token,
    'rotated refresh token': rotated.refresh_token,
    'a signature': tokens.access_token.split('.')[2]!,
  };
  for (const [what, secret] of Object.entries(secrets)) t.notOk(dump.includes(secret), `no ${what} in any span`);
  t.notOk(dump.includes(username), 'no username either');
  t.notOk(dump.includes('Bearer'), 'no Authorization value');
});
