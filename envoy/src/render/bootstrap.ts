/**
 * The parts of a proxy's bootstrap besides its traffic: the admin interface (loopback only), the
 * overload manager's downstream-connection limit, and the `health` listener for Kubernetes probes.
 */
import type { TargetPlan, Topology } from '../topology.js';
import { hcm, jsonDirectResponse, readyFilter, routerFilter } from './http.js';
import { T, socketAddress, type Obj } from './v3.js';

/**
 * The bootstrap's `admin` block on 127.0.0.1:`port` (0 lets the OS pick; tests read it back).
 * https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/bootstrap/v3/bootstrap.proto#config-bootstrap-v3-admin
 */
export function adminBlock(port: number): Obj {
  // Admin only on loopback: it can drain listeners, dump config (including file paths) and quit.
  return { address: socketAddress('127.0.0.1', port) };
}

/**
 * The bootstrap's `overload_manager`: at most `maxConnections` active downstream connections over
 * all listeners (`global_downstream_max_connections`).
 * https://www.envoyproxy.io/docs/envoy/latest/configuration/operations/overload_manager/overload_manager
 */
export function overloadManager(maxConnections: number): Obj {
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
export function healthListener(plan: TargetPlan, port: number, proxy: string, topology: Topology, appPaths: string[] = []): Obj {
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
