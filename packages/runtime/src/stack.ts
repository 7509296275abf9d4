/**
 * The verification stack of one service, built only from the core: a remote JWK Set key source,
 * the verifier, the Redis revocation checker, and the authenticator that combines them. No
 * verification logic lives here (CONTRIBUTING.md, "A pure core, thin adapters"): this only wires the core's parts together.
 */
import {
  JWKS_FETCH_FAILURE_REASONS,
  createAuthenticator,
  createRemoteKeySource,
  createVerifier,
  type Authenticator,
  type JwksFetchError,
  type JwksTlsOptions,
  type JwsAlgorithm,
  type RedisConnectionOptions,
  type Policy,
  type RemoteKeySourceStats,
} from '@jwt-mesh/core';
import { Counter, type Registry } from 'prom-client';
import { createRedisRevocation, type RedisRevocation } from '@jwt-mesh/core/redis';
import type { Logger } from 'pino';
import { throttledWarn } from './logger.js';
import { registerCacheCounters } from './metrics.js';
import { createReadiness, type Readiness } from './readiness.js';

/** Everything needed to verify tokens locally. Durations in the unit their name says. */
export interface VerifierStackOptions {
  /** Expected `iss`. */
  readonly issuer: string;
  /** Expected `aud` member. */
  readonly audience: string;
  /** `alg` allowlist. Default the core's (`RS256`). */
  readonly algorithms?: JwsAlgorithm[];
  /** Seconds of clock skew tolerated on `exp` / `nbf` / `iat`. */
  readonly clockToleranceSec?: number;
  /** Longest accepted `exp - iat`, seconds. */
  readonly maxLifetimeSec?: number;
  /** Size cap of a token, bytes. */
  readonly maxTokenBytes?: number;
  /** The auth service's JWK Set URL (https, or http on loopback only). */
  readonly jwksUrl: string;
  /** TLS of the JWK Set fetch: mesh CA, this workload's certificate, the issuer's SPIFFE ID (core `JwksTlsOptions`). */
  readonly jwksTls?: JwksTlsOptions;
  /** Called once per failed JWK Set fetch (the last good set stays in use). */
  readonly onJwksFetchFailure?: (err: JwksFetchError) => void;
  /** Redis for the revocation denylist and its pub/sub channel. */
  readonly redisUrl: string;
  /** The verifier's Redis ACL user, password and `rediss://` CA when not in the URL (core `redisConnectionFromEnv`). */
  readonly redisConnection?: RedisConnectionOptions;
  /** Redis key prefix (tests use a unique one). Default the core's `jwtmesh:`. */
  readonly revocationPrefix?: string;
  /** What to do when Redis cannot be read: `deny` (default, fail closed) or `allow`. */
  readonly revocationOnUnavailable?: 'deny' | 'allow';
  /** How long a revocation lookup is cached in process, milliseconds (pub/sub invalidates it). */
  readonly revocationCacheTtlMs?: number;
  /** Called with a failed warm-up (JWKS fetch, Redis) for logs. */
  readonly onWarmupRetry?: (err: unknown, what: 'jwks' | 'revocation') => void;
  /** Called with Redis errors of the revocation store (not per lookup: those are auth outcomes). */
  readonly onRedisError?: (err: Error, context: string) => void;
  /** Redis `CLIENT SETNAME`, e.g. the service name. */
  readonly redisClientName?: string;
  /** Route policy for the authenticator (the core's `Policy`; authz-service loads it from YAML). Default: none. */
  readonly policy?: Policy;
  /** Size of the core's verified-token cache, entries (0 disables it). Default the core's 10,000. */
  readonly verifiedCacheMaxEntries?: number;
  /** The authenticator's own decision deadline, milliseconds. Default the core's 1,000. */
  readonly deadlineMs?: number;
}

/** The built stack. */
export interface VerifierStack {
  readonly authenticator: Authenticator;
  readonly readiness: Readiness;
  /** JWK Set fetch statistics. */
  jwksStats(): RemoteKeySourceStats;
  /**
   * The revocation checker's counters (its lookup cache's hits and Redis round trips, for metrics)
   * and the state of its connections (`connected`, `subscribed`: health follows them).
   */
  readonly revocation: Pick<RedisRevocation, 'stats'>;
  /** Stops the warm-up and closes the Redis connections. */
  close(): Promise<void>;
}

/**
 * Builds the stack and starts warming it up (first JWK Set fetch, Redis subscriber).
 */
export function createVerifierStack(opts: VerifierStackOptions): VerifierStack {
  const keys = createRemoteKeySource({
    url: opts.jwksUrl,
    ...(opts.jwksTls !== undefined ? { tls: opts.jwksTls } : {}),
    ...(opts.onJwksFetchFailure !== undefined ? { onFetchFailure: opts.onJwksFetchFailure } : {}),
  });
  const verifier = createVerifier({
    issuer: opts.issuer,
    audience: opts.audience,
    keys,
    ...(opts.algorithms !== undefined ? { algorithms: opts.algorithms } : {}),
    ...(opts.clockToleranceSec !== undefined ? { clockToleranceSec: opts.clockToleranceSec } : {}),
    ...(opts.maxLifetimeSec !== undefined ? { maxLifetimeSec: opts.maxLifetimeSec } : {}),
    ...(opts.maxTokenBytes !== undefined ? { maxTokenBytes: opts.maxTokenBytes } : {}),
  });
  const revocation = createRedisRevocation({
    redisUrl: opts.redisUrl,
    ...(opts.redisConnection !== undefined ? { connection: opts.redisConnection } : {}),
    ...(opts.revocationPrefix !== undefined ? { prefix: opts.revocationPrefix } : {}),
    ...(opts.revocationOnUnavailable !== undefined ? { onUnavailable: opts.revocationOnUnavailable } : {}),
    ...(opts.revocationCacheTtlMs !== undefined ? { cacheTtlMs: opts.revocationCacheTtlMs } : {}),
    ...(opts.redisClientName !== undefined ? { clientName: opts.redisClientName } : {}),
    ...(opts.onRedisError !== undefined
      ? { onError: (err: Error, context: string) => (context === 'lookup' ? undefined : opts.onRedisError!(err, context)) }
      : {}),
  });
  const authenticator = createAuthenticator({
    verifier,
    revocation,
    ...(opts.policy !== undefined ? { policy: opts.policy } : {}),
    ...(opts.verifiedCacheMaxEntries !== undefined ? { verifiedCacheMaxEntries: opts.verifiedCacheMaxEntries } : {}),
    ...(opts.deadlineMs !== undefined ? { deadlineMs: opts.deadlineMs } : {}),
  });
  const readiness = createReadiness({ keys, revocation, ...(opts.onWarmupRetry ? { onRetry: opts.onWarmupRetry } : {}) });
  return {
    authenticator,
    readiness,
    jwksStats: () => keys.stats(),
    revocation,
    async close() {
      readiness.stop();
      await revocation.close();
    },
  };
}

/**
 * {@link createVerifierStack} as every service's `main.ts` builds it: the Redis client named after
 * the service, warm-up retries, Redis errors and failed JWK Set fetches logged as warnings at most
 * every 5 s (per kind), and, in `registry`, failed JWK Set fetches counted as
 * `jwtmesh_jwks_fetch_failures_total{reason}` (reasons: the core's `JwksFetchFailureReason`) and
 * the stack's cache counters exported (`registerCacheCounters`).
 *
 * @param service - the service name (Redis `CLIENT SETNAME`, log lines)
 * @param opts - the verifier settings, e.g. from `verifierStackOptionsFromEnv`
 * @param logger - the service's pino logger
 * @param registry - the service's Prometheus registry (`createMetrics(service).registry`)
 * @param cachePrefix - prefix of the cache counters' names: `jwt_mesh_` (the services' metric
 *   names, the default) or `jwtmesh_` (authz-service's)
 */
export function createServiceVerifierStack(service: string, opts: VerifierStackOptions, logger: Logger, registry?: Registry, cachePrefix = 'jwt_mesh_'): VerifierStack {
  const failures = registry
    ? new Counter({
        name: 'jwtmesh_jwks_fetch_failures_total',
        help: 'Failed fetches of the JWK Set, by reason (tls, identity, network, timeout, http_status, invalid); the last good set stays in use.',
        labelNames: ['reason'],
        registers: [registry],
      })
    : undefined;
  for (const reason of JWKS_FETCH_FAILURE_REASONS) failures?.inc({ reason }, 0);
  const warnJwks = throttledWarn(logger, 'JWK Set fetch failed; the keys already known stay in use');
  const stack = createVerifierStack({
    ...opts,
    onJwksFetchFailure: (err) => {
      failures?.inc({ reason: err.reason });
      warnJwks(err, err.reason);
    },
    redisClientName: service,
    onWarmupRetry: throttledWarn(logger, 'warm-up not done yet (JWK Set / Redis); retrying'),
    onRedisError: throttledWarn(logger, 'Redis revocation store error'),
  });
  if (registry) registerCacheCounters(registry, stack, cachePrefix);
  return stack;
}
