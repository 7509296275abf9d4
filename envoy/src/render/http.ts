/**
 * The HTTP layer of every listener: the HTTP connection manager with its access log, the HTTP
 * filters (header_mutation that strips client-sent identity headers, ext_authz failing closed,
 * RBAC on caller SPIFFE IDs, health_check, router), the routes to a service with their retry
 * policies ({@link IDEMPOTENT_RETRY}), and the JSON local replies and direct responses.
 * https://www.envoyproxy.io/docs/envoy/latest/configuration/http/http_conn_man/http_conn_man
 */
import { spiffeId, type ServiceSpec, type Topology } from '../topology.js';
import { T, duration, type Obj } from './v3.js';

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
export function stripIdentityHeadersFilter(topology: Topology): Obj {
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
export function extAuthzFilter(topology: Topology): Obj {
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
export function serviceRoutes(opts: { name?: string; match: Obj; cluster: string; timeout: string; otherHosts: boolean }): Obj[] {
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
export function meshCallersRbacFilter(topology: Topology, spec: ServiceSpec, callers: string[]): Obj {
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

/**
 * The router filter, last in every chain; `suppress_envoy_headers` keeps `x-envoy-*` headers off
 * the requests and answers. https://www.envoyproxy.io/docs/envoy/latest/configuration/http/http_filters/router_filter
 */
export function routerFilter(): Obj {
  return { name: 'envoy.filters.http.router', typed_config: { '@type': T.router, suppress_envoy_headers: true } };
}

/** Answers `GET /ready` with 200 (503 while Envoy drains or was failed via admin). For Kubernetes probes. */
export function readyFilter(): Obj {
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
export function hcm(opts: {
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
export function upstreamUnavailableReply(upstream = '%UPSTREAM_CLUSTER%'): Obj {
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

/**
 * A route action answering `status` itself with the body `{"error":"<error>"}` and
 * `content-type: application/json` (a DirectResponseAction plus the response header).
 */
export function jsonDirectResponse(status: number, error: string): Obj {
  return {
    direct_response: { status, body: { inline_string: `${JSON.stringify({ error })}\n` } },
    response_headers_to_add: [
      { header: { key: 'content-type', value: 'application/json' }, append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' },
    ],
  };
}
