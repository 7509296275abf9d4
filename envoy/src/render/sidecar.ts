/**
 * A service's sidecar bootstrap ({@link buildSidecarConfig}): the mTLS `inbound` listener in front
 * of the app, the loopback `outbound` listener towards its callees, the probe listener, and their
 * clusters.
 */
import {
  allowedCallers,
  k8sServiceNames,
  validateTopology,
  type ServicePorts,
  type ServiceSpec,
  type TargetPlan,
  type Topology,
} from '../topology.js';
import { adminBlock, healthListener, overloadManager } from './bootstrap.js';
import { authzCluster, cluster } from './clusters.js';
import {
  extAuthzFilter,
  hcm,
  jsonDirectResponse,
  meshCallersRbacFilter,
  routerFilter,
  serviceRoutes,
  stripIdentityHeadersFilter,
  upstreamUnavailableReply,
} from './http.js';
import { servicePorts } from './plan.js';
import { inboundTls, upstreamTls } from './tls.js';
import { socketAddress, type Obj } from './v3.js';

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

  const listeners: Obj[] = [inboundListener(topology, plan, spec, ports, callers), outboundListener(topology, spec, ports)];
  if (ports.health !== undefined) listeners.push(healthListener(plan, ports.health, service, topology, APP_PROBE_PATHS));
  const clusters = sidecarClusters(topology, plan, spec, ports);

  return {
    node: { id: `sidecar-${service}`, cluster: `jwt-mesh-${service}` },
    admin: adminBlock(ports.admin),
    overload_manager: overloadManager(10000),
    static_resources: { listeners, clusters },
  };
}

/**
 * The sidecar's `inbound` listener: mTLS requiring one of `callers`' certificates, the RBAC and
 * ext_authz filters the spec asks for, routes to the app (and its gRPC port).
 * @throws Error when the service serves gRPC and `ports` has no gRPC port.
 */
function inboundListener(topology: Topology, plan: TargetPlan, spec: ServiceSpec, ports: ServicePorts, callers: string[]): Obj {
  const service = spec.name;
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

  return {
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
}

/**
 * The sidecar's `outbound` listener (loopback, plain HTTP): one virtual host per callee matched
 * by `Host`, then `by-path` matching the callees' `meshPrefixes`, anything else 404 `no_route`.
 */
function outboundListener(topology: Topology, spec: ServiceSpec, ports: ServicePorts): Obj {
  const service = spec.name;
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
  return {
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
}

/**
 * The sidecar's clusters: `local_app` (HTTP/1.1), `local_grpc` (h2) when the service serves gRPC,
 * one mTLS cluster per callee (this workload's certificate, the callee's SPIFFE ID verified), and
 * `authz` when the spec turns ext_authz on.
 * @throws Error when the plan has no ports for a callee.
 */
function sidecarClusters(topology: Topology, plan: TargetPlan, spec: ServiceSpec, ports: ServicePorts): Obj[] {
  const service = spec.name;
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
  return clusters;
}
