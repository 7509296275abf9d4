/**
 * Envoy's OpenTelemetry tracer added to a rendered config ({@link withTracing}), when
 * `RenderOptions.tracing` asks for it: the connection managers' `tracing`, span names per route,
 * the collector cluster and the exporter's flush interval.
 * https://www.envoyproxy.io/docs/envoy/v1.40.0/api-v3/config/trace/v3/opentelemetry.proto
 */
import { cluster } from './clusters.js';
import type { TracingPlan } from './plan.js';
import { T, duration, type Obj } from './v3.js';

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
export function withTracing(source: Obj, tracing: TracingPlan): Obj {
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
