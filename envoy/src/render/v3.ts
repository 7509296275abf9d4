/**
 * The small pieces every part of the renderer shares: the plain-object type of an Envoy v3 config
 * node (JSON/YAML form), the `@type` URLs of the typed configs it uses, and the protobuf JSON forms
 * of a Duration and a SocketAddress. Field names follow the Envoy v3 API reference
 * (https://www.envoyproxy.io/docs/envoy/latest/api-v3/api).
 */
/** One node of an Envoy v3 config in its JSON/YAML form (a message, a typed config, ...). */
export type Obj = Record<string, unknown>;

/** The `@type` URL (`google.protobuf.Any`) of each typed config the renderer writes, by short name. */
export const T = {
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
export function duration(ms: number): string {
  return `${(ms / 1000).toFixed(3)}s`;
}

/**
 * A `config.core.v3.Address` holding a SocketAddress (TCP, `host` an IP literal or a DNS name,
 * `port` 0..65535; 0 lets the OS pick a port for a listener).
 * https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/core/v3/address.proto
 */
export function socketAddress(host: string, port: number): Obj {
  return { socket_address: { address: host, port_value: port } };
}
