// The cleanup job removes expired refresh tokens, sessions and revoked-jti rows, clears sealed
// successors after the grace window and erases retired private keys; nothing unexpired goes.
import t from 'tap';
import { cleanupExpired } from '../src/cleanup.js';
import { rotateSigningKey } from '../src/keys.js';
import { createTestApp, decodeJwt, refresh, registerAndLogin } from './helpers.js';

t.test('cleanup removes only what has expired', async (t) => {
  const ta = await createTestApp(t, { label: 'cleanup' }); // its own database
  const deps = { prisma: ta.prisma, clock: ta.clock, metrics: ta.metrics };
  const grace = { graceSec: ta.config.refreshReuseGraceSec };

  const old = await registerAndLogin(ta, 'old');
  const oldSid = decodeJwt(old.tokens.access_token).payload['sid'] as string;
  const oldRotated = (await refresh(ta, old.tokens.refresh_token)).json() as { refresh_token: string };
  await ta.app.inject({ method: 'POST', url: '/auth/revoke', payload: { token: old.tokens.access_token } });
  const oldJti = decodeJwt(old.tokens.access_token).payload['jti'] as string;

  t.same(await cleanupExpired(deps, grace), { refreshTokens: 0, sessions: 0, revokedAccessTokens: 0, sealedSuccessorsCleared: 0, retiredKeysErased: 0 }, 'nothing expired yet');
  t.ok(oldRotated.refresh_token);

  // After the grace window the sealed successor is cleared; the rows stay.
  ta.clock.advance((ta.config.refreshReuseGraceSec + 1) * 1000);
  const r1 = await cleanupExpired(deps, grace);
  t.equal(r1.sealedSuccessorsCleared, 1);
  t.equal(r1.refreshTokens, 0);

  // After the access-token lifetime the revoked jti row goes.
  ta.clock.advance((ta.config.jwt.accessTokenTtlSec + 1) * 1000);
  const fresh = await registerAndLogin(ta, 'fresh'); // issued "now", nothing of it expires
  await ta.app.inject({ method: 'POST', url: '/auth/revoke', payload: { token: fresh.tokens.access_token } });
  const r2 = await cleanupExpired(deps, grace);
  t.equal(r2.revokedAccessTokens, 1, 'the expired revoked jti');
  t.equal(await ta.prisma.revokedAccessToken.count({ where: { jti: oldJti } }), 0);
  t.equal(await ta.prisma.revokedAccessToken.count(), 1, "the unexpired one (fresh user's) stays");

  // After the refresh-token lifetime the old family goes, the fresh one stays.
  ta.clock.set(ta.clock.now() + (ta.config.refreshTokenTtlSec - ta.config.jwt.accessTokenTtlSec) * 1000);
  const r3 = await cleanupExpired(deps, grace);
  t.equal(r3.refreshTokens, 2, 'both tokens of the old family');
  t.equal(r3.sessions, 1, 'the old session');
  t.equal(await ta.prisma.session.count({ where: { id: oldSid } }), 0);
  const freshSid = decodeJwt(fresh.tokens.access_token).payload['sid'] as string;
  t.equal(await ta.prisma.session.count({ where: { id: freshSid } }), 1, 'the fresh session stays');
  t.equal(await ta.prisma.refreshToken.count({ where: { familyId: freshSid } }), 1);
  t.equal((await refresh(ta, fresh.tokens.refresh_token)).statusCode, 200, 'and still works');
  const metrics = await ta.metrics.registry.getSingleMetricAsString('auth_cleanup_deleted_total');
  t.match(metrics, /auth_cleanup_deleted_total\{table="refresh_tokens"\} 2\n/);
  t.match(metrics, /auth_cleanup_deleted_total\{table="sessions"\} 1\n/);

  // Retired signing keys lose their private key, keep their row.
  const oldKid = ta.keys.signer().kid;
  await rotateSigningKey(ta.prisma, { alg: 'RS256', overlapSec: 600, now: new Date(ta.clock.now()) });
  t.equal((await cleanupExpired(deps, grace)).retiredKeysErased, 0, 'not during the overlap');
  ta.clock.advance(601_000);
  t.equal((await cleanupExpired(deps, grace)).retiredKeysErased, 1);
  const row = await ta.prisma.signingKey.findUnique({ where: { kid: oldKid } });
  t.equal(row?.privateKeyPem, null);
  t.ok(row, 'the row stays');
});
