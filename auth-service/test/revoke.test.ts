// Revocation (RFC 7009), logout and introspection (RFC 7662): the database row, the Redis entry
// and its TTL, and the core's authenticator rejecting the token afterwards.
import t from 'tap';
import { createAuthenticator, createLocalKeySource, createVerifier, type Authenticator } from '@jwt-mesh/core';
import { createRedisRevocation } from '@jwt-mesh/core/redis';
import { createTestApp, decodeJwt, REDIS_URL, refresh, registerAndLogin, type LoginResponse } from './helpers.js';

const ta = await createTestApp(t, { label: 'revoke' });
const { app } = ta;

const checker = createRedisRevocation({ redisUrl: REDIS_URL, prefix: ta.prefix });
t.teardown(() => checker.close());
await checker.ready();
const mesh: Authenticator = createAuthenticator({
  verifier: createVerifier({
    issuer: ta.config.jwt.issuer,
    audience: ta.config.jwt.audience,
    keys: createLocalKeySource(ta.keys.jwks()),
    now: () => ta.clock.now(),
  }),
  revocation: checker,
  now: () => ta.clock.now(),
});
const decide = (token: string) => mesh.decide({ method: 'GET', path: '/x', headers: { authorization: `Bearer ${token}` } });
const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

/** A user holding the `introspect` scope (a resource server). */
async function introspector(): Promise<string> {
  const u = await registerAndLogin(ta, 'rs');
  await ta.prisma.user.update({ where: { id: u.userId }, data: { scopes: { push: 'introspect' } } });
  const res = await app.inject({ method: 'POST', url: '/auth/login', payload: { username: u.username, password: u.password, scope: 'introspect' } });
  return (res.json() as LoginResponse).access_token;
}

t.test('revoke an access token: DB row, Redis entry with TTL = exp - now (+ tolerance), the core rejects it', async (t) => {
  const { tokens, userId } = await registerAndLogin(ta, 'rat');
  t.equal((await decide(tokens.access_token)).allow, true, 'valid before');
  const { jti, exp, sid } = decodeJwt(tokens.access_token).payload as { jti: string; exp: number; sid: string };

  ta.clock.advance(100_000); // 100 s into the token's 300 s life
  const res = await app.inject({
    method: 'POST',
    url: '/auth/revoke',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    payload: new URLSearchParams({ token: tokens.access_token, token_type_hint: 'access_token' }).toString(),
  });
  t.equal(res.statusCode, 200);
  t.equal(res.body, '');

  const row = await ta.prisma.revokedAccessToken.findUnique({ where: { jti } });
  t.match(row, { jti, sub: userId, sid });
  t.equal(row!.expiresAt.getTime(), exp * 1000, 'kept until the token expires');

  const ttl = await ta.redis.ttl(`${ta.prefix}rv:jti:${jti}`);
  const remaining = exp - Math.floor(ta.clock.now() / 1000);
  t.ok(ttl >= remaining && ttl <= remaining + ta.config.jwt.clockToleranceSec + 1, `TTL ${ttl}s covers the remaining ${remaining}s (+${ta.config.jwt.clockToleranceSec}s tolerance)`);

  const d = await decide(tokens.access_token);
  t.equal(d.allow, false);
  if (!d.allow) t.equal(d.error.code, 'token_revoked');

  const other = await refresh(ta, tokens.refresh_token);
  t.equal(other.statusCode, 200, 'revoking an access token leaves the session');
  t.equal((await decide((other.json() as LoginResponse).access_token)).allow, true);
});

t.test('revoke a refresh token: the family and its sid (RFC 7009 §2.1), also without a hint', async (t) => {
  const { tokens } = await registerAndLogin(ta, 'rrt');
  const sid = decodeJwt(tokens.access_token).payload['sid'] as string;
  const res = await app.inject({ method: 'POST', url: '/auth/revoke', payload: { token: tokens.refresh_token } });
  t.equal(res.statusCode, 200);
  t.equal((await ta.prisma.session.findUnique({ where: { id: sid } }))?.revokedReason, 'revoke');
  t.ok((await ta.redis.ttl(`${ta.prefix}rv:sid:${sid}`)) > 0, 'sid in Redis');
  t.equal((await decide(tokens.access_token)).allow, false, "the family's access token is rejected");
  t.equal((await refresh(ta, tokens.refresh_token)).statusCode, 400);

  const wrongHint = await registerAndLogin(ta, 'hint');
  const r2 = await app.inject({ method: 'POST', url: '/auth/revoke', payload: { token: wrongHint.tokens.refresh_token, token_type_hint: 'access_token' } });
  t.equal(r2.statusCode, 200);
  t.equal((await refresh(ta, wrongHint.tokens.refresh_token)).statusCode, 400, 'a wrong hint is extended to the other type');
});

t.test('unknown, invalid and expired tokens: 200 and nothing written (RFC 7009 §2.2)', async (t) => {
  const before = await ta.prisma.revokedAccessToken.count();
  for (const token of ['A'.repeat(43), 'garbage', 'a.b.c', 'eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.']) {
    const res = await app.inject({ method: 'POST', url: '/auth/revoke', payload: { token } });
    t.equal(res.statusCode, 200, `token ${token.slice(0, 10)}`);
  }
  t.equal(await ta.prisma.revokedAccessToken.count(), before);
  const missing = await app.inject({ method: 'POST', url: '/auth/revoke', payload: {} });
  t.equal(missing.statusCode, 400);
  t.same(missing.json(), { error: 'invalid_request', error_description: 'token is required' });
});

t.test('logout: revokes the sid and the jti; the refresh token stops working', async (t) => {
  const { tokens } = await registerAndLogin(ta, 'logout');
  const { jti, sid } = decodeJwt(tokens.access_token).payload as { jti: string; sid: string };
  const res = await app.inject({ method: 'POST', url: '/auth/logout', headers: bearer(tokens.access_token) });
  t.equal(res.statusCode, 204);
  t.ok(await ta.prisma.revokedAccessToken.findUnique({ where: { jti } }), 'jti row');
  t.equal((await ta.prisma.session.findUnique({ where: { id: sid } }))?.revokedReason, 'logout');
  t.ok((await ta.redis.exists(`${ta.prefix}rv:sid:${sid}`, `${ta.prefix}rv:jti:${jti}`)) === 2, 'both Redis entries');
  t.equal((await decide(tokens.access_token)).allow, false);
  t.equal((await refresh(ta, tokens.refresh_token)).statusCode, 400);

  const again = await app.inject({ method: 'POST', url: '/auth/logout', headers: bearer(tokens.access_token) });
  t.equal(again.statusCode, 401, 'a revoked token cannot log out again');
  t.match(again.headers['www-authenticate'], /error="invalid_token"/);
});

t.test('logout with another session\'s refresh_token of the same user revokes it too; another user\'s is ignored', async (t) => {
  const a = await registerAndLogin(ta, 'multi');
  const second = (await app.inject({ method: 'POST', url: '/auth/login', payload: { username: a.username, password: a.password } })).json() as LoginResponse;
  const stranger = await registerAndLogin(ta, 'stranger');
  const res = await app.inject({
    method: 'POST',
    url: '/auth/logout',
    headers: bearer(a.tokens.access_token),
    payload: { refresh_token: second.refresh_token },
  });
  t.equal(res.statusCode, 204);
  t.equal((await refresh(ta, second.refresh_token)).statusCode, 400, 'the second session is gone');
  const res2 = await app.inject({
    method: 'POST',
    url: '/auth/logout',
    headers: bearer(second.access_token),
    payload: { refresh_token: stranger.tokens.refresh_token },
  });
  t.equal(res2.statusCode, 401, 'second session token is already revoked');
  t.equal((await refresh(ta, stranger.tokens.refresh_token)).statusCode, 200, "a stranger's session is untouched");
});

t.test('logout needs a Bearer token: RFC 6750 errors from the core', async (t) => {
  const none = await app.inject({ method: 'POST', url: '/auth/logout' });
  t.equal(none.statusCode, 401);
  t.equal(none.headers['www-authenticate'], 'Bearer');
  const bad = await app.inject({ method: 'POST', url: '/auth/logout', headers: bearer('not-a-jwt.x.y') });
  t.equal(bad.statusCode, 401);
  t.match(bad.headers['www-authenticate'], /^Bearer error="invalid_token"/);
  t.equal(bad.json().error, 'invalid_token');
  const refreshAsAccess = await registerAndLogin(ta, 'rfa');
  const r = await app.inject({ method: 'POST', url: '/auth/logout', headers: bearer(refreshAsAccess.tokens.refresh_token) });
  t.equal(r.statusCode, 401, 'a refresh token is not an access token');
});

t.test('introspection: protected by a Bearer token with scope introspect', async (t) => {
  const user = await registerAndLogin(ta, 'intro-user');
  const none = await app.inject({ method: 'POST', url: '/auth/introspect', payload: { token: user.tokens.access_token } });
  t.equal(none.statusCode, 401);
  const noScope = await app.inject({ method: 'POST', url: '/auth/introspect', headers: bearer(user.tokens.access_token), payload: { token: user.tokens.access_token } });
  t.equal(noScope.statusCode, 403);
  t.match(noScope.headers['www-authenticate'], /error="insufficient_scope".*scope="introspect"/);
});

t.test('introspection answers (RFC 7662 §2.2): active access and refresh tokens, inactive otherwise', async (t) => {
  const rs = await introspector();
  const user = await registerAndLogin(ta, 'intro');
  let caller = rs;
  const ask = async (token: string, hint?: string) => {
    const res = await app.inject({ method: 'POST', url: '/auth/introspect', headers: bearer(caller), payload: hint ? { token, token_type_hint: hint } : { token } });
    t.equal(res.statusCode, 200);
    t.equal(res.headers['cache-control'], 'no-store');
    return res.json() as Record<string, unknown>;
  };
  const claims = decodeJwt(user.tokens.access_token).payload;
  const active = await ask(user.tokens.access_token);
  t.same(active, {
    active: true,
    scope: user.tokens.scope,
    client_id: ta.config.defaultClientId,
    username: user.username,
    token_type: 'Bearer',
    exp: claims['exp'],
    iat: claims['iat'],
    sub: user.userId,
    aud: ta.config.jwt.audience,
    iss: ta.config.jwt.issuer,
    jti: claims['jti'],
    sid: claims['sid'],
  });
  const refreshInfo = await ask(user.tokens.refresh_token, 'refresh_token');
  t.match(refreshInfo, { active: true, token_type: 'refresh_token', sub: user.userId, sid: claims['sid'], username: user.username, client_id: ta.config.defaultClientId });

  for (const junk of ['x', 'A'.repeat(43), 'a.b.c']) t.same(await ask(junk), { active: false }, 'junk is inactive');

  const rotated = (await refresh(ta, user.tokens.refresh_token)).json() as LoginResponse;
  t.same(await ask(user.tokens.refresh_token), { active: false }, 'a rotated refresh token is inactive');
  t.equal((await ask(rotated.refresh_token))['active'], true);

  await app.inject({ method: 'POST', url: '/auth/revoke', payload: { token: user.tokens.access_token } });
  t.same(await ask(user.tokens.access_token), { active: false }, 'a revoked access token is inactive');
  t.equal((await ask(rotated.access_token))['active'], true, 'another token of the same session stays active');

  await app.inject({ method: 'POST', url: '/auth/logout', headers: bearer(rotated.access_token) });
  t.same(await ask(rotated.refresh_token), { active: false }, 'after logout the refresh token is inactive');

  const later = await registerAndLogin(ta, 'intro-exp');
  ta.clock.advance((ta.config.jwt.accessTokenTtlSec + ta.config.jwt.clockToleranceSec + 1) * 1000);
  caller = await introspector(); // the first caller's own token has expired too
  t.same(await ask(later.tokens.access_token), { active: false }, 'an expired access token is inactive');
});
