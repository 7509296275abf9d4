/**
 * Revocation through real Redis (unique key prefix per test): revoked jti / sid / sub give 401,
 * a revocation reaches two server instances through pub/sub, and an unreachable Redis gives 503
 * under the fail-closed default.
 */
import t, { type Test } from 'tap';
import { createRedisRevocation } from '@jwt-mesh/core/redis';
import { GRPC, REDIS_URL, closedPort, denied, fixture, startAuthz, startIssuer, uniquePrefix, type Issuer } from './helpers/harness.js';

let issuer: Issuer;
t.before(async () => {
  issuer = await startIssuer();
});
t.teardown(() => issuer.close());

/** The issuer side: writes revocations (SET + PUBLISH) under `prefix`. */
async function publisher(t: Test, prefix: string) {
  const pub = createRedisRevocation({ redisUrl: REDIS_URL, prefix });
  await pub.ready();
  t.teardown(() => pub.close());
  return pub;
}

const inFiveMinutes = () => Math.floor(Date.now() / 1000) + 300;

t.test('revoked jti, sid and sub: 401 invalid_token', async (t) => {
  const prefix = uniquePrefix();
  const srv = await startAuthz({ issuer, prefix });
  t.teardown(() => srv.close());
  const pub = await publisher(t, prefix);

  const byJti = await issuer.mint({ jti: 'jti-to-revoke' });
  t.equal((await srv.check(fixture('get-orders', byJti))).status?.code, GRPC.OK, 'allowed before');
  await pub.revoke({ kind: 'jti', id: 'jti-to-revoke' }, inFiveMinutes());
  const d = denied(await srv.check(fixture('get-orders', byJti)));
  t.equal(d.grpc, GRPC.UNAUTHENTICATED);
  t.equal(d.http, 401);
  t.match(d.headers['www-authenticate'], /error="invalid_token"/);

  const s1 = await issuer.mint({ sid: 'family-1' });
  const s2 = await issuer.mint({ sid: 'family-1' });
  const other = await issuer.mint({ sid: 'family-2' });
  await pub.revoke({ kind: 'sid', id: 'family-1' }, inFiveMinutes());
  t.equal(denied(await srv.check(fixture('get-orders', s1))).http, 401, 'sid revoked: first token of the family');
  t.equal(denied(await srv.check(fixture('get-orders', s2))).http, 401, 'sid revoked: second token of the family');
  t.equal((await srv.check(fixture('get-orders', other))).status?.code, GRPC.OK, 'another family still works');

  const now = Math.floor(Date.now() / 1000);
  const old = await issuer.mint({ sub: 'carol', iat: now - 60, exp: now + 200 });
  await pub.revoke({ kind: 'sub', id: 'carol', before: now - 30 }, inFiveMinutes());
  // exp pinned to the same clock reading: mint() reads the clock again, and a second boundary
  // crossed in between would make exp - iat 301 s, over the 300 s lifetime (a flake seen in CI).
  const fresh = await issuer.mint({ sub: 'carol', iat: now, exp: now + 300 });
  t.equal(denied(await srv.check(fixture('get-orders', old))).http, 401, 'sub revoked-before: older token refused');
  t.equal((await srv.check(fixture('get-orders', fresh))).status?.code, GRPC.OK, 'sub revoked-before: newer token accepted');

  t.match(await srv.metrics.registry.metrics(), /jwtmesh_authz_decisions_total\{outcome="deny",reason="token_revoked"\} 4/);
});

t.test('a revocation reaches two server instances through pub/sub', async (t) => {
  const prefix = uniquePrefix();
  // A long lookup cache: only the pub/sub invalidation can make the revocation visible quickly.
  const a = await startAuthz({ issuer, prefix, cacheTtlMs: 60_000 });
  const b = await startAuthz({ issuer, prefix, cacheTtlMs: 60_000 });
  t.teardown(async () => {
    await a.close();
    await b.close();
  });
  const pub = await publisher(t, prefix);
  const token = await issuer.mint({ jti: 'jti-propagation' });
  for (const srv of [a, b]) {
    t.equal((await srv.check(fixture('get-orders', token))).status?.code, GRPC.OK, 'allowed (and the lookup cached)');
    t.equal((await srv.check(fixture('get-orders', token))).status?.code, GRPC.OK, 'allowed from the cache');
  }
  const started = performance.now();
  await pub.revoke({ kind: 'jti', id: 'jti-propagation' }, inFiveMinutes());
  const revokeMs = performance.now() - started;
  // Each instance is polled on its own until it refuses the token (bounded; no timing asserted).
  const until = async (srv: typeof a): Promise<number | undefined> => {
    for (let i = 0; i < 2_000; i++) {
      const res = await srv.check(fixture('get-orders', token));
      if (res.http_response === 'denied_response') return performance.now() - started;
    }
    return undefined;
  };
  const [ta, tb] = await Promise.all([until(a), until(b)]);
  const seen = { a: ta, b: tb };
  t.ok(seen.a !== undefined && seen.b !== undefined, 'both instances refuse the revoked token');
  const line = `revocation propagation to two authz instances: a=${seen.a?.toFixed(2)} ms, b=${seen.b?.toFixed(2)} ms from the revoke call (the call itself ${revokeMs.toFixed(2)} ms)`;
  t.comment(line);
  console.log(`# ${line}`);
});

t.test('Redis unreachable: 503 UNAVAILABLE when fail-closed (the default)', async (t) => {
  const redisUrl = `redis://127.0.0.1:${await closedPort()}/0`;
  const srv = await startAuthz({ issuer, redisUrl, awaitRedis: false });
  t.teardown(() => srv.close());
  const d = denied(await srv.check(fixture('get-orders', await issuer.mint())));
  t.equal(d.grpc, GRPC.UNAVAILABLE);
  t.equal(d.http, 503);
  t.equal(d.headers['retry-after'], '1');
  t.equal(d.body.error, 'temporarily_unavailable');
  t.match(await srv.metrics.registry.metrics(), /reason="revocation_unavailable"\} 1/);
  // Public routes need no revocation lookup and keep working.
  t.equal((await srv.check(fixture('get-jwks'))).status?.code, GRPC.OK);
});

t.test('Redis unreachable with REVOCATION_FAIL_MODE=open: allowed (documented, unsafe)', async (t) => {
  const redisUrl = `redis://127.0.0.1:${await closedPort()}/0`;
  const srv = await startAuthz({ issuer, redisUrl, awaitRedis: false, onUnavailable: 'allow' });
  t.teardown(() => srv.close());
  t.equal((await srv.check(fixture('get-orders', await issuer.mint()))).status?.code, GRPC.OK);
});

t.test('a Check makes at most one Redis round trip: one MGET per lookup, none when the lookup cache answers', async (t) => {
  const tokens = await Promise.all(Array.from({ length: 10 }, () => issuer.mint()));
  const uncached = await startAuthz({ issuer, cacheTtlMs: 0 });
  t.teardown(() => uncached.close());
  const lookups = () => uncached.redis!.stats().lookups;
  const before = lookups();
  for (const token of [...tokens, ...tokens]) t.equal((await uncached.check(fixture('get-orders', token))).status?.code, GRPC.OK);
  t.equal(lookups() - before, 20, 'lookup cache off: 20 Checks, 20 lookups (one MGET each: jti, sid, sub and the sync marker)');

  const cached = await startAuthz({ issuer, cacheTtlMs: 60_000 });
  t.teardown(() => cached.close());
  for (const token of tokens) await cached.check(fixture('get-orders', token));
  const warm = cached.redis!.stats();
  for (const token of tokens) t.equal((await cached.check(fixture('get-orders', token))).status?.code, GRPC.OK);
  t.equal(cached.redis!.stats().lookups - warm.lookups, 0, 'repeated tokens: no Redis round trip');
  t.equal(cached.redis!.stats().cacheHits - warm.cacheHits, 10, 'answered by the lookup cache');
});
