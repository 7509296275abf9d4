/**
 * Revocation re-sync: publishes the database's live revocations to Redis again.
 *
 * The database is the source of truth for revocation (packages/core/README.md, "Revocation in Redis"); Redis is
 * the fast path every verifier reads. Redis can lose entries the database still holds: a restart
 * without persistence, a failover to a replica that missed writes, a FLUSH, eviction under
 * memory pressure, or a revocation made while Redis was unreachable (the database was written,
 * the publish failed, the client got 503). Without a re-sync, every such token would be accepted
 * again until it expires.
 *
 * {@link republishRevocations} writes every entry that can still matter:
 * - `jti`: rows of `revoked_access_tokens` whose token has not expired (entry until
 *   `exp + JWT_CLOCK_TOLERANCE_SEC`);
 * - `sid`: sessions revoked less than `ACCESS_TOKEN_TTL_SEC + JWT_CLOCK_TOLERANCE_SEC` ago (no
 *   access token of the family can outlive that);
 * - `sub`: users whose `tokens_revoked_before` is that recent.
 * Each through the core's `RevocationPublisher.revoke` (SET with TTL, never shortening one, and
 * the pub/sub invalidation), a page of 500 at a time (concurrent calls share round trips through
 * ioredis auto-pipelining), so it is idempotent and safe to run at any time. When the store
 * has a sync marker (the Redis store's `resync`), the run ends by writing it: verifiers fail
 * closed (503) on a Redis server that has no marker of its own, so an emptied Redis is not
 * trusted until this has run on it.
 *
 * {@link scheduleRevocationSync} runs it once at start, every time the service's Redis client
 * becomes ready again after a disconnection, when the sync marker is found missing (a FLUSHALL,
 * a failover), when a revocation could not be published, and every REVOCATION_SYNC_INTERVAL_SEC.
 */
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { RevocationPublisher } from '@jwt-mesh/core';
import type { Clock } from './clock.js';
import type { Config } from './config.js';
import type { PrismaClient } from './db.js';

/** Entries written by one run, by kind. */
export interface RevocationSyncResult {
  jti: number;
  sid: number;
  sub: number;
}

/** What a re-sync needs. */
export interface RevocationSyncDeps {
  readonly prisma: PrismaClient;
  readonly revocation: RevocationPublisher;
  readonly clock: Clock;
  readonly config: Pick<Config, 'jwt'>;
}

/** Rows read per query. */
const PAGE = 500;

/**
 * Publishes every live revocation of the database to Redis (see the module comment).
 * @returns how many entries of each kind were written
 * @throws the Prisma error when the database cannot be read, the ioredis error when Redis
 *   cannot be written, or `RedisServerChangedError` when Redis restarted during the run (nothing
 *   is lost: the next run writes everything again)
 */
export async function republishRevocations(deps: RevocationSyncDeps): Promise<RevocationSyncResult> {
  const { revocation } = deps;
  return revocation.resync !== undefined ? revocation.resync(() => publishAll(deps)) : publishAll(deps);
}

/** The re-publication itself, without the store's sync marker. */
async function publishAll(deps: RevocationSyncDeps): Promise<RevocationSyncResult> {
  const { prisma, revocation, clock } = deps;
  const { accessTokenTtlSec, clockToleranceSec } = deps.config.jwt;
  const now = clock.now();
  const sec = (d: Date) => Math.floor(d.getTime() / 1000);
  const result: RevocationSyncResult = { jti: 0, sid: 0, sub: 0 };

  // jti: until the token's exp + tolerance.
  for (let cursor: string | undefined; ; ) {
    const rows = await prisma.revokedAccessToken.findMany({
      where: { expiresAt: { gt: new Date(now - clockToleranceSec * 1000) } },
      select: { jti: true, expiresAt: true },
      orderBy: { jti: 'asc' },
      take: PAGE,
      ...(cursor !== undefined ? { cursor: { jti: cursor }, skip: 1 } : {}),
    });
    await Promise.all(rows.map((r) => revocation.revoke({ kind: 'jti', id: r.jti }, sec(r.expiresAt) + clockToleranceSec)));
    result.jti += rows.length;
    if (rows.length < PAGE) break;
    cursor = rows[rows.length - 1]?.jti;
  }

  // sid and sub: an access token issued before the revocation lives at most TTL + tolerance.
  const window = (accessTokenTtlSec + clockToleranceSec) * 1000;
  const since = new Date(now - window);
  for (let cursor: string | undefined; ; ) {
    const rows = await prisma.session.findMany({
      where: { revokedAt: { gt: since } },
      select: { id: true, revokedAt: true },
      orderBy: { id: 'asc' },
      take: PAGE,
      ...(cursor !== undefined ? { cursor: { id: cursor }, skip: 1 } : {}),
    });
    await Promise.all(rows.map((r) => revocation.revoke({ kind: 'sid', id: r.id }, sec(r.revokedAt as Date) + accessTokenTtlSec + clockToleranceSec)));
    result.sid += rows.length;
    if (rows.length < PAGE) break;
    cursor = rows[rows.length - 1]?.id;
  }
  for (let cursor: string | undefined; ; ) {
    const rows = await prisma.user.findMany({
      where: { tokensRevokedBefore: { gt: since } },
      select: { id: true, tokensRevokedBefore: true },
      orderBy: { id: 'asc' },
      take: PAGE,
      ...(cursor !== undefined ? { cursor: { id: cursor }, skip: 1 } : {}),
    });
    await Promise.all(
      rows.map((r) => {
        const before = Math.ceil((r.tokensRevokedBefore as Date).getTime() / 1000);
        return revocation.revoke({ kind: 'sub', id: r.id, before }, before + accessTokenTtlSec + clockToleranceSec);
      }),
    );
    result.sub += rows.length;
    if (rows.length < PAGE) break;
    cursor = rows[rows.length - 1]?.id;
  }
  return result;
}

/** What {@link scheduleRevocationSync} returns. */
export interface RevocationSyncHandle {
  /** Stops the schedule (a run in progress finishes). */
  stop(): void;
  /**
   * True once a run has succeeded since start and since the latest loss of the Redis
   * connection: readiness (`/readyz` check `revocation_sync`) waits for it, because verifiers
   * fail closed on a Redis that has not been re-synced.
   */
  synced(): boolean;
  /**
   * Asks for a run now (e.g. a revocation could not be published: the database holds it, Redis
   * does not). Runs are retried every `retryMs` until one succeeds.
   */
  request(reason: string): void;
  /** Settles (never rejects) when the first run has ended, successful or not. */
  readonly firstRun: Promise<void>;
}

/** How often the sync marker is checked (`checkSynced`), milliseconds. */
export const MARKER_CHECK_MS = 2_000;

/**
 * Runs {@link republishRevocations} at start, whenever `redis` becomes ready after having been
 * disconnected, whenever the store's sync marker no longer names the Redis master (checked every
 * `markerCheckMs`, default {@link MARKER_CHECK_MS}: a FLUSHALL or a failover that dropped no
 * connection), on {@link RevocationSyncHandle.request} (a revocation that could not be
 * published), and every `intervalSec` seconds (0 = none of the periodic runs).
 * Runs never overlap; a trigger during a run schedules one more run after it. A failed run is
 * logged and retried `retryMs` later (default 1000) until one succeeds.
 *
 * @param redis - the service's ioredis client (its `ready` events mark reconnections)
 * @returns {@link RevocationSyncHandle}
 */
export function scheduleRevocationSync(
  deps: RevocationSyncDeps & { readonly logger: Logger },
  opts: { redis: Redis; intervalSec: number; retryMs?: number; markerCheckMs?: number },
): RevocationSyncHandle {
  const retryMs = opts.retryMs ?? 1000;
  const markerCheckMs = opts.markerCheckMs ?? MARKER_CHECK_MS;
  let running = false;
  let again = false;
  let stopped = false;
  let synced = false;
  let firstRunDone: () => void = () => undefined;
  const firstRun = new Promise<void>((resolve) => {
    firstRunDone = resolve;
  });
  /** Bumped when the connection drops: a run that straddles a drop does not count as a sync. */
  let generation = 0;
  let retryTimer: NodeJS.Timeout | undefined;

  const run = (reason: string): void => {
    if (stopped) return;
    if (running) {
      again = true;
      return;
    }
    running = true;
    clearTimeout(retryTimer);
    const t0 = deps.clock.now();
    const gen = generation;
    republishRevocations(deps).then(
      (r) => {
        firstRunDone();
        if (gen === generation) synced = true;
        deps.logger.info({ event: 'revocation_sync', reason, ...r, ms: deps.clock.now() - t0 }, 'revocations re-published to Redis');
        running = false;
        if (again) {
          again = false;
          run('queued');
        }
      },
      (err: unknown) => {
        firstRunDone();
        deps.logger.warn({ err: { message: (err as Error)?.message }, reason }, 'revocation re-sync failed; retrying');
        running = false;
        again = false;
        retryTimer = setTimeout(() => run('retry'), retryMs);
        retryTimer.unref();
      },
    );
  };

  let lostConnection = false;
  const onDown = () => {
    lostConnection = true;
    synced = false;
    generation++;
  };
  const onReady = () => {
    if (lostConnection) {
      lostConnection = false;
      run('redis reconnected');
    }
  };
  opts.redis.on('close', onDown);
  opts.redis.on('end', onDown);
  opts.redis.on('ready', onReady);
  const interval = opts.intervalSec > 0 ? setInterval(() => run('interval'), opts.intervalSec * 1000) : undefined;
  interval?.unref();
  const { checkSynced } = deps.revocation;
  let checking = false;
  const markerTimer =
    checkSynced === undefined
      ? undefined
      : setInterval(() => {
          if (checking || running || stopped) return;
          checking = true;
          checkSynced.call(deps.revocation).then(
            (ok) => {
              checking = false;
              if (ok || running) return;
              synced = false;
              generation++;
              run('sync marker missing');
            },
            () => {
              checking = false; // Redis unreachable: its reconnection triggers the run
            },
          );
        }, markerCheckMs);
  markerTimer?.unref();
  run('start');

  return {
    stop() {
      stopped = true;
      clearInterval(interval);
      clearInterval(markerTimer);
      clearTimeout(retryTimer);
      opts.redis.off('close', onDown);
      opts.redis.off('end', onDown);
      opts.redis.off('ready', onReady);
    },
    synced: () => synced,
    request(reason: string) {
      synced = false;
      generation++;
      run(reason);
    },
    firstRun,
  };
}
