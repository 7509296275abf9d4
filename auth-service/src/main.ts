/**
 * auth-service entry point: reads the configuration, wires the real dependencies (Prisma over
 * PostgreSQL, Redis, signing keys, the core's Redis revocation store), listens, runs the
 * cleanup job, and drains on SIGTERM / SIGINT (stop accepting, finish in-flight requests, then
 * close Prisma and Redis).
 */
import { Redis } from 'ioredis';
import { createRedisRevocation, redisClientOptions } from '@jwt-mesh/core/redis';
import { logTracingState, throttledWarn } from '@jwt-mesh/runtime';
import { startTracing } from '@jwt-mesh/tracing';
import { buildApp, createLogger } from './app.js';
import { scheduleCleanup } from './cleanup.js';
import { scheduleRevocationSync } from './revocation-sync.js';
import { systemClock } from './clock.js';
import { ConfigError, parseConfig } from './config.js';
import { createPrisma } from './db.js';
import { createKeyStore } from './keys.js';
import { createMetrics } from './metrics.js';

async function main(): Promise<void> {
  // First: OpenTelemetry from the OTEL_* variables (a no-op without an OTLP endpoint).
  const tracing = await startTracing({ serviceName: 'auth-service' });
  let config;
  try {
    config = parseConfig(process.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`auth-service: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const logger = createLogger(config.logLevel);
  logTracingState(logger, tracing);
  const clock = systemClock;
  const metrics = createMetrics({ defaultMetrics: true });
  const prisma = createPrisma(config.databaseUrl, { poolMax: config.databasePoolMax });
  const redis = new Redis(config.redisUrl, {
    ...redisClientOptions(config.redisUrl, config.redisConnection),
    maxRetriesPerRequest: 2,
    enableOfflineQueue: true,
    lazyConnect: false,
  });
  redis.on('error', (err) => logger.warn({ err: { message: err.message, code: (err as NodeJS.ErrnoException).code } }, 'redis error'));
  const revocation = createRedisRevocation({
    redisUrl: config.redisUrl,
    connection: config.redisConnection,
    prefix: config.redisPrefix,
    channel: `${config.redisPrefix}revocations`,
    cacheTtlMs: config.revocation.cacheTtlMs,
    onUnavailable: config.revocation.failMode === 'open' ? 'allow' : 'deny',
    now: () => clock.now(),
    // Lookup and sync errors come once per request, connection errors on every reconnect attempt.
    onError: throttledWarn(logger, 'revocation store error'),
  });

  let keys;
  try {
    keys = await createKeyStore({ prisma, config, clock, logger });
  } catch (err) {
    logger.fatal({ err }, 'cannot load signing keys (is the database migrated and reachable?)');
    await Promise.allSettled([prisma.$disconnect(), redis.quit(), revocation.close()]);
    process.exit(1);
  }

  // Redis may lose revocations the database holds (restart without persistence, failover, a
  // revocation made while it was down): publish them again at start, on every reconnection and
  // every REVOCATION_SYNC_INTERVAL_SEC. Verifiers fail closed on a Redis not re-synced yet.
  await revocation.ready(5_000).catch((err: Error) => logger.warn({ err: { message: err.message } }, 'revocation store not ready yet; the re-sync retries'));
  const revocationSync = scheduleRevocationSync(
    { prisma, revocation, clock, config, logger },
    { redis, intervalSec: config.revocationSyncIntervalSec },
  );
  const app = buildApp({ config, prisma, redis, keys, revocation, revocationSync, clock, logger, metrics });
  const stopCleanup = scheduleCleanup(
    { prisma, clock, metrics, logger },
    { intervalSec: config.cleanupIntervalSec, graceSec: config.refreshReuseGraceSec, marginSec: config.jwt.clockToleranceSec },
  );

  let closing = false;
  const shutdown = async (signal: string): Promise<void> => {
    if (closing) return;
    closing = true;
    logger.info({ signal }, 'draining');
    const force = setTimeout(() => {
      logger.error('drain took longer than 10 s; exiting');
      process.exit(1);
    }, 10_000);
    force.unref();
    stopCleanup();
    revocationSync.stop();
    keys.close();
    try {
      await app.close(); // stops accepting, waits for in-flight requests
    } finally {
      await Promise.allSettled([prisma.$disconnect(), redis.quit(), revocation.close()]);
      await tracing.shutdown(); // flush the last spans (bounded; never rejects)
      logger.info('stopped');
      clearTimeout(force);
    }
  };
  process.once('SIGTERM', () => void shutdown('SIGTERM'));
  process.once('SIGINT', () => void shutdown('SIGINT'));

  // Listen once the first re-sync has ended (bounded): ready from the first probe in the usual case.
  await Promise.race([revocationSync.firstRun, new Promise((r) => setTimeout(r, 5_000).unref())]);
  await app.listen({ port: config.port, host: config.host });
  logger.info({ issuer: config.jwt.issuer, kid: keys.signer().kid }, 'auth-service listening');
}

main().catch((err: unknown) => {
  process.stderr.write(`auth-service: failed to start: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
