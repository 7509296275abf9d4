/**
 * Prometheus metrics of a mesh service (prom-client, text format at `/metrics`):
 *
 * | name | type | labels |
 * |---|---|---|
 * | `http_requests_total` | counter | `method`, `route` (the route pattern, `unmatched` for 404s), `status` |
 * | `http_request_duration_seconds` | histogram | `method`, `route`, `status` |
 * | `jwt_mesh_auth_decisions_total` | counter | `transport` (`http`/`grpc`), `outcome` (`allow` or the core's `AuthErrorCode`) |
 * | `grpc_server_handled_total` | counter | `method`, `code` (gRPC status name) |
 * | `grpc_server_handling_seconds` | histogram | `method`, `code` |
 * | `jwt_mesh_downstream_requests_total` | counter | `target`, `status` |
 * | `jwt_mesh_downstream_duration_seconds` | histogram | `target`, `status` |
 * | `jwt_mesh_verified_token_cache_lookups_total` | counter | `result` (`hit`/`miss`), with `opts.caches` |
 * | `jwt_mesh_revocation_cache_lookups_total` | counter | `result` (`hit`/`miss` = Redis round trip), with `opts.caches` |
 *
 * plus the prom-client default process metrics. Every metric has the constant label `service`.
 *
 * Upstream: https://github.com/siimon/prom-client, Prometheus naming best practices.
 */
import { cacheCounterDefinitions, type Authenticator, type RevocationCacheStatsSource } from '@jwt-mesh/core';
import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** Latency buckets in seconds: sub-millisecond local verification up to multi-second hops. */
const BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

/** The metrics of one service, on its own registry (tests build many services in one process). */
export interface ServiceMetrics {
  readonly registry: Registry;
  readonly httpRequests: Counter<'method' | 'route' | 'status'>;
  readonly httpDuration: Histogram<'method' | 'route' | 'status'>;
  readonly authDecisions: Counter<'transport' | 'outcome'>;
  readonly grpcHandled: Counter<'method' | 'code'>;
  readonly grpcDuration: Histogram<'method' | 'code'>;
  readonly downstreamRequests: Counter<'target' | 'status'>;
  readonly downstreamDuration: Histogram<'target' | 'status'>;
}

/**
 * Creates the registry and metrics of one service.
 *
 * @param service - the service name (constant label `service`)
 * @param opts.defaultMetrics - also collect prom-client's process metrics (default true;
 *   tests that build several apps in one process may turn it off)
 * @param opts.caches - the verifier stack (`createVerifierStack`): exports its verified-token and
 *   revocation-lookup cache counters, read at scrape time
 */
export function createMetrics(
  service: string,
  opts: { defaultMetrics?: boolean; caches?: { readonly authenticator: Pick<Authenticator, 'stats'>; readonly revocation?: RevocationCacheStatsSource } } = {},
): ServiceMetrics {
  const registry = new Registry();
  registry.setDefaultLabels({ service });
  if (opts.defaultMetrics ?? true) collectDefaultMetrics({ register: registry });
  const registers = [registry];
  if (opts.caches !== undefined) registerCacheCounters(registry, opts.caches);
  return {
    registry,
    httpRequests: new Counter({ name: 'http_requests_total', help: 'HTTP requests answered, by route pattern and status.', labelNames: ['method', 'route', 'status'], registers }),
    httpDuration: new Histogram({ name: 'http_request_duration_seconds', help: 'HTTP request latency in seconds, by route pattern and status.', labelNames: ['method', 'route', 'status'], buckets: BUCKETS, registers }),
    authDecisions: new Counter({ name: 'jwt_mesh_auth_decisions_total', help: "Local token checks, by outcome ('allow' or the AuthErrorCode of the deny).", labelNames: ['transport', 'outcome'], registers }),
    grpcHandled: new Counter({ name: 'grpc_server_handled_total', help: 'gRPC calls completed, by method and status code.', labelNames: ['method', 'code'], registers }),
    grpcDuration: new Histogram({ name: 'grpc_server_handling_seconds', help: 'gRPC call latency in seconds, by method and status code.', labelNames: ['method', 'code'], buckets: BUCKETS, registers }),
    downstreamRequests: new Counter({ name: 'jwt_mesh_downstream_requests_total', help: 'Calls to the next hop, by target and status.', labelNames: ['target', 'status'], registers }),
    downstreamDuration: new Histogram({ name: 'jwt_mesh_downstream_duration_seconds', help: 'Latency of calls to the next hop in seconds.', labelNames: ['target', 'status'], buckets: BUCKETS, registers }),
  };
}

/**
 * Exports a verifier stack's cache counters on `registry`, read from the core's own counters at
 * scrape time: `jwt_mesh_verified_token_cache_lookups_total{result="hit|miss"}` and
 * `jwt_mesh_revocation_cache_lookups_total{result="hit|miss"}` (core `cacheCounterDefinitions`).
 *
 * @param registry - the service's registry
 * @param caches - the verifier stack (`createVerifierStack`): its authenticator and revocation checker
 * @param prefix - prefix of the two names, default `jwt_mesh_`
 */
export function registerCacheCounters(
  registry: Registry,
  caches: { readonly authenticator: Pick<Authenticator, 'stats'>; readonly revocation?: RevocationCacheStatsSource },
  prefix = 'jwt_mesh_',
): void {
  for (const def of cacheCounterDefinitions(prefix, caches)) new Counter({ ...def, registers: [registry] });
}
