/**
 * Periodic cleanup of rows that can no longer matter: expired refresh tokens, sessions whose
 * every refresh token has expired, revoked-access-token rows past the token's `exp`, and
 * sealed successors past the reuse grace window. Nothing unexpired is removed.
 */
import type { Logger } from 'pino';
import type { Clock } from './clock.js';
import type { PrismaClient } from './db.js';
import type { Metrics } from './metrics.js';

/** Rows removed (or cleared) by one run. */
export interface CleanupResult {
  refreshTokens: number;
  sessions: number;
  revokedAccessTokens: number;
  sealedSuccessorsCleared: number;
  /** Retired signing keys whose private key was erased (the public row is kept). */
  retiredKeysErased: number;
}

/**
 * Runs one cleanup pass.
 *
 * @param opts.graceSec - REFRESH_REUSE_GRACE_SEC: sealed successors older than this are cleared
 *   (after the window a rotated token is reuse, so its seal is never opened again)
 * @param opts.marginSec - extra seconds past expiry before a row is removed (default 0); rows of
 *   revoked tokens are needed until exp + clock tolerance at most, so pass the tolerance
 */
export async function cleanupExpired(
  deps: { prisma: PrismaClient; clock: Clock; metrics?: Metrics },
  opts: { graceSec: number; marginSec?: number },
): Promise<CleanupResult> {
  const now = deps.clock.now();
  const cutoff = new Date(now - (opts.marginSec ?? 0) * 1000);
  const { prisma } = deps;
  const refreshTokens = await prisma.refreshToken.deleteMany({ where: { expiresAt: { lt: cutoff } } });
  // A session's expiresAt is the latest expiry of its tokens; its remaining rows cascade.
  const sessions = await prisma.session.deleteMany({ where: { expiresAt: { lt: cutoff } } });
  const revoked = await prisma.revokedAccessToken.deleteMany({ where: { expiresAt: { lt: cutoff } } });
  const sealed = await prisma.refreshToken.updateMany({
    where: { successorSealed: { not: null }, rotatedAt: { lt: new Date(now - opts.graceSec * 1000) } },
    data: { successorSealed: null },
  });
  // A retired key is neither used nor published; its private key is no longer needed. The row
  // stays, so a configured key that was rotated away is not registered again on restart.
  const erased = await prisma.signingKey.updateMany({
    where: { retiresAt: { lt: new Date(now) }, privateKeyPem: { not: null } },
    data: { privateKeyPem: null },
  });
  const result = {
    refreshTokens: refreshTokens.count,
    sessions: sessions.count,
    revokedAccessTokens: revoked.count,
    sealedSuccessorsCleared: sealed.count,
    retiredKeysErased: erased.count,
  };
  deps.metrics?.cleanupDeleted.inc({ table: 'refresh_tokens' }, result.refreshTokens);
  deps.metrics?.cleanupDeleted.inc({ table: 'sessions' }, result.sessions);
  deps.metrics?.cleanupDeleted.inc({ table: 'revoked_access_tokens' }, result.revokedAccessTokens);
  return result;
}

/**
 * Starts {@link cleanupExpired} every `intervalSec` seconds (0 = never). Failures are logged and
 * retried on the next tick. Returns a stop function.
 */
export function scheduleCleanup(
  deps: { prisma: PrismaClient; clock: Clock; metrics?: Metrics; logger: Logger },
  opts: { intervalSec: number; graceSec: number; marginSec?: number },
): () => void {
  if (opts.intervalSec <= 0) return () => undefined;
  let running = false;
  const timer = setInterval(() => {
    if (running) return;
    running = true;
    cleanupExpired(deps, opts)
      .then((r) => deps.logger.debug({ cleanup: r }, 'cleanup done'))
      .catch((err: unknown) => deps.logger.warn({ err }, 'cleanup failed; retrying on the next tick'))
      .finally(() => {
        running = false;
      });
  }, opts.intervalSec * 1000);
  timer.unref();
  return () => clearInterval(timer);
}
