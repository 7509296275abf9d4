// Register and login against real PostgreSQL and Redis: the token response, the access-token
// claims (checked by the core's verifier), and the same answer for a wrong username and a
// wrong password.
import t from 'tap';
import { createLocalKeySource, createVerifier } from '@jwt-mesh/core';
import { createTestApp, decodeJwt, registerAndLogin, uniqueUsername, type LoginResponse } from './helpers.js';

const ta = await createTestApp(t, { label: 'login' });
const { app } = ta;

function verifier() {
  return createVerifier({
    issuer: ta.config.jwt.issuer,
    audience: ta.config.jwt.audience,
    keys: createLocalKeySource(ta.keys.jwks()),
    now: () => ta.clock.now(),
  });
}

t.test('register: 201 {id, username}; duplicate (any case) 409; username stored lower-case', async (t) => {
  const username = uniqueUsername('Reg');
  const res = await app.inject({ method: 'POST', url: '/auth/register', payload: { username: username.toUpperCase(), password: 'correct horse' } });
  t.equal(res.statusCode, 201);
  const body = res.json() as { id: string; username: string };
  t.match(body, { id: /^[0-9a-f-]{36}$/, username });
  t.same(Object.keys(body).sort(), ['id', 'username'], 'no password hash in the answer');

  const dup = await app.inject({ method: 'POST', url: '/auth/register', payload: { username, password: 'another one' } });
  t.equal(dup.statusCode, 409);
  t.equal(dup.json().error, 'username_taken');

  const row = await ta.prisma.user.findUnique({ where: { username } });
  t.ok(row, 'stored');
  t.match(row!.passwordHash, /^scrypt\$12\$8\$1\$[\w-]+\$[\w-]+$/, 'scrypt hash with its parameters');
  t.same(row!.scopes, [...ta.config.defaultUserScopes]);
  t.same(row!.roles, [...ta.config.defaultUserRoles]);
});

t.test('login (JSON): token response per RFC 6749 §5.1 with no-store, and an RFC 9068 access token', async (t) => {
  const { userId, username, password } = await registerAndLogin(ta, 'login');
  const res = await app.inject({ method: 'POST', url: '/auth/login', payload: { username, password } });
  t.equal(res.statusCode, 200);
  t.equal(res.headers['cache-control'], 'no-store');
  t.equal(res.headers['pragma'], 'no-cache');
  const body = res.json() as LoginResponse;
  t.equal(body.token_type, 'Bearer');
  t.equal(body.expires_in, ta.config.jwt.accessTokenTtlSec);
  t.match(body.refresh_token, /^[A-Za-z0-9_-]{43}$/, '32 random bytes, base64url');
  t.equal(body.scope, ta.config.defaultUserScopes.join(' '));

  const { header, payload } = decodeJwt(body.access_token);
  t.same(header, { alg: 'RS256', kid: ta.keys.signer().kid, typ: 'at+jwt' });
  t.match(payload, {
    iss: ta.config.jwt.issuer,
    sub: userId,
    aud: ta.config.jwt.audience,
    client_id: ta.config.defaultClientId,
    scope: body.scope,
    sid: /^[0-9a-f-]{36}$/,
    jti: /^[0-9a-f-]{36}$/,
    roles: ['user'],
  });
  t.equal((payload['exp'] as number) - (payload['iat'] as number), ta.config.jwt.accessTokenTtlSec);

  const verified = await verifier().verify(body.access_token);
  t.equal(verified.claims.sub, userId, 'the core verifies it');

  const stored = await ta.prisma.refreshToken.findMany({ where: { familyId: payload['sid'] as string } });
  t.equal(stored.length, 1, 'one refresh token in the new family');
  t.not(stored[0]!.tokenHash, body.refresh_token, 'only the hash is stored');
  t.match(stored[0]!.tokenHash, /^[0-9a-f]{64}$/);
});

t.test('login (form-encoded) works the same; username is case-insensitive', async (t) => {
  const { username, password } = await registerAndLogin(ta, 'form');
  const res = await app.inject({
    method: 'POST',
    url: '/auth/login',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    payload: new URLSearchParams({ username: username.toUpperCase(), password }).toString(),
  });
  t.equal(res.statusCode, 200);
  t.ok((res.json() as LoginResponse).access_token);
});

t.test('wrong password and unknown user give the same answer', async (t) => {
  const { username } = await registerAndLogin(ta, 'wrong');
  const wrongPassword = await app.inject({ method: 'POST', url: '/auth/login', payload: { username, password: 'not the password' } });
  const unknownUser = await app.inject({ method: 'POST', url: '/auth/login', payload: { username: uniqueUsername('ghost'), password: 'not the password' } });
  t.equal(wrongPassword.statusCode, 400);
  t.equal(unknownUser.statusCode, wrongPassword.statusCode);
  t.same(unknownUser.json(), wrongPassword.json());
  t.same(wrongPassword.json(), { error: 'invalid_grant', error_description: 'invalid username or password' });
  t.equal(wrongPassword.headers['cache-control'], 'no-store');
  const metrics = await ta.metrics.registry.getSingleMetricAsString('auth_login_total');
  t.match(metrics, /auth_login_total\{outcome="invalid_credentials"\} [2-9]/);
});

t.test('scope: a requested subset is granted; more than held is invalid_scope', async (t) => {
  const { username, password } = await registerAndLogin(ta, 'scope');
  const sub = await app.inject({ method: 'POST', url: '/auth/login', payload: { username, password, scope: 'orders:read' } });
  t.equal(sub.statusCode, 200);
  t.equal((sub.json() as LoginResponse).scope, 'orders:read');
  t.equal(decodeJwt((sub.json() as LoginResponse).access_token).payload['scope'], 'orders:read');

  const more = await app.inject({ method: 'POST', url: '/auth/login', payload: { username, password, scope: 'orders:read introspect' } });
  t.equal(more.statusCode, 400);
  t.equal(more.json().error, 'invalid_scope');
});

t.test('client_id from the request goes into the token and the family', async (t) => {
  const { username, password } = await registerAndLogin(ta, 'client');
  const res = await app.inject({ method: 'POST', url: '/auth/login', payload: { username, password, client_id: 'mobile-app' } });
  t.equal(res.statusCode, 200);
  const { payload } = decodeJwt((res.json() as LoginResponse).access_token);
  t.equal(payload['client_id'], 'mobile-app');
  const session = await ta.prisma.session.findUnique({ where: { id: payload['sid'] as string } });
  t.equal(session?.clientId, 'mobile-app');
});

t.test('grant_type=password at /auth/token behaves like /auth/login', async (t) => {
  const { username, password } = await registerAndLogin(ta, 'pwgrant');
  const ok = await app.inject({ method: 'POST', url: '/auth/token', payload: { grant_type: 'password', username, password } });
  t.equal(ok.statusCode, 200);
  t.ok((ok.json() as LoginResponse).refresh_token);
  const bad = await app.inject({ method: 'POST', url: '/auth/token', payload: { grant_type: 'password', username, password: 'wrong password' } });
  t.equal(bad.statusCode, 400);
  t.equal(bad.json().error, 'invalid_grant');
});

t.test('passwords and tokens never reach the logs', async (t) => {
  const { username, password, tokens } = await registerAndLogin(ta, 'logs');
  await app.inject({ method: 'POST', url: '/auth/login', payload: { username, password: 'wrong password 1' } });
  const all = JSON.stringify(ta.logs);
  t.notOk(all.includes(password), 'no password');
  t.notOk(all.includes(tokens.refresh_token), 'no refresh token');
  t.notOk(all.includes(tokens.access_token), 'no access token');
});
