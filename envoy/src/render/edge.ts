/**
 * The edge proxy's bootstrap ({@link buildEdgeConfig}): the public HTTP and HTTPS listeners, their
 * filter chain and routes, the ext_authz cluster and one mTLS cluster per edge-facing service.
 */
import { validateTopology, type TargetPlan, type Topology } from '../topology.js';
import { adminBlock, healthListener, overloadManager } from './bootstrap.js';
import { authzCluster, cluster } from './clusters.js';
import {
  extAuthzFilter,
  hcm,
  jsonDirectResponse,
  routerFilter,
  serviceRoutes,
  stripIdentityHeadersFilter,
  upstreamUnavailableReply,
} from './http.js';
import { servicePorts } from './plan.js';
import { certFilesFor, upstreamTls } from './tls.js';
import { T, socketAddress, type Obj } from './v3.js';

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
