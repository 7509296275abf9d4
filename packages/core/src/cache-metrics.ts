/**
 * Prometheus counter definitions for a verifier's two caches, the verified-token cache of the
 * {@link Authenticator} and the revocation-lookup cache of the revocation checker, without a
 * dependency on a metrics library: each definition is the option object of a prom-client
 * `Counter` (`new Counter({ ...definition, registers })`), whose `collect()` copies the cache's
 * own counters at scrape time, so the request path pays nothing for them.
 *
 * | name | labels | counts |
 * |---|---|---|
 * | `<prefix>verified_token_cache_lookups_total` | `result="hit"` / `"miss"` | tokens answered from the verified-token cache / verified with their signature |
 * | `<prefix>revocation_cache_lookups_total` | `result="hit"` / `"miss"` | revocation checks answered from the in-process cache / that made a Redis round trip |
 *
 * Upstream: prom-client `Counter` `collect` (https://github.com/siimon/prom-client#usage-with-collect),
 * Prometheus naming (`_total` for counters).
 */
import type { Authenticator } from './authenticate.js';

/** The part of a revocation checker's stats these counters read (`RedisRevocation.stats()`). */
export interface RevocationCacheStatsSource {
  stats(): { readonly cacheHits: number; readonly lookups: number };
}

/** What `collect()` is called on: the prom-client `Counter` with label `result`. */
interface ResultCounter {
  reset(): void;
  inc(labels: { result: 'hit' | 'miss' }, value: number): void;
}

/** The option object of one prom-client `Counter` (without `registers`). */
export interface CacheCounterDefinition {
  readonly name: string;
  readonly help: string;
  readonly labelNames: readonly ['result'];
  collect(this: ResultCounter): void;
}

function counter(name: string, help: string, read: () => { hit: number; miss: number }): CacheCounterDefinition {
  return {
    name,
    help,
    labelNames: ['result'] as const,
    collect(this: ResultCounter) {
      const { hit, miss } = read();
      this.reset();
      this.inc({ result: 'hit' }, hit);
      this.inc({ result: 'miss' }, miss);
    },
  };
}

/**
 * The two cache counters of one verifier.
 *
 * @param prefix - metric name prefix of the component (`jwtmesh_` in authz-service, `jwt_mesh_` in the services)
 * @param sources.authenticator - its `stats()` gives the verified-token cache hits and misses
 *   (an authenticator without `stats` exports no verified-token counter)
 * @param sources.revocation - optional; its `stats()` gives `cacheHits` and `lookups` (Redis round trips)
 * @returns one definition per cache that has counters
 */
export function cacheCounterDefinitions(
  prefix: string,
  sources: { readonly authenticator: Pick<Authenticator, 'stats'>; readonly revocation?: RevocationCacheStatsSource | undefined },
): CacheCounterDefinition[] {
  const defs: CacheCounterDefinition[] = [];
  const authenticator = sources.authenticator;
  if (authenticator.stats !== undefined) {
    const stats = authenticator.stats.bind(authenticator);
    defs.push(
      counter(`${prefix}verified_token_cache_lookups_total`, 'Verified-token cache: tokens answered from the cache (hit) or verified by signature (miss).', () => {
        const s = stats();
        return { hit: s.verifiedCacheHits, miss: s.verifiedCacheMisses };
      }),
    );
  }
  const revocation = sources.revocation;
  if (revocation !== undefined) {
    defs.push(
      counter(`${prefix}revocation_cache_lookups_total`, 'Revocation checks answered from the in-process cache (hit) or with a Redis round trip (miss).', () => {
        const s = revocation.stats();
        return { hit: s.cacheHits, miss: s.lookups };
      }),
    );
  }
  return defs;
}
