/**
 * Upstream clusters: {@link cluster} (STATIC or STRICT_DNS, the protocol towards the upstream,
 * circuit breakers, an optional TLS transport socket) and {@link authzCluster}, the ext_authz
 * cluster with health checks and outlier detection.
 * https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/cluster/v3/cluster.proto
 */
import { isIpLiteral, type HostPort, type TargetPlan, type Topology, type UpstreamProtocol } from '../topology.js';
import { upstreamTls } from './tls.js';
import { T, duration, socketAddress, type Obj } from './v3.js';

function protocolOptions(protocol: UpstreamProtocol): Obj {
  const h2 = { max_concurrent_streams: 1000, connection_keepalive: { interval: '30s', timeout: '5s' } };
  let body: Obj;
  if (protocol === 'http2') body = { explicit_http_config: { http2_protocol_options: h2 } };
  else if (protocol === 'http1') body = { explicit_http_config: { http_protocol_options: {} } };
  else body = { use_downstream_protocol_config: { http_protocol_options: {}, http2_protocol_options: h2 } };
  return { 'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': { '@type': T.httpOptions, ...body } };
}

/** A cluster over `endpoints`: STATIC when every host is an IP literal, else STRICT_DNS (one host per A record). */
export function cluster(
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
export function authzCluster(topology: Topology, plan: TargetPlan, own: string): Obj {
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
