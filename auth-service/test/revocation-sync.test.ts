/**
 * Revocation re-sync (src/revocation-sync.ts): Redis loses entries the database holds (restart
 * without persistence, a revocation made while Redis was down); republishing from the database
 * makes every live revocation effective again, and the scheduler does it by itself when the
 * Redis connection comes back.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import t from 'tap';
import { createRedisRevocation } from '@jwt-mesh/core/redis';
import { republishRevocations, scheduleRevocationSync } from '../src/revocation-sync.js';
import { createTestApp, decodeJwt, REDIS_URL, registerAndLogin, type TestApp } from './helpers.js';

/** Deletes every key under the app's prefix: what a Redis restart without persistence does. */
async function wipe(ta: TestApp): Promise<number> {
  let n = 0;
  let cursor = '0';
  do {
    const [next, keys] = await ta.redis.scan(cursor, 'MATCH', `${ta.prefix}*`, 'COUNT', 500);
    cursor = next;
    if (keys.length) n += await ta.redis.del(...keys);
  } while (cursor !== '0');
  return n;
}

t.test('republishing restores every live revocation after Redis lost them', async (t) => {
  const ta = await createTestApp(t, { label: 'resync' });
  // An uncached reader, so what it sees is what Redis holds.
  const reader = createRedisRevocation({ redisUrl: REDIS_URL, prefix: ta.prefix, cacheTtlMs: 0 });
  t.teardown(() => reader.close());
  await reader.ready();
  const state = (jwt: string) => {
    const c = decodeJwt(jwt).payload as { jti: string; sid: string; sub: string; iat: number };
    return reader.check({ jti: c.jti, sid: c.sid, sub: c.sub, iat: c.iat });
  };

  const revokedJti = await registerAndLogin(ta, 'rs-jti');
  const loggedOut = await registerAndLogin(ta, 'rs-sid');
  const dbOnly = await registerAndLogin(ta, 'rs-db');
  const allOfUser = await registerAndLogin(ta, 'rs-sub');
  const untouched = await registerAndLogin(ta, 'rs-ok');

  t.equal((await ta.app.inject({ method: 'POST', url: '/auth/revoke', payload: { token: revokedJti.tokens.access_token } })).statusCode, 200);
  t.equal(
    (await ta.app.inject({ method: 'POST', url: '/auth/logout', headers: { authorization: `Bearer ${loggedOut.tokens.access_token}` } })).statusCode,
    204,
  );
  // Written to the database only, as when the Redis publish failed (the client got 503).
  const c = decodeJwt(dbOnly.tokens.access_token).payload as { jti: string; sub: string; sid: string; exp: number };
  await ta.prisma.revokedAccessToken.create({ data: { jti: c.jti, sub: c.sub, sid: c.sid, expiresAt: new Date(c.exp * 1000) } });
  const subIat = (decodeJwt(allOfUser.tokens.access_token).payload as { iat: number }).iat;
  await ta.prisma.user.update({ where: { id: allOfUser.userId }, data: { tokensRevokedBefore: new Date((subIat + 1) * 1000) } });
  // An expired revocation is not republished.
  await ta.prisma.revokedAccessToken.create({ data: { jti: 'long-expired', sub: untouched.userId, expiresAt: new Date(ta.clock.now() - 3_600_000) } });

  t.equal(await state(revokedJti.tokens.access_token), 'jti', 'before the loss: revoked by jti');
  t.equal(await state(loggedOut.tokens.access_token), 'jti', 'before the loss: the logged-out token is revoked');
  t.equal(await state(dbOnly.tokens.access_token), null, 'a database-only revocation is not in Redis');

  t.ok((await wipe(ta)) >= 2, 'Redis loses its entries (and the sync marker)');
  await t.rejects(state(revokedJti.tokens.access_token), { code: 'revocation_unavailable' }, 'after the loss a verifier answers 503, not "not revoked"');
  const markerless = createRedisRevocation({ redisUrl: REDIS_URL, prefix: ta.prefix, cacheTtlMs: 0, requireSyncMarker: false });
  t.teardown(() => markerless.close());
  await markerless.ready();
  const c0 = decodeJwt(revokedJti.tokens.access_token).payload as { jti: string; sid: string; sub: string; iat: number };
  t.equal(await markerless.check(c0), null, 'what the marker prevents: without it the revoked token would pass');

  const r = await republishRevocations({ prisma: ta.prisma, revocation: ta.revocation, clock: ta.clock, config: ta.config });
  t.same(r, { jti: 3, sid: 1, sub: 1 }, 'three jtis (revoke, logout, database-only), the logged-out session, the user');
  t.equal(await state(revokedJti.tokens.access_token), 'jti', 'revoked by jti again');
  t.ok(['jti', 'sid'].includes(String(await state(loggedOut.tokens.access_token))), 'the logged-out session is revoked again');
  t.equal(await state(dbOnly.tokens.access_token), 'jti', 'the database-only revocation is now enforced');
  t.equal(await state(allOfUser.tokens.access_token), 'sub', "the user's tokens issued before the cut-off are revoked");
  t.equal(await state(untouched.tokens.access_token), null, 'an untouched token still passes');
  t.equal(await ta.redis.exists(`${ta.prefix}rv:jti:long-expired`), 0, 'an expired revocation is not written');
  const ttl = await ta.redis.ttl(`${ta.prefix}rv:jti:${c.jti}`);
  t.ok(ttl > 0 && ttl <= c.exp - Math.floor(ta.clock.now() / 1000) + ta.config.jwt.clockToleranceSec + 1, `the jti entry lives until exp + tolerance (${ttl} s)`);
});

t.test('the scheduler republishes by itself when the Redis connection comes back', async (t) => {
  const ta = await createTestApp(t, { label: 'resync-sched' });
  const revoked = await registerAndLogin(ta, 'rs-sched');
  t.equal((await ta.app.inject({ method: 'POST', url: '/auth/revoke', payload: { token: revoked.tokens.access_token } })).statusCode, 200);
  const jti = (decodeJwt(revoked.tokens.access_token).payload as { jti: string }).jti;
  const key = `${ta.prefix}rv:jti:${jti}`;

  const watched = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
  const lines: Array<Record<string, unknown>> = [];
  const logger = { info: (o: Record<string, unknown>) => lines.push(o), warn: (o: Record<string, unknown>) => lines.push(o) } as unknown as Parameters<typeof scheduleRevocationSync>[0]['logger'];
  const sync = scheduleRevocationSync({ prisma: ta.prisma, revocation: ta.revocation, clock: ta.clock, config: ta.config, logger }, { redis: watched, intervalSec: 0, retryMs: 100 });
  t.teardown(async () => {
    sync.stop();
    await watched.quit();
  });
  const waitFor = async (what: () => Promise<boolean>) => {
    for (let i = 0; i < 100; i++) {
      if (await what()) return true;
      await sleep(50);
    }
    return false;
  };
  t.ok(await waitFor(async () => lines.some((l) => l['reason'] === 'start')), 'a run at start');
  t.equal(sync.synced(), true, 'synced() once the start run succeeded');

  await wipe(ta);
  t.equal(await ta.redis.exists(key), 0, 'the entry is gone');
  let syncedWhileReconnecting: boolean | undefined;
  await new Promise<void>((resolve) => {
    watched.once('ready', () => {
      syncedWhileReconnecting = sync.synced();
      resolve();
    });
    watched.disconnect(true); // drop the connection; ioredis reconnects
  });
  t.equal(syncedWhileReconnecting, false, 'synced() is false from the drop until a re-sync succeeds');
  t.ok(await waitFor(async () => (await ta.redis.exists(key)) === 1), 'the entry is back after the reconnection, with no other trigger');
  t.ok(lines.some((l) => l['reason'] === 'redis reconnected' && l['event'] === 'revocation_sync'), 'logged as a re-sync on reconnection');
  t.ok(await waitFor(async () => sync.synced()), 'synced() again after the re-sync');
});

t.test('the scheduler re-syncs at once when the sync marker is gone (a FLUSHALL) or a publish failed', async (t) => {
  const ta = await createTestApp(t, { label: 'resync-marker' });
  const revoked = await registerAndLogin(ta, 'rs-marker');
  t.equal((await ta.app.inject({ method: 'POST', url: '/auth/revoke', payload: { token: revoked.tokens.access_token } })).statusCode, 200);
  const jti = (decodeJwt(revoked.tokens.access_token).payload as { jti: string }).jti;
  const marker = `${ta.prefix}rv:synced`;
  const lines: Array<Record<string, unknown>> = [];
  const logger = { info: (o: Record<string, unknown>) => lines.push(o), warn: (o: Record<string, unknown>) => lines.push(o) } as unknown as Parameters<typeof scheduleRevocationSync>[0]['logger'];
  const sync = scheduleRevocationSync(
    { prisma: ta.prisma, revocation: ta.revocation, clock: ta.clock, config: ta.config, logger },
    { redis: ta.redis, intervalSec: 0, retryMs: 100, markerCheckMs: 100 },
  );
  t.teardown(() => sync.stop());
  const waitFor = async (what: () => Promise<boolean> | boolean) => {
    for (let i = 0; i < 100; i++) {
      if (await what()) return true;
      await sleep(50);
    }
    return false;
  };
  t.ok(await waitFor(() => sync.synced()), 'synced after the start run');

  // What a FLUSHALL does to this prefix, with no connection dropped.
  t.ok((await wipe(ta)) >= 2, 'entries and marker gone');
  t.ok(await waitFor(async () => (await ta.redis.exists(`${ta.prefix}rv:jti:${jti}`)) === 1 && (await ta.redis.exists(marker)) === 1), 'entry and marker are back, with no reconnection');
  t.ok(lines.some((l) => l['reason'] === 'sync marker missing' && l['event'] === 'revocation_sync'), 'logged as a run for a missing marker');

  const runs = lines.filter((l) => l['event'] === 'revocation_sync').length;
  sync.request('a revocation could not be published');
  t.equal(sync.synced(), false, 'not synced from the request until a run succeeds');
  t.ok(await waitFor(() => lines.filter((l) => l['event'] === 'revocation_sync').length > runs && sync.synced()), 'a run at once, synced again');
  t.ok(lines.some((l) => l['reason'] === 'a revocation could not be published'), 'with the reason logged');
});
