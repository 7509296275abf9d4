/** Operations: liveness (/healthz), readiness (/readyz), Prometheus metrics (/metrics). */
import type { FastifyInstance } from 'fastify';
import type { RouteDeps } from './shared.js';

/**
 * Operations endpoints (no RFC):
 * - GET /healthz: 200 `{ status: "ok" }` while the process serves.
 * - GET /readyz: 200 `{ status: "ready", checks }` or 503 `{ status: "unavailable", checks }`;
 *   checks: `database` and `redis` (each answering within 1000 ms), `signing_key` (a usable
 *   signer is loaded), `revocation_sync` (`ok`/`pending`, only with a re-sync schedule).
 * - GET /metrics: the Prometheus text exposition of the service's registry.
 */
export function registerOpsRoutes(api: FastifyInstance, deps: RouteDeps): void {
  const { prisma, redis, keys, metrics, hashLimiter } = deps;
  api.get('/healthz', async () => ({ status: 'ok' }));
  api.get('/readyz', async (_req, reply) => {
    const within = <T>(p: Promise<T>, ms: number) =>
      Promise.race([p, new Promise<never>((_, reject) => setTimeout(() => reject(new Error('timeout')), ms).unref())]);
    const [db, cache] = await Promise.allSettled([within(prisma.$queryRaw`SELECT 1`, 1000), within(redis.ping(), 1000)]);
    let signing: 'ok' | 'unavailable' = 'ok';
    try {
      keys.signer();
    } catch {
      signing = 'unavailable';
    }
    const checks = {
      database: db.status === 'fulfilled' ? 'ok' : 'unavailable',
      redis: cache.status === 'fulfilled' ? 'ok' : 'unavailable',
      signing_key: signing,
      ...(deps.revocationSync !== undefined ? { revocation_sync: deps.revocationSync.synced() ? 'ok' : 'pending' } : {}),
    };
    const ready = Object.values(checks).every((v) => v === 'ok');
    return reply.code(ready ? 200 : 503).header('cache-control', 'no-store').send({ status: ready ? 'ready' : 'unavailable', checks });
  });
  api.get('/metrics', async (_req, reply) => {
    metrics.passwordHashInFlight.set(hashLimiter.inFlight);
    metrics.passwordHashQueued.set(hashLimiter.queued);
    return reply.type(metrics.registry.contentType).send(await metrics.registry.metrics());
  });
}
