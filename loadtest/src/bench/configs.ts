/**
 * The Envoy configs of benchmark modes 1-3, derived from the real edge config that
 * envoy/src/render.ts generates (`buildConfigs(topology, 'local', ...)['edge.yaml']`), so the
 * listeners, HTTP connection manager settings (path normalisation, header limits, request ids,
 * access log), the identity-header strip, the ext_authz filter and the authz cluster are exactly
 * what `make up` runs. Only three things change, per mode:
 *
 * 1. `none`: the ext_authz filter and the authz cluster are removed (the floor).
 * 2. `jwt_authn`: ext_authz is replaced by Envoy's native `envoy.filters.http.jwt_authn` with the
 *    auth service's JWK Set (`remote_jwks`, fetched through the existing `auth` cluster, the auth sidecar, prefetched
 *    at start, verified-JWT cache on). It checks signature, `iss`, `aud`, `exp`/`nbf`; it does not
 *    check `typ`, scopes or revocation (it cannot revoke).
 * 3. `ext_authz`: the edge filter chain unchanged (header strip, ext_authz to both authz replicas
 *    over mTLS, router).
 *
 * In all three, `/api/orders` is routed to one plain-HTTP upstream (the same process for every
 * mode) instead of the orders sidecar, so the modes differ only by the authentication filter.
 * Mode 4 is the stack's own edge and chain, unchanged.
 *
 * With {@link BenchConfigInput.tracing} (`make bench --tracing`), the generator renders the edge
 * with its OpenTelemetry tracer exactly as the stack's (`RenderOptions.tracing`), before the
 * transform: mode 3 is then traced like the stack's edge.
 *
 * Why derived here and not an option of render.ts: `jwt_authn` and "no authentication" are not
 * product modes (the product always fails closed through ext_authz), so they live with the
 * benchmark as a small, tested transform of the generator's output rather than as switches in
 * the product's config generator.
 */
import { buildConfigs, defaultTopology, k8sServiceHost, type PortsOverride, type Topology, type TracingOptions } from '@jwt-mesh/envoy';

/** The benchmark modes served by the dedicated Envoys. Mode 4 (`full`) is the stack's edge. */
export const ENVOY_MODES = ['none', 'jwt_authn', 'ext_authz'] as const;
export type EnvoyMode = (typeof ENVOY_MODES)[number];

type Obj = Record<string, unknown>;

/** What the bench configs need to know about the running stack. */
export interface BenchConfigInput {
  /** The stack's ports (authz replicas, services including the auth sidecar): as passed to `renderConfigs`. */
  ports: PortsOverride;
  /** The dev PKI folder of the stack (mesh CA, `edge` and `edge-https` certificates). */
  certDir: string;
  /** The one upstream of modes 1-3 (plain HTTP/1.1 on 127.0.0.1). */
  upstreamPort: number;
  /** `iss` of the tokens (JWT_ISSUER of the stack, e.g. `http://localhost:4000`). */
  issuer: string;
  /** `aud` of the tokens. */
  audience: string;
  /** Path of the JWK Set on the auth service. Default `/.well-known/jwks.json`. */
  jwksPath?: string;
  topology?: Topology;
  /**
   * Envoy's OpenTelemetry tracer on the edge, as `RenderOptions.tracing` of envoy/src/render.ts
   * renders it for the stack (collector, `edgeSamplePercent` 0..100, flush interval). Absent: no
   * tracer, the config of a stack without tracing.
   */
  tracing?: TracingOptions;
}

const JWT_AUTHN_TYPE = 'type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication';

/**
 * The `jwt_authn` filter for our issuer: RS256/ES256/EdDSA keys from the JWK Set at the `auth`
 * cluster, `Authorization: Bearer` only, 30 s clock skew (as JWT_CLOCK_TOLERANCE_SEC), required on
 * every `/api` path. Reference: Envoy v3 API `extensions.filters.http.jwt_authn.v3.JwtAuthentication`.
 */
export function jwtAuthnFilter(input: Pick<BenchConfigInput, 'issuer' | 'audience' | 'jwksPath'>): Obj {
  return {
    name: 'envoy.filters.http.jwt_authn',
    typed_config: {
      '@type': JWT_AUTHN_TYPE,
      providers: {
        jwt_mesh: {
          issuer: input.issuer,
          audiences: [input.audience],
          remote_jwks: {
            // The `auth` cluster is the auth sidecar (mTLS, the edge certificate); the URI names the host only.
            http_uri: { uri: `https://${k8sServiceHost('auth')}${input.jwksPath ?? '/.well-known/jwks.json'}`, cluster: 'auth', timeout: '1s' },
            cache_duration: '300s',
            async_fetch: { fast_listener: false },
          },
          from_headers: [{ name: 'Authorization', value_prefix: 'Bearer ' }],
          clock_skew_seconds: 30,
          forward: true,
          jwt_cache_config: { jwt_cache_size: 10000 },
        },
      },
      rules: [{ match: { prefix: '/api' }, requires: { provider_name: 'jwt_mesh' } }],
    },
  };
}

function hcmOf(listener: Obj): Obj {
  const chains = listener.filter_chains as Obj[];
  const filters = (chains[0] as Obj).filters as Obj[];
  return (filters[0] as Obj).typed_config as Obj;
}

/**
 * The bootstrap of one benchmark mode (a plain object; write it as JSON or YAML).
 * Listeners, admin and ports are the edge's; pass `ports.edge` with port 0 for free ports and read
 * the bound ones from the admin API (testkit `listenerAddress('edge_http')`).
 * @throws Error when the generated edge config does not have the shape this transform expects
 *   (the message says what is missing), or as `buildConfigs` for bad ports or tracing options.
 */
export function benchEdgeConfig(mode: EnvoyMode, input: BenchConfigInput): Obj {
  const topology = input.topology ?? defaultTopology();
  const edge = structuredClone(
    buildConfigs(topology, 'local', { ports: input.ports, certDir: input.certDir, bindAddress: '127.0.0.1', ...(input.tracing ? { tracing: input.tracing } : {}) })['edge.yaml'],
  ) as Obj;
  const resources = edge.static_resources as { listeners: Obj[]; clusters: Obj[] };
  const orders = topology.services.find((s) => s.edgePrefixes.length > 0);
  if (!orders) throw new Error('bench config: the topology exposes no service at the edge');

  // The generator shares one filter list and one route table between edge_http and edge_https
  // (structuredClone keeps that sharing): change each shared object once.
  const seen = new Set<unknown>();
  for (const listener of resources.listeners) {
    const hcm = hcmOf(listener);
    const filters = hcm.http_filters as Obj[];
    if (seen.has(filters)) continue;
    seen.add(filters);
    const i = filters.findIndex((f) => f.name === 'envoy.filters.http.ext_authz');
    if (i < 0) throw new Error(`bench config: listener ${String(listener.name)} has no ext_authz filter to replace`);
    if (mode === 'none') filters.splice(i, 1);
    else if (mode === 'jwt_authn') filters.splice(i, 1, jwtAuthnFilter(input));
    const vhosts = (hcm.route_config as Obj).virtual_hosts as Obj[];
    for (const vh of vhosts) {
      for (const route of vh.routes as Obj[]) {
        const action = route.route as Obj | undefined;
        if (action && action.cluster === orders.name) {
          action.cluster = 'bench_upstream';
          delete action.retry_policy;
        }
      }
    }
  }
  // Only the cluster whose routes now go to bench_upstream; the auth sidecar's stays (login, JWKS).
  resources.clusters = resources.clusters.filter((c) => c.name !== orders.name && (mode === 'ext_authz' || c.name !== 'authz'));
  resources.clusters.push({
    name: 'bench_upstream',
    type: 'STATIC',
    connect_timeout: '1s',
    lb_policy: 'ROUND_ROBIN',
    load_assignment: {
      cluster_name: 'bench_upstream',
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: input.upstreamPort } } } }] }],
    },
    typed_extension_protocol_options: {
      'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
        '@type': 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
        explicit_http_config: { http_protocol_options: {} },
      },
    },
    circuit_breakers: { thresholds: [{ priority: 'DEFAULT', max_connections: 1024, max_pending_requests: 1024, max_requests: 4096 }] },
  });
  edge.node = { id: `bench-${mode}`, cluster: 'jwt-mesh-bench' };
  return edge;
}

/** The HTTP filter names of a config's first listener, in order (for reports and tests). */
export function filterNames(config: Obj): string[] {
  const listeners = (config.static_resources as { listeners: Obj[] }).listeners;
  return ((hcmOf(listeners[0] as Obj).http_filters as Obj[]) ?? []).map((f) => String(f.name));
}

/** What {@link chainNoauthConfigs} needs: the ports of the second chain (and the stack's PKI). */
export interface ChainNoauthInput {
  /** Ports of the bench's own orders, inventory, profile and their sidecars (app, grpc, inbound, outbound, admin), and the edge (0 = free). */
  ports: PortsOverride;
  certDir: string;
  topology?: Topology;
}

/**
 * The Envoy configs of mode `chain_noauth`: the generated edge and sidecars of the same topology
 * (`buildConfigs(topology, 'local', ...)`), for a second copy of the chain whose services verify
 * nothing (./noauth-service.ts). The sidecars are unchanged (mutual TLS between them stays: that
 * is transport, not the token check); the edge only loses its ext_authz filter and the authz
 * cluster, as in mode `none`. Everything else (routes to the orders sidecar, retries, header
 * strip, access log) is the stack's.
 * @returns the configs keyed by file name (`edge.yaml`, `sidecar-<service>.yaml`)
 * @throws Error when the edge has no ext_authz filter to remove, or as `buildConfigs`
 */
export function chainNoauthConfigs(input: ChainNoauthInput): Record<string, Obj> {
  const topology = input.topology ?? defaultTopology();
  const all = structuredClone(buildConfigs(topology, 'local', { ports: input.ports, certDir: input.certDir, bindAddress: '127.0.0.1' })) as Record<string, Obj>;
  const edge = all['edge.yaml'] as Obj;
  const resources = edge.static_resources as { listeners: Obj[]; clusters: Obj[] };
  const seen = new Set<unknown>();
  for (const listener of resources.listeners) {
    const filters = hcmOf(listener).http_filters as Obj[];
    if (seen.has(filters)) continue;
    seen.add(filters);
    const i = filters.findIndex((f) => f.name === 'envoy.filters.http.ext_authz');
    if (i < 0) throw new Error(`bench config: listener ${String(listener.name)} has no ext_authz filter to remove`);
    filters.splice(i, 1);
  }
  resources.clusters = resources.clusters.filter((c) => c.name !== 'authz');
  edge.node = { id: 'bench-chain_noauth', cluster: 'jwt-mesh-bench' };
  return all;
}
