/**
 * Renders the Envoy bootstrap configs of the jwt-mesh (the edge proxy and one sidecar per
 * service) from the typed topology in ./topology.ts, for two targets:
 *
 * - `local`: every workload on 127.0.0.1 with its own ports, certificates as flat files
 *   (`<certDir>/<workload>.crt|.key`, `<certDir>/ca.crt`) as `make certs` writes them;
 * - `k8s`: Kubernetes Service DNS names, the same ports in every pod, certificates mounted from
 *   Secrets at `/etc/jwt-mesh/certs/<workload>/{tls.crt,tls.key,ca.crt}`.
 *
 * Every output is a complete Envoy v3 bootstrap (static resources only) that passes
 * `envoy --mode validate`. The field names follow the Envoy v3 API reference
 * (https://www.envoyproxy.io/docs/envoy/latest/api-v3/api): HttpConnectionManager, ExtAuthz,
 * HeaderMutation, UpstreamTlsContext/DownstreamTlsContext, HealthCheck, OutlierDetection.
 *
 * CLI: `tsx envoy/src/render.ts --target local|k8s --out <dir> [--ports-json <json|file>] [--cert-dir <dir>]
 * [--tracing-collector <host:port> [--tracing-sample-percent <0..100>]]`.
 */
import { mkdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { dirname, join, posix, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import YAML from 'yaml';
import { z } from 'zod';
import {
  allowedCallers,
  defaultPlan,
  defaultTopology,
  isIpLiteral,
  k8sServiceHost,
  k8sServiceNames,
  spiffeId,
  validateTopology,
  type HostPort,
  type ServicePorts,
  type ServiceSpec,
  type TargetPlan,
  type Topology,
  type UpstreamProtocol,
} from './topology.js';

export type Target = 'local' | 'k8s';
export const TARGETS: readonly Target[] = ['local', 'k8s'];

// ---------------------------------------------------------------------------------------------
// Options and plan resolution
// ---------------------------------------------------------------------------------------------

const portSchema = z.number().int().min(0).max(65535);
const hostPortSchema = z.union([
  z.object({ host: z.string().min(1), port: portSchema }).strict(),
  z
    .string()
    .regex(/^[^\s:]+:\d{1,5}$/, 'expected "host:port"')
    .transform((s) => {
      const i = s.lastIndexOf(':');
      return { host: s.slice(0, i), port: Number(s.slice(i + 1)) };
    })
    .pipe(z.object({ host: z.string().min(1), port: portSchema })),
]);

/**
 * Port and host overrides, merged over the target's default plan (see `defaultPlan`).
 * Every field is optional; `authz` replaces the whole endpoint list. Endpoints may be given as
 * `{ "host": "127.0.0.1", "port": 9001 }` or `"127.0.0.1:9001"`. Port 0 lets the OS pick a port
 * for a listener or the admin interface (tests read the bound port from the admin API).
 */
export const portsOverrideSchema = z
  .object({
    edge: z.object({ http: portSchema, https: portSchema, admin: portSchema, health: portSchema }).partial().strict(),
    authz: z.array(hostPortSchema).min(1),
    services: z.record(
      z.string(),
      z
        .object({
          app: portSchema,
          grpc: portSchema,
          inbound: portSchema,
          outbound: portSchema,
          admin: portSchema,
          health: portSchema,
          host: z.string().min(1),
        })
        .partial()
        .strict(),
    ),
  })
  .partial()
  .strict();
export type PortsOverride = z.input<typeof portsOverrideSchema>;

/** Options of {@link renderConfigs}. */
export interface RenderOptions {
  /** Ports/hosts merged over the target's defaults. Validated; a bad value throws naming the field. */
  ports?: PortsOverride;
  /**
   * Certificate directory. Default: `certs` (local, relative to Envoy's working directory) or
   * `/etc/jwt-mesh/certs` (k8s). Tests point the k8s target at a temp dir laid out by
   * `writeK8sCertLayout` so that `envoy --mode validate` can read real files.
   */
  certDir?: string;
  /** Address for listeners other workloads reach. Default `127.0.0.1` (local) or `0.0.0.0` (k8s). */
  bindAddress?: string;
  /**
   * Envoy's OpenTelemetry tracer on the edge and every sidecar (see {@link TracingOptions}).
   * Absent (the default): no tracer, no collector cluster, and the rendered configs are exactly
   * what they are without this option.
   */
  tracing?: TracingOptions;
}

/**
 * Envoy's OpenTelemetry tracer (`envoy.tracers.opentelemetry`, `config.trace.v3.OpenTelemetryConfig`,
 * https://www.envoyproxy.io/docs/envoy/v1.40.0/api-v3/config/trace/v3/opentelemetry.proto) on
 * every proxy, exporting OTLP/HTTP (protobuf, the OTLP spec's `/v1/traces`) through the
 * `opentelemetry_collector` cluster.
 *
 * Sampling is decided once per request, at the edge: a request that arrives with a W3C
 * `traceparent` keeps that header's sampled flag on every proxy (Envoy's OpenTelemetry tracer
 * follows the parent's flag); a request without one is sampled by the edge with probability
 * `edgeSamplePercent`, and never by a sidecar (their `random_sampling` is 0 %), so a sidecar never
 * starts a sampled trace of its own. `x-client-trace-id` never forces a trace (`client_sampling` 0 %).
 */
export interface TracingOptions {
  /**
   * The OTLP/HTTP collector the proxies export to, plain HTTP: `"host:port"` or `{ host, port }`.
   * An IP literal makes a STATIC cluster, a DNS name a STRICT_DNS one (Kubernetes:
   * `otel-collector.jwt-mesh.svc.cluster.local:4318`).
   */
  collector: HostPort | string;
  /** Path of the OTLP/HTTP traces endpoint on the collector. Default `/v1/traces` (OTLP/HTTP). */
  tracesPath?: string;
  /**
   * Percentage (0..100, fractions allowed) of requests that the edge samples. Default 100.
   * Sidecars always use 0 and follow the incoming `traceparent`. Envoy decides at the edge from
   * the request's `x-request-id` (UUID request-ID extension, `use_request_id_for_trace_sampling`):
   * sampled when its first 8 hex digits, as an integer, modulo 10000 are below
   * `edgeSamplePercent` × 100. The edge generates a random UUID per request, or keeps a client's
   * (`preserve_external_request_id`); an x-request-id that does not start with 8 hex digits is
   * never sampled. A client's `traceparent` can turn sampling off (`-00`), not on.
   */
  edgeSamplePercent?: number;
  /** Timeout of one OTLP export request, milliseconds. Default 1000. */
  exportTimeoutMs?: number;
  /**
   * How often each proxy sends its buffered spans, milliseconds (Envoy runtime key
   * `tracing.opentelemetry.flush_interval_ms`; Envoy's default is 5000). Default 1000.
   */
  flushIntervalMs?: number;
}

const tracingSchema = z
  .object({
    collector: hostPortSchema,
    tracesPath: z.string().regex(/^\/[^?#\s]*$/, 'must be a path starting with "/"').default('/v1/traces'),
    edgeSamplePercent: z.number().min(0).max(100).default(100),
    exportTimeoutMs: z.number().int().min(1).max(60_000).default(1000),
    flushIntervalMs: z.number().int().min(100).max(60_000).default(1000),
  })
  .strict();

/** {@link TracingOptions} validated, with defaults filled in. */
export type TracingPlan = z.output<typeof tracingSchema>;

/**
 * Validates tracing options and fills in the defaults.
 * @throws Error naming the bad field (`tracing.collector`, `tracing.edgeSamplePercent`, ...).
 */
export function resolveTracing(options: TracingOptions): TracingPlan {
  const parsed = tracingSchema.safeParse(options);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new Error(`render: bad tracing option at "tracing.${issue?.path.join('.') ?? ''}": ${issue?.message ?? 'invalid'}`);
  }
  return parsed.data;
}

/**
 * The target's default plan with `options` merged in.
 * @throws Error naming the bad field when `options.ports` does not match {@link portsOverrideSchema},
 *   or names a service the topology does not have.
 */
export function resolvePlan(topology: Topology, target: Target, options: RenderOptions = {}): TargetPlan {
  if (!TARGETS.includes(target)) throw new Error(`render: unknown target "${String(target)}" (expected local or k8s)`);
  const plan = defaultPlan(target, topology);
  const parsed = portsOverrideSchema.safeParse(options.ports ?? {});
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new Error(`render: bad ports override at "${issue?.path.join('.') || '(root)'}": ${issue?.message ?? 'invalid'}`);
  }
  const ports = parsed.data;
  if (ports.edge) plan.edge = { ...plan.edge, ...ports.edge };
  if (ports.authz) plan.authz = ports.authz;
  for (const [name, override] of Object.entries(ports.services ?? {})) {
    const current = plan.services[name];
    if (!current) throw new Error(`render: ports override names unknown service "${name}"`);
    plan.services[name] = { ...current, ...override };
  }
  if (options.certDir !== undefined) plan.certDir = options.certDir;
  if (options.bindAddress !== undefined) plan.bindAddress = options.bindAddress;
  return plan;
}

// ---------------------------------------------------------------------------------------------
// Certificates
// ---------------------------------------------------------------------------------------------

/** Files of one workload's mesh identity: its certificate chain, its private key, the mesh CA. */
export interface CertFiles {
  cert: string;
  key: string;
  ca: string;
}

/**
 * Where a workload's mesh certificate lives for the plan's target.
 * `local`: `<certDir>/<workload>.crt|.key` and `<certDir>/ca.crt`;
 * `k8s`: `<certDir>/<workload>/tls.crt|tls.key|ca.crt`.
 * `edge-https` (the public HTTPS listener's pair) follows the same rule.
 */
export function certFilesFor(plan: Pick<TargetPlan, 'target' | 'certDir'>, workload: string): CertFiles {
  const d = plan.certDir;
  if (plan.target === 'local') {
    return { cert: posix.join(d, `${workload}.crt`), key: posix.join(d, `${workload}.key`), ca: posix.join(d, 'ca.crt') };
  }
  return {
    cert: posix.join(d, workload, 'tls.crt'),
    key: posix.join(d, workload, 'tls.key'),
    ca: posix.join(d, workload, 'ca.crt'),
  };
}

// ---------------------------------------------------------------------------------------------
// Building blocks (plain objects in Envoy v3 JSON/YAML form)
// ---------------------------------------------------------------------------------------------

type Obj = Record<string, unknown>;

const T = {
  hcm: 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
  extAuthz: 'type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz',
  headerMutation: 'type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation',
  healthCheck: 'type.googleapis.com/envoy.extensions.filters.http.health_check.v3.HealthCheck',
  rbac: 'type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC',
  router: 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router',
  upstreamTls: 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext',
  downstreamTls: 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext',
  httpOptions: 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
  stdoutLog: 'type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog',
  uuidRequestId: 'type.googleapis.com/envoy.extensions.request_id.uuid.v3.UuidRequestIdConfig',
  previousHosts: 'type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate',
  downstreamConnections:
    'type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig',
  openTelemetry: 'type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig',
} as const;

/** Milliseconds as a protobuf Duration string ("0.250s"). */
function duration(ms: number): string {
  return `${(ms / 1000).toFixed(3)}s`;
}

function socketAddress(host: string, port: number): Obj {
  return { socket_address: { address: host, port_value: port } };
}

/**
 * JSON access log to stdout. Deliberately no Authorization, Cookie or any other request header
 * that can carry a credential, and the path without its query string (a token must never be in
 * a query string, RFC 6750 §5.3, but if a client puts one there it does not reach the logs).
 */
function accessLog(proxy: string, extra: Obj = {}): Obj[] {
  return [
    {
      name: 'envoy.access_loggers.stdout',
      typed_config: {
        '@type': T.stdoutLog,
        log_format: {
          json_format: {
            start_time: '%START_TIME%',
            proxy,
            method: '%REQ(:METHOD)%',
            path: '%PATH(NQ:PATH)%',
            protocol: '%PROTOCOL%',
            status: '%RESPONSE_CODE%',
            response_flags: '%RESPONSE_FLAGS%',
            response_code_details: '%RESPONSE_CODE_DETAILS%',
            duration_ms: '%DURATION%',
            bytes_received: '%BYTES_RECEIVED%',
            bytes_sent: '%BYTES_SENT%',
            upstream_cluster: '%UPSTREAM_CLUSTER%',
            upstream_host: '%UPSTREAM_HOST%',
            x_request_id: '%REQ(X-REQUEST-ID)%',
            traceparent: '%REQ(TRACEPARENT)%',
            ...extra,
          },
        },
      },
    },
  ];
}

/** The HTTP filter that deletes every client-sent identity header. Placed before ext_authz. */
function stripIdentityHeadersFilter(topology: Topology): Obj {
  return {
    name: 'envoy.filters.http.header_mutation',
    typed_config: {
      '@type': T.headerMutation,
      mutations: { request_mutations: topology.identityHeaders.map((h) => ({ remove: h })) },
    },
  };
}

/**
 * ext_authz over gRPC to cluster `authz`. Fails closed: `failure_mode_allow: false`, an explicit
 * timeout, `status_on_error: 503`. Only `allowed_headers` go into the CheckRequest (path, method,
 * host and the request id are part of its `attributes.request.http` anyway). A connect failure,
 * reset, refused stream or UNAVAILABLE from one replica is retried once on another replica
 * (`previous_hosts`), within the same timeout, so one stopped replica does not fail requests.
 */
function extAuthzFilter(topology: Topology): Obj {
  return {
    name: 'envoy.filters.http.ext_authz',
    typed_config: {
      '@type': T.extAuthz,
      transport_api_version: 'V3',
      grpc_service: {
        envoy_grpc: { cluster_name: 'authz' },
        timeout: duration(topology.edge.extAuthzTimeoutMs),
        // Envoy turns this core RetryPolicy into a route retry policy whose per-try timeout is the
        // back-off max_interval (Http::Utility::convertCoreToRouteRetryPolicy); so max_interval
        // here IS the per-try timeout: 40% of the total, leaving room for one retry on another
        // replica when one hangs. The back-off itself stays at a few milliseconds.
        retry_policy: {
          retry_on: 'connect-failure,refused-stream,reset,unavailable',
          num_retries: 1,
          retry_back_off: { base_interval: '0.005s', max_interval: duration(Math.round(topology.edge.extAuthzTimeoutMs * 0.4)) },
          retry_host_predicate: [{ name: 'envoy.retry_host_predicates.previous_hosts', typed_config: { '@type': T.previousHosts } }],
          host_selection_retry_max_attempts: 3,
        },
      },
      failure_mode_allow: false,
      status_on_error: { code: 'ServiceUnavailable' },
      include_peer_certificate: false,
      include_tls_session: false,
      allowed_headers: { patterns: topology.authz.allowedHeaders.map((h) => ({ exact: h, ignore_case: true })) },
      validate_mutations: true,
      stat_prefix: 'jwt_mesh',
    },
  };
}

/**
 * Retries of a route to a service (edge -> sidecar, sidecar -> sidecar, sidecar -> its app), in two
 * tiers, because Envoy's RetryPolicy has no method condition (a route matching `:method` does it):
 *
 * - **idempotent** (`GET`, `HEAD`; {@link idempotentRetryPolicy}): up to
 *   {@link IDEMPOTENT_RETRY.numRetries} retries on `connect-failure` (nothing listens: a restart),
 *   `refused-stream` (HTTP/2 REFUSED_STREAM: the stream was never processed) and
 *   `reset-before-request` (the upstream connection went away before the request's first byte was
 *   written: a closing keep-alive connection), with a 25 ms base back-off (Envoy's randomized
 *   exponential back-off, capped at 250 ms), so a short gap in which a service instance closes its
 *   listener is bridged. Never `5xx` or `retriable-status-codes`: a 503 from ext_authz or from a
 *   service is an answer, not a transport failure, and must not be retried blindly.
 * - **every other method** ({@link safeRetryPolicy}): one retry on `connect-failure` and
 *   `refused-stream` only, where the request provably never reached the upstream.
 *
 * `previous_hosts` makes a retry prefer another endpoint when the cluster has several (a headless
 * Service, several replicas); with one endpoint it falls back to the same one.
 * https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/route/v3/route_components.proto#config-route-v3-retrypolicy
 * https://www.envoyproxy.io/docs/envoy/latest/configuration/http/http_filters/router_filter#x-envoy-retry-on
 */
export const IDEMPOTENT_RETRY = Object.freeze({
  methods: ['GET', 'HEAD'] as readonly string[],
  retryOn: 'connect-failure,refused-stream,reset-before-request',
  numRetries: 3,
  /** Base of Envoy's randomized exponential back-off, ms: waits are drawn from [0, (2^n - 1) * base]. */
  backOffBaseMs: 25,
  /** Cap of one back-off wait, ms. */
  backOffMaxMs: 250,
  /**
   * Cap of one try, ms. Timeouts are not in `retry_on`, so a try that hits it is answered 504,
   * not retried; the route timeout (15 s) still bounds the whole request.
   */
  perTryTimeoutMs: 10_000,
});

/** The retry policy of GET / HEAD routes to a service: see {@link IDEMPOTENT_RETRY}. */
function idempotentRetryPolicy(opts: { otherHosts: boolean }): Obj {
  return {
    retry_on: IDEMPOTENT_RETRY.retryOn,
    num_retries: IDEMPOTENT_RETRY.numRetries,
    per_try_timeout: duration(IDEMPOTENT_RETRY.perTryTimeoutMs),
    retry_back_off: { base_interval: duration(IDEMPOTENT_RETRY.backOffBaseMs), max_interval: duration(IDEMPOTENT_RETRY.backOffMaxMs) },
    ...(opts.otherHosts
      ? {
          retry_host_predicate: [{ name: 'envoy.retry_host_predicates.previous_hosts', typed_config: { '@type': T.previousHosts } }],
          host_selection_retry_max_attempts: 3,
        }
      : {}),
  };
}

/** The retry policy of non-idempotent routes to a service: only failures where the request never reached it. */
function safeRetryPolicy(): Obj {
  return { retry_on: 'connect-failure,refused-stream', num_retries: 1 };
}

/**
 * One route to a service cluster as two routes: GET/HEAD first (matched on `:method`) with
 * {@link idempotentRetryPolicy}, then every method with {@link safeRetryPolicy}. `name`, when
 * given, names the second one; the first gets `<name>:idempotent`.
 */
function serviceRoutes(opts: { name?: string; match: Obj; cluster: string; timeout: string; otherHosts: boolean }): Obj[] {
  const methodMatch = {
    name: ':method',
    string_match: { safe_regex: { regex: `^(${IDEMPOTENT_RETRY.methods.join('|')})$` } },
  };
  const existing = (opts.match.headers as Obj[] | undefined) ?? [];
  return [
    {
      ...(opts.name ? { name: `${opts.name}:idempotent` } : {}),
      match: { ...opts.match, headers: [...existing, methodMatch] },
      route: { cluster: opts.cluster, timeout: opts.timeout, retry_policy: idempotentRetryPolicy({ otherHosts: opts.otherHosts }) },
    },
    {
      ...(opts.name ? { name: opts.name } : {}),
      match: opts.match,
      route: { cluster: opts.cluster, timeout: opts.timeout, retry_policy: safeRetryPolicy() },
    },
  ];
}

/**
 * Envoy RBAC (https://www.envoyproxy.io/docs/envoy/latest/configuration/http/http_filters/rbac_filter)
 * for a sidecar whose spec sets `meshCallersLimitedToPrefixes`: the edge (when it is a caller) may
 * reach every path, every other allowed caller only the service's `meshPrefixes` (the path itself
 * or below it, as `path_separated_prefix`). Principals are the callers' verified SPIFFE IDs (the
 * URI SAN of the client certificate the TLS handshake already checked); anything else gets 403.
 */
function meshCallersRbacFilter(topology: Topology, spec: ServiceSpec, callers: string[]): Obj {
  const principal = (w: string) => ({
    authenticated: { principal_name: { exact: spiffeId(w, topology.namespace, topology.trustDomain) } },
  });
  const meshCallers = callers.filter((w) => w !== 'edge');
  const policies: Obj = {};
  if (callers.includes('edge')) policies['edge'] = { permissions: [{ any: true }], principals: [principal('edge')] };
  if (meshCallers.length > 0) {
    policies['mesh-callers'] = {
      permissions: spec.meshPrefixes.flatMap((p) => [
        { url_path: { path: { exact: p } } },
        { url_path: { path: { prefix: `${p}/` } } },
      ]),
      principals: meshCallers.map(principal),
    };
  }
  return { name: 'envoy.filters.http.rbac', typed_config: { '@type': T.rbac, rules: { action: 'ALLOW', policies } } };
}

function routerFilter(): Obj {
  return { name: 'envoy.filters.http.router', typed_config: { '@type': T.router, suppress_envoy_headers: true } };
}

/** Answers `GET /ready` with 200 (503 while Envoy drains or was failed via admin). For Kubernetes probes. */
function readyFilter(): Obj {
  return {
    name: 'envoy.filters.http.health_check',
    typed_config: {
      '@type': T.healthCheck,
      pass_through_mode: false,
      headers: [{ name: ':path', string_match: { exact: '/ready' } }],
    },
  };
}

/**
 * HTTP connection manager settings shared by every listener: RFC 3986 path normalization,
 * merged slashes, requests with escaped slashes (%2F, %5C) rejected, a request-header size limit
 * (431 from the codec, before any filter), headers with underscores rejected, request ids
 * generated when absent and kept unchanged when present (no trace-reason packing), and
 * x-forwarded-client-cert handling set per listener.
 */
function hcm(opts: {
  statPrefix: string;
  proxy: string;
  topology: Topology;
  httpFilters: Obj[];
  routeConfig: Obj;
  forwardClientCert: 'SANITIZE' | 'SANITIZE_SET';
  useRemoteAddress: boolean;
  accessLogExtra?: Obj;
  localReplyConfig?: Obj;
}): Obj {
  const typed: Obj = {
    '@type': T.hcm,
    stat_prefix: opts.statPrefix,
    codec_type: 'AUTO',
    use_remote_address: opts.useRemoteAddress,
    xff_num_trusted_hops: 0,
    normalize_path: true,
    merge_slashes: true,
    // REJECT_REQUEST rather than UNESCAPE_AND_REDIRECT: no jwt-mesh API has an encoded slash in a
    // path, a 400 leaves nothing for ext_authz and the upstream to disagree about, and a redirect
    // would make clients resend their Authorization header to a rewritten URL.
    path_with_escaped_slashes_action: 'REJECT_REQUEST',
    max_request_headers_kb: opts.topology.edge.maxRequestHeadersKb,
    common_http_protocol_options: {
      headers_with_underscores_action: 'REJECT_REQUEST',
      idle_timeout: '300s',
      max_headers_count: 100,
    },
    http2_protocol_options: {
      max_concurrent_streams: 100,
      initial_stream_window_size: 65536,
      initial_connection_window_size: 1048576,
    },
    request_headers_timeout: '10s',
    stream_idle_timeout: '300s',
    generate_request_id: true,
    preserve_external_request_id: true,
    always_set_request_id_in_response: true,
    request_id_extension: {
      typed_config: { '@type': T.uuidRequestId, pack_trace_reason: false, use_request_id_for_trace_sampling: false },
    },
    forward_client_cert_details: opts.forwardClientCert,
    access_log: accessLog(opts.proxy, opts.accessLogExtra),
    http_filters: opts.httpFilters,
    route_config: opts.routeConfig,
  };
  if (opts.forwardClientCert === 'SANITIZE_SET') typed.set_current_client_cert_details = { uri: true };
  if (opts.localReplyConfig) typed.local_reply_config = opts.localReplyConfig;
  return { name: 'envoy.filters.network.http_connection_manager', typed_config: typed };
}

/**
 * The edge's local replies for an unreachable route upstream (the auth-service or a service
 * sidecar down: response flags UF, UH, URX, UC, UR with status 503) get a JSON body in the shape
 * of the other API errors, `{"error":"temporarily_unavailable",...}` (the RFC 6749 error code),
 * and `retry-after: 1`, instead of Envoy's plain-text "upstream connect error ...". ext_authz
 * answers (flag UAEX, including its own 503s) keep the body the authz-service chose.
 * A sidecar's inbound listener gives the same answer when its own app is down, naming the
 * workload (`upstream`), so the edge passes on one shape whichever proxy found the app gone.
 * https://www.envoyproxy.io/docs/envoy/latest/configuration/http/http_conn_man/local_reply
 * @param upstream - the `upstream` member of the body; default the Envoy cluster name
 */
function upstreamUnavailableReply(upstream = '%UPSTREAM_CLUSTER%'): Obj {
  return {
    mappers: [
      {
        filter: {
          and_filter: {
            filters: [
              { status_code_filter: { comparison: { op: 'EQ', value: { default_value: 503, runtime_key: 'jwt_mesh.local_reply.upstream_unavailable' } } } },
              { response_flag_filter: { flags: ['UF', 'UH', 'URX', 'UC', 'UR'] } },
            ],
          },
        },
        headers_to_add: [{ header: { key: 'retry-after', value: '1' }, append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' }],
        body_format_override: {
          json_format: {
            error: 'temporarily_unavailable',
            error_description: 'the upstream service is unavailable; retry later',
            upstream,
          },
        },
      },
    ],
  };
}

function jsonDirectResponse(status: number, error: string): Obj {
  return {
    direct_response: { status, body: { inline_string: `${JSON.stringify({ error })}\n` } },
    response_headers_to_add: [
      { header: { key: 'content-type', value: 'application/json' }, append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' },
    ],
  };
}

/**
 * Mesh TLS: 1.3 only. Both bounds are explicit because Envoy's default maximum for upstream
 * (client) connections is TLS 1.2, which would leave no common version.
 */
const MESH_TLS_PARAMS = { tls_minimum_protocol_version: 'TLSv1_3', tls_maximum_protocol_version: 'TLSv1_3' } as const;

/** Upstream mTLS: present `own`'s certificate, trust only the mesh CA, accept only `peer`'s SPIFFE ID. */
function upstreamTls(topology: Topology, plan: TargetPlan, own: string, peer: string, alpn?: string[]): Obj {
  const files = certFilesFor(plan, own);
  return {
    name: 'envoy.transport_sockets.tls',
    typed_config: {
      '@type': T.upstreamTls,
      sni: k8sServiceHost(peer, topology.namespace),
      common_tls_context: {
        tls_params: MESH_TLS_PARAMS,
        tls_certificates: [{ certificate_chain: { filename: files.cert }, private_key: { filename: files.key } }],
        validation_context: {
          trusted_ca: { filename: files.ca },
          match_typed_subject_alt_names: [
            { san_type: 'URI', matcher: { exact: spiffeId(peer, topology.namespace, topology.trustDomain) } },
          ],
        },
        ...(alpn ? { alpn_protocols: alpn } : {}),
      },
    },
  };
}

/** Downstream mTLS for a sidecar inbound listener: a client certificate from the mesh CA with one of `callers`' SPIFFE IDs is required. */
function inboundTls(topology: Topology, plan: TargetPlan, own: string, callers: string[]): Obj {
  const files = certFilesFor(plan, own);
  return {
    name: 'envoy.transport_sockets.tls',
    typed_config: {
      '@type': T.downstreamTls,
      require_client_certificate: true,
      common_tls_context: {
        tls_params: MESH_TLS_PARAMS,
        tls_certificates: [{ certificate_chain: { filename: files.cert }, private_key: { filename: files.key } }],
        validation_context: {
          trusted_ca: { filename: files.ca },
          match_typed_subject_alt_names: callers.map((w) => ({
            san_type: 'URI',
            matcher: { exact: spiffeId(w, topology.namespace, topology.trustDomain) },
          })),
        },
        alpn_protocols: ['h2', 'http/1.1'],
      },
    },
  };
}

function protocolOptions(protocol: UpstreamProtocol): Obj {
  const h2 = { max_concurrent_streams: 1000, connection_keepalive: { interval: '30s', timeout: '5s' } };
  let body: Obj;
  if (protocol === 'http2') body = { explicit_http_config: { http2_protocol_options: h2 } };
  else if (protocol === 'http1') body = { explicit_http_config: { http_protocol_options: {} } };
  else body = { use_downstream_protocol_config: { http_protocol_options: {}, http2_protocol_options: h2 } };
  return { 'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': { '@type': T.httpOptions, ...body } };
}

/** A cluster over `endpoints`: STATIC when every host is an IP literal, else STRICT_DNS (one host per A record). */
function cluster(
  name: string,
  endpoints: HostPort[],
  opts: { protocol: UpstreamProtocol; connectTimeoutMs: number; transportSocket?: Obj; extra?: Obj },
): Obj {
  const allIp = endpoints.every((e) => isIpLiteral(e.host));
  return {
    name,
    type: allIp ? 'STATIC' : 'STRICT_DNS',
    // STRICT_DNS re-resolves every 5 s (Envoy's default), so pods joining a headless Service are picked up.
    ...(allIp ? {} : { dns_lookup_family: 'V4_PREFERRED' }),
    connect_timeout: duration(opts.connectTimeoutMs),
    lb_policy: 'ROUND_ROBIN',
    per_connection_buffer_limit_bytes: 32768,
    load_assignment: {
      cluster_name: name,
      endpoints: [{ lb_endpoints: endpoints.map((e) => ({ endpoint: { address: socketAddress(e.host, e.port) } })) }],
    },
    typed_extension_protocol_options: protocolOptions(opts.protocol),
    circuit_breakers: {
      thresholds: [{ priority: 'DEFAULT', max_connections: 1024, max_pending_requests: 1024, max_requests: 4096, max_retries: 16 }],
    },
    ...(opts.transportSocket ? { transport_socket: opts.transportSocket } : {}),
    ...opts.extra,
  };
}

/**
 * The ext_authz cluster: every authz-service replica, HTTP/2, mTLS with `own`'s certificate
 * (accepting only the `authz` SPIFFE ID), gRPC health checks (grpc.health.v1), outlier detection
 * (a replica failing connects or answering errors is ejected), circuit breakers.
 */
function authzCluster(topology: Topology, plan: TargetPlan, own: string): Obj {
  return cluster('authz', plan.authz, {
    protocol: 'http2',
    connectTimeoutMs: 250,
    transportSocket: upstreamTls(topology, plan, own, 'authz', ['h2']),
    extra: {
      lb_policy: 'LEAST_REQUEST',
      health_checks: [
        {
          timeout: '1s',
          interval: '2s',
          no_traffic_interval: '2s',
          unhealthy_interval: '1s',
          unhealthy_threshold: 2,
          healthy_threshold: 1,
          interval_jitter: '0.1s',
          grpc_health_check: { service_name: topology.authz.healthServiceName },
        },
      ],
      outlier_detection: {
        consecutive_5xx: 5,
        consecutive_gateway_failure: 3,
        split_external_local_origin_errors: true,
        consecutive_local_origin_failure: 2,
        interval: '2s',
        base_ejection_time: '10s',
        max_ejection_percent: 50,
      },
    },
  });
}

function adminBlock(port: number): Obj {
  // Admin only on loopback: it can drain listeners, dump config (including file paths) and quit.
  return { address: socketAddress('127.0.0.1', port) };
}

function overloadManager(maxConnections: number): Obj {
  return {
    resource_monitors: [
      {
        name: 'envoy.resource_monitors.global_downstream_max_connections',
        typed_config: { '@type': T.downstreamConnections, max_active_downstream_connections: maxConnections },
      },
    ],
  };
}

/** A plain-HTTP listener for Kubernetes probes: `GET /ready` answered by Envoy; optional exact paths proxied to a cluster. */
function healthListener(plan: TargetPlan, port: number, proxy: string, topology: Topology, appPaths: string[] = []): Obj {
  return {
    name: 'health',
    address: socketAddress(plan.bindAddress, port),
    filter_chains: [
      {
        filters: [
          hcm({
            statPrefix: 'health',
            proxy: `${proxy}-health`,
            topology,
            forwardClientCert: 'SANITIZE',
            useRemoteAddress: true,
            httpFilters: [readyFilter(), routerFilter()],
            routeConfig: {
              name: 'health',
              virtual_hosts: [
                {
                  name: 'health',
                  domains: ['*'],
                  routes: [
                    ...appPaths.map((p) => ({ match: { path: p }, route: { cluster: 'local_app', timeout: '5s' } })),
                    { match: { prefix: '/' }, ...jsonDirectResponse(404, 'not_found') },
                  ],
                },
              ],
            },
          }),
        ],
      },
    ],
  };
}

// ---------------------------------------------------------------------------------------------
// Edge
// ---------------------------------------------------------------------------------------------

/**
 * The edge Envoy bootstrap: listeners `edge_http` and `edge_https` (server certificate
 * `edge-https` from the dev CA), both through the same filter chain:
 * header_mutation (remove client-sent identity headers) -> ext_authz (gRPC, cluster `authz`) -> router.
 * Routes: `healthPath` answered locally, each service's `edgePrefixes` (the auth-service's `/auth`
 * and `/.well-known` included) -> that service's sidecar (mTLS), anything else 404. Every route is checked by ext_authz; which
 * routes are public is the authz policy's decision. Routes upstream retry as {@link IDEMPOTENT_RETRY}
 * says (GET/HEAD on connection-level failures only, never on a 5xx answer).
 */
export function buildEdgeConfig(topology: Topology, plan: TargetPlan): Obj {
  validateTopology(topology);
  const edgeServices = topology.services.filter((s) => s.edgePrefixes.length > 0);
  const routes: Obj[] = [
    {
      name: 'healthz',
      match: { path: topology.edge.healthPath },
      direct_response: { status: 200, body: { inline_string: 'ok\n' } },
    },
    ...edgeServices.flatMap((s) =>
      s.edgePrefixes.flatMap((p) =>
        serviceRoutes({ name: `${s.name}:${p}`, match: { path_separated_prefix: p }, cluster: s.name, timeout: '15s', otherHosts: true }),
      ),
    ),
    { name: 'not-found', match: { prefix: '/' }, ...jsonDirectResponse(404, 'not_found') },
  ];
  const routeConfig = {
    name: 'edge',
    virtual_hosts: [{ name: 'edge', domains: ['*'], routes }],
  };
  const filters = [stripIdentityHeadersFilter(topology), extAuthzFilter(topology), routerFilter()];
  const edgeHcm = (statPrefix: string) =>
    hcm({
      statPrefix,
      proxy: 'edge',
      topology,
      httpFilters: filters,
      routeConfig,
      // Clients never get to name a client certificate for the services.
      forwardClientCert: 'SANITIZE',
      useRemoteAddress: true,
      localReplyConfig: upstreamUnavailableReply(),
    });
  const https = certFilesFor(plan, 'edge-https');
  const listeners: Obj[] = [
    {
      name: 'edge_http',
      address: socketAddress(plan.bindAddress, plan.edge.http),
      per_connection_buffer_limit_bytes: 32768,
      filter_chains: [{ filters: [edgeHcm('edge_http')] }],
    },
    {
      name: 'edge_https',
      address: socketAddress(plan.bindAddress, plan.edge.https),
      per_connection_buffer_limit_bytes: 32768,
      filter_chains: [
        {
          filters: [edgeHcm('edge_https')],
          transport_socket: {
            name: 'envoy.transport_sockets.tls',
            typed_config: {
              '@type': T.downstreamTls,
              common_tls_context: {
                tls_params: { tls_minimum_protocol_version: 'TLSv1_2' },
                tls_certificates: [{ certificate_chain: { filename: https.cert }, private_key: { filename: https.key } }],
                alpn_protocols: ['h2', 'http/1.1'],
              },
            },
          },
        },
      ],
    },
  ];
  if (plan.edge.health !== undefined) listeners.push(healthListener(plan, plan.edge.health, 'edge', topology));

  const clusters: Obj[] = [
    authzCluster(topology, plan, 'edge'),
    ...edgeServices.map((s) => {
      const ports = servicePorts(plan, s.name);
      return cluster(s.name, [{ host: ports.host, port: ports.inbound }], {
        protocol: 'downstream',
        connectTimeoutMs: 1000,
        transportSocket: upstreamTls(topology, plan, 'edge', s.name),
      });
    }),
  ];
  return {
    node: { id: 'edge', cluster: 'jwt-mesh-edge' },
    admin: adminBlock(plan.edge.admin),
    overload_manager: overloadManager(50000),
    static_resources: { listeners, clusters },
  };
}

function servicePorts(plan: TargetPlan, name: string): ServicePorts {
  const p = plan.services[name];
  if (!p) throw new Error(`render: the plan has no ports for service "${name}"`);
  return p;
}

// ---------------------------------------------------------------------------------------------
// Sidecars
// ---------------------------------------------------------------------------------------------

/** Exact paths on a sidecar's health listener that are proxied to the app (Kubernetes probes; the app listens on loopback only). */
export const APP_PROBE_PATHS = ['/healthz', '/readyz'];

/**
 * A service's sidecar Envoy bootstrap.
 * - `inbound` (bindAddress:inbound): TLS requiring a client certificate from the mesh CA whose URI
 *   SAN is one of `allowedCallers(service)`; routes to the app on 127.0.0.1:app (gRPC requests to
 *   127.0.0.1:grpc when the service serves gRPC). With `extAuthz: true` the identity headers are
 *   stripped and ext_authz runs here too; by default it does not, because the service verifies the
 *   JWT itself with the shared core (a second remote check per hop would only add latency).
 * - `outbound` (127.0.0.1:outbound, plain HTTP, loopback only): one virtual host per callee,
 *   matched by `Host` (`inventory`, `inventory:*`, `inventory.jwt-mesh.svc.cluster.local`, ...),
 *   plus a catch-all matching the callees' `meshPrefixes`; each goes to the callee's sidecar over
 *   mTLS with this workload's certificate, verifying the callee's SPIFFE ID. Anything else 404.
 * - `health` (k8s only): `GET /ready` for Envoy itself, {@link APP_PROBE_PATHS} proxied to the app.
 * Inbound (to the app) and outbound (to the callees) HTTP routes retry as {@link IDEMPOTENT_RETRY}
 * says: GET/HEAD up to 3 times on connect failures, refused streams and resets before the request
 * was sent (an app instance restarting or closing a keep-alive connection), never on a 5xx answer.
 */
export function buildSidecarConfig(topology: Topology, plan: TargetPlan, service: string): Obj {
  validateTopology(topology);
  const spec = topology.services.find((s) => s.name === service);
  if (!spec) throw new Error(`render: unknown service "${service}"`);
  const ports = servicePorts(plan, service);
  const callers = allowedCallers(topology, service);
  if (callers.length === 0) throw new Error(`render: nobody may call service "${service}" (no edge route, no caller)`);

  const inboundRoutes: Obj[] = [];
  if (spec.grpc) {
    if (ports.grpc === undefined) throw new Error(`render: service "${service}" serves gRPC but the plan has no grpc port`);
    inboundRoutes.push({ match: { prefix: '/', grpc: {} }, route: { cluster: 'local_grpc', timeout: '15s' } });
  }
  // The app is one process on loopback: its restart (or a closing keep-alive connection) is what
  // the GET/HEAD retries bridge; gRPC above is POST and is not retried beyond the caller's sidecar.
  inboundRoutes.push(...serviceRoutes({ match: { prefix: '/' }, cluster: 'local_app', timeout: '15s', otherHosts: false }));
  const inboundFilters = [
    ...(spec.meshCallersLimitedToPrefixes ? [meshCallersRbacFilter(topology, spec, callers)] : []),
    ...(spec.extAuthz ? [stripIdentityHeadersFilter(topology), extAuthzFilter(topology)] : []),
    routerFilter(),
  ];

  const inbound: Obj = {
    name: 'inbound',
    address: socketAddress(plan.bindAddress, ports.inbound),
    per_connection_buffer_limit_bytes: 32768,
    filter_chains: [
      {
        filters: [
          hcm({
            statPrefix: 'inbound',
            proxy: `${service}-inbound`,
            topology,
            httpFilters: inboundFilters,
            routeConfig: { name: 'inbound', virtual_hosts: [{ name: 'local', domains: ['*'], routes: inboundRoutes }] },
            // The app learns the caller's verified SPIFFE ID from x-forwarded-client-cert (URI=...).
            forwardClientCert: 'SANITIZE_SET',
            useRemoteAddress: false,
            accessLogExtra: { peer: '%DOWNSTREAM_PEER_URI_SAN%' },
            localReplyConfig: upstreamUnavailableReply(service),
          }),
        ],
        transport_socket: inboundTls(topology, plan, service, callers),
      },
    ],
  };

  const calleeRoutes = (callee: string, match: Obj) => serviceRoutes({ match, cluster: callee, timeout: '15s', otherHosts: true });
  const hostVirtualHosts = spec.calls.map((c) => ({
    name: c.service,
    domains: k8sServiceNames(c.service, topology.namespace).flatMap((n) => [n, `${n}:*`]),
    routes: calleeRoutes(c.service, { prefix: '/' }),
  }));
  const byPath = {
    name: 'by-path',
    domains: ['*'],
    routes: [
      ...spec.calls.flatMap((c) => {
        const callee = topology.services.find((s) => s.name === c.service) as ServiceSpec;
        return callee.meshPrefixes.flatMap((p) => calleeRoutes(c.service, { path_separated_prefix: p }));
      }),
      { match: { prefix: '/' }, ...jsonDirectResponse(404, 'no_route') },
    ],
  };
  const outbound: Obj = {
    name: 'outbound',
    // Loopback only: the outbound side is plain HTTP and must be reachable by the local app alone.
    address: socketAddress('127.0.0.1', ports.outbound),
    per_connection_buffer_limit_bytes: 32768,
    filter_chains: [
      {
        filters: [
          hcm({
            statPrefix: 'outbound',
            proxy: `${service}-outbound`,
            topology,
            httpFilters: [routerFilter()],
            routeConfig: { name: 'outbound', virtual_hosts: [...hostVirtualHosts, byPath] },
            forwardClientCert: 'SANITIZE',
            useRemoteAddress: true,
          }),
        ],
      },
    ],
  };

  const listeners: Obj[] = [inbound, outbound];
  if (ports.health !== undefined) listeners.push(healthListener(plan, ports.health, service, topology, APP_PROBE_PATHS));

  const clusters: Obj[] = [
    cluster('local_app', [{ host: '127.0.0.1', port: ports.app }], { protocol: 'http1', connectTimeoutMs: 1000 }),
  ];
  if (spec.grpc && ports.grpc !== undefined) {
    clusters.push(cluster('local_grpc', [{ host: '127.0.0.1', port: ports.grpc }], { protocol: 'http2', connectTimeoutMs: 1000 }));
  }
  for (const c of spec.calls) {
    const target = servicePorts(plan, c.service);
    const protocol = c.protocol ?? 'downstream';
    const alpn = protocol === 'http2' ? ['h2'] : protocol === 'http1' ? ['http/1.1'] : undefined;
    clusters.push(
      cluster(c.service, [{ host: target.host, port: target.inbound }], {
        protocol,
        connectTimeoutMs: 1000,
        transportSocket: upstreamTls(topology, plan, service, c.service, alpn),
      }),
    );
  }
  if (spec.extAuthz) clusters.push(authzCluster(topology, plan, service));

  return {
    node: { id: `sidecar-${service}`, cluster: `jwt-mesh-${service}` },
    admin: adminBlock(ports.admin),
    overload_manager: overloadManager(10000),
    static_resources: { listeners, clusters },
  };
}

// ---------------------------------------------------------------------------------------------
// Tracing (RenderOptions.tracing)
// ---------------------------------------------------------------------------------------------

/** Name of the cluster every proxy exports its spans through. */
export const TRACING_CLUSTER = 'opentelemetry_collector';

/**
 * The value of every span's `http.url` tag (a CustomTag `value`, access-log format specifiers):
 * scheme, authority and path, **without** the query string.
 */
export const HTTP_URL_WITHOUT_QUERY = '%REQ(X-FORWARDED-PROTO)%://%REQ(:AUTHORITY)%%PATH(NQ:PATH)%';

/** The traffic role of an HTTP listener, for its tracer settings and span names. */
type ListenerRole = 'edge' | 'inbound' | 'outbound';

function listenerRole(proxy: string, listenerName: string): ListenerRole | undefined {
  if (listenerName === 'health') return undefined; // probes are never traced
  if (proxy === 'edge') return 'edge';
  if (listenerName === 'inbound') return 'inbound';
  if (listenerName === 'outbound') return 'outbound';
  return undefined;
}

/**
 * The span name of a route (its `decorator.operation`; Envoy's default is a bare `ingress` /
 * `egress <host>`): `edge <path prefix>` (`edge /api/orders`, `edge /healthz`, `edge not_found`),
 * `inbound <service>` or `inbound <service> gRPC` (to the app), `outbound <callee>`,
 * `outbound no_route`.
 */
function operationOf(role: ListenerRole, route: Obj, service: string): string {
  const match = (route['match'] ?? {}) as Obj;
  const cluster = (route['route'] as Obj | undefined)?.['cluster'] as string | undefined;
  if (role === 'edge') {
    const path = (match['path'] ?? match['path_separated_prefix']) as string | undefined;
    return `edge ${path ?? 'not_found'}`;
  }
  if (role === 'inbound') return cluster === 'local_grpc' ? `inbound ${service} gRPC` : `inbound ${service}`;
  return cluster ? `outbound ${cluster}` : 'outbound no_route';
}

/**
 * A copy of a rendered proxy config with Envoy's OpenTelemetry tracer on every HTTP listener but
 * the health one: the HTTP connection manager's `tracing` (provider `envoy.tracers.opentelemetry`,
 * `service_name` = the proxy's `node.id`: `edge`, `sidecar-orders`, ...; `random_sampling`
 * {@link TracingPlan.edgeSamplePercent} on the edge and 0 on sidecars; `client_sampling` 0), the
 * listener's `traffic_direction` (OUTBOUND for a sidecar's outbound listener, so its spans are
 * CLIENT spans; INBOUND otherwise), one span name per route (`decorator`, not propagated
 * upstream), the `opentelemetry_collector` cluster (plain HTTP/1.1) and the exporter's flush
 * interval as a static runtime layer. The edge's UUID request-ID extension gets
 * `use_request_id_for_trace_sampling: true`: without it Envoy samples every request whatever
 * `random_sampling` says (`ConnectionManagerUtility::mutateTracingRequestHeader`). The ext_authz gRPC call is a child span of the request's
 * span and carries its `traceparent`, so the authz-service's Check span joins the same trace.
 * Nothing else in the config changes.
 */
function withTracing(source: Obj, tracing: TracingPlan): Obj {
  const config = structuredClone(source);
  const proxy = String((config['node'] as Obj)['id']);
  const collector = tracing.collector;
  const resources = config['static_resources'] as { listeners: Obj[]; clusters: Obj[] };
  for (const l of resources.listeners) {
    const role = listenerRole(proxy, String(l['name']));
    if (!role) continue;
    l['traffic_direction'] = role === 'outbound' ? 'OUTBOUND' : 'INBOUND';
    for (const chain of l['filter_chains'] as Obj[]) {
      for (const f of chain['filters'] as Obj[]) {
        if (f['name'] !== 'envoy.filters.network.http_connection_manager') continue;
        const hcmConfig = f['typed_config'] as Obj;
        // The edge: Envoy only applies `random_sampling` when the request-ID extension decides
        // sampling from the x-request-id (`use_request_id_for_trace_sampling`); with it off, the
        // connection manager marks every request sampled and the percentage has no effect. The
        // sidecars keep it off: their connection manager then always says "sampled" and the
        // tracer follows the incoming traceparent's flag (with it on, a sidecar at 0 % would drop
        // the spans of sampled traces).
        if (role === 'edge') {
          const rid = hcmConfig['request_id_extension'] as Obj | undefined;
          if (rid) hcmConfig['request_id_extension'] = { ...rid, typed_config: { ...(rid['typed_config'] as Obj), use_request_id_for_trace_sampling: true } };
        }
        hcmConfig['tracing'] = {
          provider: {
            name: 'envoy.tracers.opentelemetry',
            typed_config: {
              '@type': T.openTelemetry,
              http_service: {
                http_uri: {
                  uri: `http://${collector.host.includes(':') ? `[${collector.host}]` : collector.host}:${collector.port}${tracing.tracesPath}`,
                  cluster: TRACING_CLUSTER,
                  timeout: duration(tracing.exportTimeoutMs),
                },
              },
              service_name: proxy,
            },
          },
          // Requests that arrive with a traceparent follow its sampled flag whatever these say.
          random_sampling: { value: role === 'edge' ? tracing.edgeSamplePercent : 0 },
          client_sampling: { value: 0 },
          overall_sampling: { value: 100 },
          // Envoy's own http.url tag is the path with its query string; this custom tag (set after
          // the standard ones, same key) replaces it with the URL without the query string, so a
          // token a client put in a query parameter never reaches a span (as with the access logs).
          custom_tags: [{ tag: 'http.url', value: HTTP_URL_WITHOUT_QUERY }],
        };
        const service = proxy.replace(/^sidecar-/, '');
        for (const vh of ((hcmConfig['route_config'] as Obj | undefined)?.['virtual_hosts'] ?? []) as Obj[]) {
          for (const r of vh['routes'] as Obj[]) r['decorator'] = { operation: operationOf(role, r, service), propagate: false };
        }
      }
    }
  }
  resources.clusters.push(cluster(TRACING_CLUSTER, [collector], { protocol: 'http1', connectTimeoutMs: 1000 }));
  config['layered_runtime'] = {
    layers: [{ name: 'tracing', static_layer: { 'tracing.opentelemetry.flush_interval_ms': tracing.flushIntervalMs } }],
  };
  return config;
}

// ---------------------------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------------------------

/** File name of a service's sidecar config. */
export function sidecarFileName(service: string): string {
  return `sidecar-${service}.yaml`;
}

/**
 * Every config as a plain object, keyed by file name (`edge.yaml`, `sidecar-<service>.yaml`).
 * @throws Error when the topology or the options are invalid (message names the field).
 */
export function buildConfigs(topology: Topology, target: Target, options: RenderOptions = {}): Record<string, Obj> {
  const plan = resolvePlan(topology, target, options);
  const tracing = options.tracing ? resolveTracing(options.tracing) : undefined;
  const out: Record<string, Obj> = { 'edge.yaml': buildEdgeConfig(topology, plan) };
  for (const s of topology.services) out[sidecarFileName(s.name)] = buildSidecarConfig(topology, plan, s.name);
  if (tracing) for (const [file, config] of Object.entries(out)) out[file] = withTracing(config, tracing);
  return out;
}

/**
 * Renders every config as YAML text, keyed by file name (`edge.yaml`, `sidecar-<service>.yaml`).
 * This is the entry point for `make up` (local, with its own ports) and the Kubernetes
 * ConfigMaps (k8s).
 * @param topology usually `defaultTopology()`.
 * @param target `local` or `k8s`.
 * @param options ports, certificate directory, bind address (see {@link RenderOptions}).
 * @throws Error naming the bad field when the topology or options are invalid.
 */
export function renderConfigs(topology: Topology, target: Target, options: RenderOptions = {}): Record<string, string> {
  const objects = buildConfigs(topology, target, options);
  const out: Record<string, string> = {};
  for (const [file, obj] of Object.entries(objects)) {
    const doc = new YAML.Document(obj);
    doc.commentBefore = ` Generated by envoy/src/render.ts (target: ${target}). Do not edit: change the topology or the generator.`;
    out[file] = doc.toString({ lineWidth: 0 });
  }
  return out;
}

/**
 * Renders every config into `outDir` (created if needed) and returns the written paths.
 * @throws Error as {@link renderConfigs}, or the file-system error.
 */
export function renderToDir(topology: Topology, target: Target, outDir: string, options: RenderOptions = {}): string[] {
  const files = renderConfigs(topology, target, options);
  mkdirSync(outDir, { recursive: true });
  return Object.entries(files).map(([name, text]) => {
    const path = join(outDir, name);
    writeFileSync(path, text);
    return path;
  });
}

// ---------------------------------------------------------------------------------------------
// CLI
// ---------------------------------------------------------------------------------------------

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

const HELP = `Render the jwt-mesh Envoy configs (edge.yaml, sidecar-<service>.yaml).

Usage: tsx envoy/src/render.ts --target local|k8s --out <dir> [options]

Options:
  --target <local|k8s>     local: 127.0.0.1 and per-workload ports; k8s: Service DNS names, standard ports
  --out <dir>              directory to write the YAML files into (created if missing)
  --ports-json <json|file> ports/hosts merged over the target's defaults, inline JSON or a file path, e.g.
                           '{"edge":{"http":10000},"authz":["127.0.0.1:9001","127.0.0.1:9002"],
                             "services":{"orders":{"app":3001,"inbound":3101}}}'
  --cert-dir <dir>         certificate directory (default: <repo>/certs for local, /etc/jwt-mesh/certs for k8s)
  --bind <address>         address for listeners other workloads reach (default 127.0.0.1 local, 0.0.0.0 k8s)
  --tracing-collector <host:port>
                           turn on Envoy's OpenTelemetry tracer on every proxy, exporting OTLP/HTTP
                           (protobuf) to http://<host:port>/v1/traces (default: no tracer)
  --tracing-sample-percent <0..100>
                           percentage of requests without a traceparent the edge samples (default 100;
                           sidecars never start a trace, they follow the incoming traceparent)
  -h, --help               this text
`;

function main(argv: string[]): number {
  const { values } = parseArgs({
    args: argv,
    options: {
      target: { type: 'string' },
      out: { type: 'string' },
      'ports-json': { type: 'string' },
      'cert-dir': { type: 'string' },
      bind: { type: 'string' },
      'tracing-collector': { type: 'string' },
      'tracing-sample-percent': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const target = values.target as Target | undefined;
  if (!target || !TARGETS.includes(target) || !values.out) {
    process.stderr.write(`render: --target local|k8s and --out <dir> are required\n\n${HELP}`);
    return 2;
  }
  let ports: PortsOverride | undefined;
  const raw = values['ports-json'];
  if (raw !== undefined) {
    const text = raw.trim().startsWith('{') ? raw : readFileSync(raw, 'utf8');
    try {
      ports = JSON.parse(text) as PortsOverride;
    } catch (err) {
      process.stderr.write(`render: --ports-json is not valid JSON: ${(err as Error).message}\n`);
      return 2;
    }
  }
  const certDir = values['cert-dir'] ? resolve(values['cert-dir']) : target === 'local' ? join(repoRoot, 'certs') : undefined;
  if (target === 'local' && certDir && !existsSync(join(certDir, 'ca.crt'))) {
    process.stderr.write(`render: note: ${certDir}/ca.crt does not exist yet (run 'make certs')\n`);
  }
  if (values['tracing-sample-percent'] !== undefined && !values['tracing-collector']) {
    process.stderr.write('render: --tracing-sample-percent needs --tracing-collector\n');
    return 2;
  }
  const tracing: TracingOptions | undefined = values['tracing-collector']
    ? {
        collector: values['tracing-collector'],
        ...(values['tracing-sample-percent'] !== undefined ? { edgeSamplePercent: Number(values['tracing-sample-percent']) } : {}),
      }
    : undefined;
  const written = renderToDir(defaultTopology(), target, values.out, {
    ...(ports ? { ports } : {}),
    ...(certDir ? { certDir } : {}),
    ...(values.bind ? { bindAddress: values.bind } : {}),
    ...(tracing ? { tracing } : {}),
  });
  for (const p of written) process.stdout.write(`${p}\n`);
  return 0;
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  try {
    process.exitCode = main(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`render: ${(err as Error).message}\n`);
    process.exitCode = 1;
  }
}
