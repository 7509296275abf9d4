// Refresh-token rotation (RFC 6749 §6), the concurrent-refresh grace window, and reuse
// detection that revokes the whole family (RFC 9700 §4.14.2), checked through the core.
import t from 'tap';
import { createAuthenticator, createLocalKeySource, createVerifier } from '@jwt-mesh/core';
import { createRedisRevocation } from '@jwt-mesh/core/redis';
import { createTestApp, decodeJwt, REDIS_URL, refresh, registerAndLogin, type LoginResponse, type TestApp } from './helpers.js';

const ta = await createTestApp(t, { label: 'refresh' });

/** A verifier as any mesh hop would build it: the core's verifier + Redis revocation checker. */
async function meshAuthenticator(t: { teardown(fn: () => unknown): void }, app: TestApp) {
  const checker = createRedisRevocation({ redisUrl: REDIS_URL, prefix: app.prefix, cacheTtlMs: 1000 });
  t.teardown(() => checker.close());
  await checker.ready();
  const verifier = createVerifier({
    issuer: app.config.jwt.issuer,
    audience: app.config.jwt.audience,
    keys: createLocalKeySource(app.keys.jwks()),
    now: () => app.clock.now(),
  });
  return createAuthenticator({ verifier, revocation: checker, now: () => app.clock.now() });
}
const request = (token: string) => ({ method: 'GET', path: '/orders', headers: { authorization: `Bearer ${token}` } });

t.test('rotation: a new refresh token each time, the old one retired, same family', async (t) => {
  const { tokens } = await registerAndLogin(ta, 'rotate');
  const sid = decodeJwt(tokens.access_token).payload['sid'];

  const r1 = await refresh(ta, tokens.refresh_token);
  t.equal(r1.statusCode, 200);
  t.equal(r1.headers['cache-control'], 'no-store');
  const b1 = r1.json() as LoginResponse;
  t.not(b1.refresh_token, tokens.refresh_token, 'a new refresh token');
  t.not(b1.access_token, tokens.access_token, 'a new access token');
  t.equal(decodeJwt(b1.access_token).payload['sid'], sid, 'same sid (family)');
  t.equal(b1.scope, tokens.scope);

  const r2 = await refresh(ta, b1.refresh_token, { client_id: ta.config.defaultClientId });
  t.equal(r2.statusCode, 200, 'the successor works (client_id may be repeated)');

  const family = await ta.prisma.refreshToken.findMany({ where: { familyId: sid as string }, orderBy: { createdAt: 'asc' } });
  t.equal(family.length, 3);
  t.ok(family[0]!.rotatedAt && family[1]!.rotatedAt, 'used tokens are marked rotated');
  t.equal(family[2]!.rotatedAt, null, 'the newest is unused');
  t.equal(family[1]!.parentId, family[0]!.id, 'chain: parent');
  t.equal(family[0]!.replacedById, family[1]!.id, 'chain: successor');
});

t.test('a narrower scope on refresh narrows the access token only (RFC 6749 §6)', async (t) => {
  const { tokens } = await registerAndLogin(ta, 'narrow');
  const r = await refresh(ta, tokens.refresh_token, { scope: 'orders:read' });
  t.equal(r.statusCode, 200);
  t.equal((r.json() as LoginResponse).scope, 'orders:read');
  const next = await refresh(ta, (r.json() as LoginResponse).refresh_token);
  t.equal((next.json() as LoginResponse).scope, tokens.scope, 'the family keeps its scope');
  const wider = await refresh(ta, (next.json() as LoginResponse).refresh_token, { scope: 'orders:read introspect' });
  t.equal(wider.statusCode, 400);
  t.equal(wider.json().error, 'invalid_scope');
});

t.test('unknown, malformed, foreign-client and expired refresh tokens: invalid_grant', async (t) => {
  for (const token of ['A'.repeat(43), 'not a token', 'x']) {
    const r = await refresh(ta, token);
    t.equal(r.statusCode, 400);
    t.equal(r.json().error, 'invalid_grant');
  }
  const { tokens } = await registerAndLogin(ta, 'foreign');
  const foreign = await refresh(ta, tokens.refresh_token, { client_id: 'another-client' });
  t.equal(foreign.statusCode, 400);
  t.equal(foreign.json().error, 'invalid_grant');

  const { tokens: old } = await registerAndLogin(ta, 'expired');
  ta.clock.advance((ta.config.refreshTokenTtlSec + 1) * 1000);
  try {
    const expired = await refresh(ta, old.refresh_token);
    t.equal(expired.statusCode, 400);
    t.match(expired.json(), { error: 'invalid_grant', error_description: /expired/ });
  } finally {
    ta.clock.advance(-(ta.config.refreshTokenTtlSec + 1) * 1000);
  }
});

t.test('within the grace window a rotated token gets the SAME successor', async (t) => {
  const { tokens } = await registerAndLogin(ta, 'grace');
  const first = (await refresh(ta, tokens.refresh_token)).json() as LoginResponse;
  ta.clock.advance((ta.config.refreshReuseGraceSec - 1) * 1000);
  const again = await refresh(ta, tokens.refresh_token);
  t.equal(again.statusCode, 200);
  const second = again.json() as LoginResponse;
  t.equal(second.refresh_token, first.refresh_token, 'same successor');
  t.not(second.access_token, first.access_token, 'a fresh access token');
  t.equal(decodeJwt(second.access_token).payload['sid'], decodeJwt(first.access_token).payload['sid']);
  const next = await refresh(ta, first.refresh_token);
  t.equal(next.statusCode, 200, 'the successor still works');
});

t.test('reuse after the grace window: invalid_grant, the family and sid are revoked, audit line', async (t) => {
  const mesh = await meshAuthenticator(t, ta);
  const { tokens, userId } = await registerAndLogin(ta, 'reuse');
  const sid = decodeJwt(tokens.access_token).payload['sid'] as string;
  const rotated = (await refresh(ta, tokens.refresh_token)).json() as LoginResponse;
  t.equal((await mesh.decide(request(rotated.access_token))).allow, true, 'the family access token works before');

  ta.clock.advance((ta.config.refreshReuseGraceSec + 1) * 1000);
  const reuse = await refresh(ta, tokens.refresh_token);
  t.equal(reuse.statusCode, 400);
  t.match(reuse.json(), { error: 'invalid_grant', error_description: /already used/ });

  const session = await ta.prisma.session.findUnique({ where: { id: sid } });
  t.equal(session?.revokedReason, 'reuse_detected');
  const live = await ta.prisma.refreshToken.count({ where: { familyId: sid, revokedAt: null } });
  t.equal(live, 0, 'every refresh token of the family is revoked');

  const successor = await refresh(ta, rotated.refresh_token);
  t.equal(successor.statusCode, 400, 'the legitimate successor is dead too');
  t.equal(successor.json().error, 'invalid_grant');

  for (const token of [tokens.access_token, rotated.access_token]) {
    const d = await mesh.decide(request(token));
    t.equal(d.allow, false, 'the family access tokens are rejected by the core');
    if (!d.allow) t.equal(d.error.code, 'token_revoked');
  }
  const ttl = await ta.redis.ttl(`${ta.prefix}rv:sid:${sid}`);
  const want = ta.config.jwt.accessTokenTtlSec + ta.config.jwt.clockToleranceSec;
  t.ok(ttl > want - 5 && ttl <= want, `sid entry TTL ${ttl}s covers the access-token lifetime (${want}s)`);

  const audit = ta.logs.filter((l) => l['event'] === 'refresh_token_reuse');
  t.equal(audit.length, 1, 'one audit line');
  t.match(audit[0], { level: 40, family: sid, user: userId, client_id: ta.config.defaultClientId });
  t.notOk(JSON.stringify(audit).includes(tokens.refresh_token), 'no token material in the audit line');
});

t.test('10 concurrent refreshes of one token: all 200, one successor, the family never forks', async (t) => {
  const { tokens } = await registerAndLogin(ta, 'concurrent');
  const sid = decodeJwt(tokens.access_token).payload['sid'] as string;
  const results = await Promise.all(Array.from({ length: 10 }, () => refresh(ta, tokens.refresh_token)));
  const statuses = results.map((r) => r.statusCode);
  t.same(statuses, Array(10).fill(200), `statuses: ${statuses.join(',')}`);
  const successors = new Set(results.map((r) => (r.json() as LoginResponse).refresh_token));
  t.equal(successors.size, 1, 'every caller got the same successor');
  const family = await ta.prisma.refreshToken.findMany({ where: { familyId: sid } });
  t.equal(family.length, 2, 'the original and exactly one successor');
  t.equal(family.filter((r) => r.rotatedAt === null).length, 1, 'one live head');
  const next = await refresh(ta, [...successors][0]!);
  t.equal(next.statusCode, 200, 'the shared successor rotates normally');
});

t.test('a revoked family cannot refresh', async (t) => {
  const { tokens } = await registerAndLogin(ta, 'revokedfam');
  const r = await ta.app.inject({ method: 'POST', url: '/auth/revoke', payload: { token: tokens.refresh_token, token_type_hint: 'refresh_token' } });
  t.equal(r.statusCode, 200);
  const after = await refresh(ta, tokens.refresh_token);
  t.equal(after.statusCode, 400);
  t.match(after.json(), { error: 'invalid_grant', error_description: /revoked/ });
});

t.test('unsupported grant types and a missing grant_type', async (t) => {
  const code = await ta.app.inject({ method: 'POST', url: '/auth/token', payload: { grant_type: 'authorization_code', code: 'x' } });
  t.equal(code.statusCode, 400);
  t.equal(code.json().error, 'unsupported_grant_type');
  const none = await ta.app.inject({ method: 'POST', url: '/auth/token', payload: { refresh_token: 'x' } });
  t.equal(none.statusCode, 400);
  t.same(none.json(), { error: 'invalid_request', error_description: 'grant_type is required' });
});
