/**
 * Prometheus metrics of the ext_authz server (prom-client). One registry per server instance,
 * so tests can run several servers in one process.
 */
import { cacheCounterDefinitions, type Authenticator, type RevocationCacheStatsSource } from '@jwt-mesh/core';
import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** Decision latency buckets in seconds: dense below 2 ms (the target p99), coarse up to 1 s. */
export const CHECK_DURATION_BUCKETS: readonly number[] = Object.freeze([
  0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
]);

/**
 * Buckets of prom-client's `nodejs_gc_duration_seconds{kind}` (seconds). prom-client's default
 * (1 ms, 10 ms, 100 ms, 1 s, 2 s, 5 s) cannot tell a 2 ms scavenge from a 9 ms one, and those
 * pauses are the tail of a Check; these keep the default bounds and add the ones in between.
 */
export const GC_DURATION_BUCKETS: readonly number[] = Object.freeze([
  0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1, 2, 5,
]);

/** The metrics the Check handler records. */
export interface AuthzMetrics {
  readonly registry: Registry;
  /**
   * `jwtmesh_authz_decisions_total{outcome="allow|deny", reason}`; `reason` is an
   * `AuthErrorCode` on deny, `ok` for an allow with a verified token, `public` for a public
   * route reached without a token.
   */
  readonly decisions: Counter<'outcome' | 'reason'>;
  /** `jwtmesh_authz_check_duration_seconds{outcome}`: time inside the Check handler, seconds. */
  readonly checkDuration: Histogram<'outcome'>;
}

/**
 * Creates the metrics on a fresh registry.
 *
 * @param opts.defaultMetrics - also collect prom-client's default process metrics (CPU, memory,
 *   event-loop lag, GC pauses with {@link GC_DURATION_BUCKETS}); true in `main.ts`, false in tests
 * @param opts.caches - the authenticator and the revocation checker: exports
 *   `jwtmesh_verified_token_cache_lookups_total{result}` and `jwtmesh_revocation_cache_lookups_total{result}`
 *   (`hit`, or `miss` = a signature verification / a Redis round trip), read at scrape time
 */
export function createMetrics(
  opts: { defaultMetrics?: boolean; caches?: { readonly authenticator: Pick<Authenticator, 'stats'>; readonly revocation?: RevocationCacheStatsSource } } = {},
): AuthzMetrics {
  const registry = new Registry();
  if (opts.defaultMetrics) collectDefaultMetrics({ register: registry, gcDurationBuckets: [...GC_DURATION_BUCKETS] });
  if (opts.caches !== undefined) for (const def of cacheCounterDefinitions('jwtmesh_', opts.caches)) new Counter({ ...def, registers: [registry] });
  const decisions = new Counter({
    name: 'jwtmesh_authz_decisions_total',
    help: 'ext_authz Check decisions by outcome (allow|deny) and reason (AuthErrorCode, ok, public).',
    labelNames: ['outcome', 'reason'] as const,
    registers: [registry],
  });
  const checkDuration = new Histogram({
    name: 'jwtmesh_authz_check_duration_seconds',
    help: 'Time to answer one ext_authz Check, in seconds.',
    labelNames: ['outcome'] as const,
    buckets: [...CHECK_DURATION_BUCKETS],
    registers: [registry],
  });
  return { registry, decisions, checkDuration };
}
