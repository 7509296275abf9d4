/**
 * Prometheus metrics (prom-client), one registry per app instance so tests can build many apps.
 * Exposed at GET /metrics in the text exposition format.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** The metrics of one app. Label values are small fixed sets (route patterns, outcomes). */
export interface Metrics {
  readonly registry: Registry;
  /** `http_requests_total{method,route,status}` */
  readonly httpRequests: Counter<'method' | 'route' | 'status'>;
  /** `http_request_duration_seconds{method,route}` */
  readonly httpDuration: Histogram<'method' | 'route'>;
  /** `auth_login_total{outcome}`: success | invalid_credentials | invalid_scope | rate_limited */
  readonly loginOutcomes: Counter<'outcome'>;
  /** `auth_refresh_total{outcome}`: rotated | grace_successor | reuse_detected | invalid | rate_limited */
  readonly refreshOutcomes: Counter<'outcome'>;
  /** `auth_revocations_total{kind}`: jti | sid */
  readonly revocations: Counter<'kind'>;
  /** `auth_cleanup_deleted_total{table}` */
  readonly cleanupDeleted: Counter<'table'>;
  /** `auth_password_hash_duration_seconds` (scrypt time, login and register) */
  readonly passwordHashDuration: Histogram<never>;
  /** `auth_password_hash_in_flight`: password checks holding a slot of the hash limiter now */
  readonly passwordHashInFlight: Gauge<never>;
  /** `auth_password_hash_queued`: requests waiting for a slot now */
  readonly passwordHashQueued: Gauge<never>;
  /** `auth_password_hash_shed_total{reason}`: answered 503 by the limiter; queue_full | wait_timeout */
  readonly passwordHashShed: Counter<'reason'>;
}

/**
 * Creates a registry with the service's metrics.
 * @param opts.defaultMetrics - also collect process metrics (CPU, memory, event loop); main.ts only
 */
export function createMetrics(opts: { defaultMetrics?: boolean } = {}): Metrics {
  const registry = new Registry();
  if (opts.defaultMetrics) collectDefaultMetrics({ register: registry });
  const registers = [registry];
  return {
    registry,
    httpRequests: new Counter({ name: 'http_requests_total', help: 'HTTP requests by route and status', labelNames: ['method', 'route', 'status'], registers }),
    httpDuration: new Histogram({
      name: 'http_request_duration_seconds',
      help: 'HTTP request latency by route',
      labelNames: ['method', 'route'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    }),
    loginOutcomes: new Counter({ name: 'auth_login_total', help: 'Login attempts by outcome', labelNames: ['outcome'], registers }),
    refreshOutcomes: new Counter({ name: 'auth_refresh_total', help: 'Refresh-token grants by outcome', labelNames: ['outcome'], registers }),
    revocations: new Counter({ name: 'auth_revocations_total', help: 'Revocations written, by kind', labelNames: ['kind'], registers }),
    cleanupDeleted: new Counter({ name: 'auth_cleanup_deleted_total', help: 'Expired rows removed by the cleanup job', labelNames: ['table'], registers }),
    passwordHashDuration: new Histogram({
      name: 'auth_password_hash_duration_seconds',
      help: 'scrypt time per password hash or check',
      buckets: [0.01, 0.025, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6],
      registers,
    }),
    passwordHashInFlight: new Gauge({ name: 'auth_password_hash_in_flight', help: 'Password checks running (holding a hash-limiter slot)', registers }),
    passwordHashQueued: new Gauge({ name: 'auth_password_hash_queued', help: 'Requests waiting for a hash-limiter slot', registers }),
    passwordHashShed: new Counter({
      name: 'auth_password_hash_shed_total',
      help: 'Login/register requests answered 503 by the hash limiter, by reason',
      labelNames: ['reason'],
      registers,
    }),
  };
}
