/**
 * The jwt-mesh topology: which workloads exist, who may call whom, which path prefixes go where,
 * and the SPIFFE identities the mesh certificates carry. Names here are fixed (other parts of the
 * project, the authz policy, the Kubernetes manifests and the tests, refer to them); ports and
 * hosts are not: they live in a {@link TargetPlan} chosen per target (`local` or `k8s`) and can
 * be overridden by the caller of `renderConfigs`.
 *
 * SPIFFE ID format (X.509-SVID, https://github.com/spiffe/spiffe/blob/main/standards/X509-SVID.md):
 *   spiffe://<trust domain>/ns/<namespace>/sa/<workload>
 */
import { isIP } from 'node:net';
import { IDENTITY_HEADERS } from '@jwt-mesh/core';

/** The SPIFFE trust domain of the dev mesh CA. */
export const TRUST_DOMAIN = 'jwt-mesh.local';
/** The Kubernetes namespace, also the `ns` segment of every SPIFFE ID. */
export const NAMESPACE = 'jwt-mesh';

/**
 * Identity headers that the authz-service sets on an allowed request (OkHttpResponse). The edge
 * removes every one of them from the incoming request BEFORE ext_authz runs, on every route. The
 * list lives in the core, shared with the authz-service.
 */
export { IDENTITY_HEADERS, type IdentityHeader } from '@jwt-mesh/core';

/** Workloads that get a mesh certificate (SPIFFE ID). `client` is a test-only caller identity. */
export const MESH_WORKLOADS = ['edge', 'authz', 'auth', 'orders', 'inventory', 'profile', 'client'] as const;
export type MeshWorkload = (typeof MESH_WORKLOADS)[number];

/**
 * The SPIFFE ID of a workload: `spiffe://jwt-mesh.local/ns/jwt-mesh/sa/<workload>`.
 * @param workload the workload (Kubernetes service account) name, e.g. `orders`.
 */
export function spiffeId(workload: string, namespace: string = NAMESPACE, trustDomain: string = TRUST_DOMAIN): string {
  if (!/^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/.test(workload)) {
    throw new Error(`spiffeId: workload "${workload}" is not a DNS-1123 label`);
  }
  return `spiffe://${trustDomain}/ns/${namespace}/sa/${workload}`;
}

/** The fully qualified Kubernetes Service name of a workload: `<workload>.<namespace>.svc.cluster.local`. */
export function k8sServiceHost(workload: string, namespace: string = NAMESPACE): string {
  return `${workload}.${namespace}.svc.cluster.local`;
}

/**
 * Every DNS name a workload may be reached under inside Kubernetes, shortest first
 * (`orders`, `orders.jwt-mesh`, `orders.jwt-mesh.svc`, `orders.jwt-mesh.svc.cluster.local`).
 * The dev certificates carry all of them as DNS SANs; outbound sidecar routes match all of them
 * as `Host` values.
 */
export function k8sServiceNames(workload: string, namespace: string = NAMESPACE): string[] {
  return [workload, `${workload}.${namespace}`, `${workload}.${namespace}.svc`, k8sServiceHost(workload, namespace)];
}

/**
 * How a sidecar's outbound listener speaks to the target's sidecar:
 * - `http1`: always HTTP/1.1;
 * - `http2`: always HTTP/2 (needed for gRPC; HTTP/1.1 callers are translated);
 * - `downstream`: the protocol the local caller used (HTTP/1.1 in, HTTP/1.1 out; h2c in, h2 out).
 */
export type UpstreamProtocol = 'http1' | 'http2' | 'downstream';

/** One allowed call from a service to another through the sidecars. */
export interface CallSpec {
  /** The callee's service name (must be in {@link Topology.services}). */
  service: string;
  /** Protocol between the two sidecars. Default `downstream`. */
  protocol?: UpstreamProtocol;
}

/** A Fastify service behind its own sidecar Envoy. */
export interface ServiceSpec {
  /** Workload name: service account, SPIFFE `sa`, Kubernetes Service name. */
  name: string;
  /** Path prefixes the edge routes to this service (matched with `path_separated_prefix`, no trailing slash). */
  edgePrefixes: string[];
  /**
   * Path prefixes other sidecars' outbound listeners route to this service when the request's
   * `Host` does not name it (for example `/api/inventory`, or a gRPC `/<package>.<Service>`).
   */
  meshPrefixes: string[];
  /** Services this one calls through its outbound listener. */
  calls: CallSpec[];
  /**
   * The service also serves gRPC (h2c) on its own loopback port ({@link ServicePorts.grpc});
   * the inbound listener sends requests with `content-type: application/grpc` there.
   */
  grpc?: boolean;
  /**
   * Also run ext_authz (the authz cluster, over mTLS with this sidecar's certificate) on inbound
   * requests. Default false: every service verifies the JWT itself, locally, with the shared core,
   * so a second remote check per hop would add latency without adding a decision.
   */
  extAuthz?: boolean;
  /** Extra workloads allowed to call this sidecar's inbound listener, beyond the edge (if it routes here) and the callers. */
  extraAllowedCallers?: string[];
  /**
   * Restrict callers other than the edge to {@link ServiceSpec.meshPrefixes} (an Envoy RBAC filter
   * on the inbound listener, keyed on the caller's verified SPIFFE ID): the edge may reach every
   * path it routes here, other callers only the mesh prefixes. Default false (callers reach every
   * path). The auth-service uses it: verifiers may fetch its JWK Set and nothing else, so no
   * workload but the edge (and its ext_authz) reaches the login, token and revocation endpoints.
   */
  meshCallersLimitedToPrefixes?: boolean;
}

/** The edge proxy's behaviour (ports are in the plan). */
export interface EdgeSpec {
  /** `max_request_headers_kb` of the HTTP connection manager: larger request headers get 431 before any filter. */
  maxRequestHeadersKb: number;
  /** ext_authz gRPC call timeout, milliseconds. On expiry the client gets `authzStatusOnError`. */
  extAuthzTimeoutMs: number;
  /** HTTP status returned when the authz service fails or cannot be reached (never allow on error). */
  authzStatusOnError: 503;
  /** Exact path answered by the edge itself with 200 (still checked by ext_authz; the policy makes it public). */
  healthPath: string;
}

/** The ext_authz cluster (authz-service replicas). */
export interface AuthzSpec {
  /** `grpc.health.v1` service name Envoy's active health check asks for ('' = the whole server). */
  healthServiceName: string;
  /** Request headers forwarded in the CheckRequest (lower-case). Path and method travel in its attributes anyway. */
  allowedHeaders: string[];
}

/** The whole mesh. */
export interface Topology {
  trustDomain: string;
  namespace: string;
  identityHeaders: readonly string[];
  edge: EdgeSpec;
  authz: AuthzSpec;
  /**
   * Every workload behind its own sidecar, the auth-service included: the edge reaches each one
   * over mTLS (its sidecar's inbound listener), and each app listens on loopback only.
   */
  services: ServiceSpec[];
}

/**
 * The default jwt-mesh topology: orders -> inventory -> profile, orders exposed at the edge, and
 * the auth-service (`/auth`, `/.well-known`) behind its sidecar like every other workload.
 */
export function defaultTopology(): Topology {
  return {
    trustDomain: TRUST_DOMAIN,
    namespace: NAMESPACE,
    identityHeaders: IDENTITY_HEADERS,
    edge: {
      maxRequestHeadersKb: 16,
      extAuthzTimeoutMs: 250,
      authzStatusOnError: 503,
      healthPath: '/healthz',
    },
    authz: { healthServiceName: '', allowedHeaders: ['authorization'] },
    services: [
      {
        name: 'orders',
        edgePrefixes: ['/api/orders'],
        meshPrefixes: ['/api/orders'],
        calls: [{ service: 'inventory', protocol: 'downstream' }],
      },
      {
        name: 'inventory',
        edgePrefixes: [],
        meshPrefixes: ['/api/inventory'],
        calls: [{ service: 'profile', protocol: 'http2' }],
      },
      {
        name: 'profile',
        edgePrefixes: [],
        // HTTP API, and the gRPC service of proto/profile/v1/profile.proto (package jwtmesh.profile.v1).
        meshPrefixes: ['/api/profile', '/jwtmesh.profile.v1.ProfileService'],
        calls: [],
        grpc: true,
      },
      {
        // The issuer. Last, so the services keep their local port numbers (orders 1, inventory 2, profile 3).
        name: 'auth',
        edgePrefixes: ['/auth', '/.well-known'],
        // Verifiers fetch the JWK Set from here over mTLS, pinning the `auth` SPIFFE ID; the same
        // document stays public for external clients through the edge (RFC 7517).
        meshPrefixes: [JWKS_PATH],
        calls: [],
        extraAllowedCallers: [...JWKS_FETCHERS],
        meshCallersLimitedToPrefixes: true,
      },
    ],
  };
}

/** The JWK Set path of the issuer (RFC 8414 `jwks_uri`). */
export const JWKS_PATH = '/.well-known/jwks.json';

/**
 * The verifiers: the workloads that fetch the issuer's JWK Set (authz-service and the services),
 * and so the only callers besides the edge that the auth sidecar admits (for {@link JWKS_PATH} only).
 */
export const JWKS_FETCHERS = ['authz', 'orders', 'inventory', 'profile'] as const;

/** A host and port. `host` is an IP literal (STATIC cluster) or a DNS name (STRICT_DNS cluster). */
export interface HostPort {
  host: string;
  port: number;
}

/** Ports of one service pod / local process group. */
export interface ServicePorts {
  /** The service's own HTTP port on loopback (the sidecar forwards inbound requests here). */
  app: number;
  /** The service's gRPC (h2c) port on loopback, when {@link ServiceSpec.grpc}. */
  grpc?: number;
  /** The sidecar's mTLS inbound listener. */
  inbound: number;
  /** The sidecar's plain-HTTP outbound listener, bound to 127.0.0.1 only. */
  outbound: number;
  /** The sidecar's admin interface, bound to 127.0.0.1 only. */
  admin: number;
  /** Optional plain-HTTP listener answering only `GET /ready` (for Kubernetes probes). */
  health?: number;
  /** How other workloads reach this sidecar's inbound listener (host of the address; port is `inbound`). */
  host: string;
}

/** Everything that differs between targets: addresses, ports and certificate files. */
export interface TargetPlan {
  target: 'local' | 'k8s';
  /** Address that listeners reachable from other workloads bind to (`127.0.0.1` locally, `0.0.0.0` in a pod). */
  bindAddress: string;
  /**
   * Directory of the certificates. `local`: flat files `<dir>/ca.crt`, `<dir>/<workload>.crt|.key`
   * (as `make certs` writes them). `k8s`: one Secret per workload mounted at
   * `<dir>/<workload>/{tls.crt,tls.key,ca.crt}` (the layout of kubernetes.io/tls Secrets and of
   * cert-manager), and the edge's public HTTPS pair at `<dir>/edge-https/{tls.crt,tls.key}`.
   */
  certDir: string;
  edge: { http: number; https: number; admin: number; health?: number };
  /** The authz-service replicas. In Kubernetes one headless-Service name resolves to every ready pod. */
  authz: HostPort[];
  services: Record<string, ServicePorts>;
}

/**
 * The default plan for a target.
 * - `local`: everything on 127.0.0.1, certificates under `certs/` (relative to where Envoy runs).
 *   Edge 10000 (HTTP) / 10443 (HTTPS) / 9901 (admin); authz replicas 9001, 9002;
 *   service i (orders=1, inventory=2, profile=3, auth=4): app 3000+i, gRPC 3050+i, inbound 3100+i,
 *   outbound 3200+i, admin 3300+i (`make up` moves the auth-service's app to 4000).
 * - `k8s`: Service DNS names, the same ports in every pod (app 8080, gRPC 9090, inbound 8443,
 *   outbound 15001, admin 9901, health 15021; edge 8080/8443; authz 9000), certificates
 *   under `/etc/jwt-mesh/certs`. `authz.jwt-mesh.svc.cluster.local` must be a headless Service so
 *   Envoy's STRICT_DNS cluster sees (and health-checks, and ejects) every replica.
 */
export function defaultPlan(target: 'local' | 'k8s', topology: Topology = defaultTopology()): TargetPlan {
  if (target === 'local') {
    const services: Record<string, ServicePorts> = {};
    topology.services.forEach((s, i) => {
      const n = i + 1;
      services[s.name] = {
        app: 3000 + n,
        ...(s.grpc ? { grpc: 3050 + n } : {}),
        inbound: 3100 + n,
        outbound: 3200 + n,
        admin: 3300 + n,
        host: '127.0.0.1',
      };
    });
    return {
      target,
      bindAddress: '127.0.0.1',
      certDir: 'certs',
      edge: { http: 10000, https: 10443, admin: 9901 },
      authz: [
        { host: '127.0.0.1', port: 9001 },
        { host: '127.0.0.1', port: 9002 },
      ],
      services,
    };
  }
  const services: Record<string, ServicePorts> = {};
  for (const s of topology.services) {
    services[s.name] = {
      app: 8080,
      ...(s.grpc ? { grpc: 9090 } : {}),
      inbound: 8443,
      outbound: 15001,
      admin: 9901,
      health: 15021,
      host: k8sServiceHost(s.name, topology.namespace),
    };
  }
  return {
    target,
    bindAddress: '0.0.0.0',
    certDir: '/etc/jwt-mesh/certs',
    edge: { http: 8080, https: 8443, admin: 9901, health: 15021 },
    authz: [{ host: k8sServiceHost('authz', topology.namespace), port: 9000 }],
    services,
  };
}

/** True when `host` is an IP literal (the cluster can be STATIC, no DNS). */
export function isIpLiteral(host: string): boolean {
  return isIP(host) !== 0;
}

/**
 * The SPIFFE workloads allowed to open a connection to a service's inbound listener: the edge when
 * it routes to the service, every service whose `calls` name it, and `extraAllowedCallers`.
 * Sorted, without duplicates.
 */
export function allowedCallers(topology: Topology, service: string): string[] {
  const spec = topology.services.find((s) => s.name === service);
  if (!spec) throw new Error(`allowedCallers: unknown service "${service}"`);
  const callers = new Set<string>(spec.extraAllowedCallers ?? []);
  if (spec.edgePrefixes.length > 0) callers.add('edge');
  for (const s of topology.services) {
    if (s.calls.some((c) => c.service === service)) callers.add(s.name);
  }
  return [...callers].sort();
}

/**
 * Checks a topology for dangling references and duplicates.
 * @throws Error naming the first problem (unknown callee, duplicate service, self-call, bad prefix).
 */
export function validateTopology(topology: Topology): void {
  const names = new Set<string>();
  for (const s of topology.services) {
    spiffeId(s.name, topology.namespace, topology.trustDomain);
    if (names.has(s.name)) throw new Error(`topology: duplicate service "${s.name}"`);
    if (['edge', 'authz', 'client'].includes(s.name)) throw new Error(`topology: service name "${s.name}" is reserved`);
    names.add(s.name);
  }
  for (const s of topology.services) {
    for (const c of s.calls) {
      if (!names.has(c.service)) throw new Error(`topology: service "${s.name}" calls unknown service "${c.service}"`);
      if (c.service === s.name) throw new Error(`topology: service "${s.name}" calls itself`);
    }
    for (const p of [...s.edgePrefixes, ...s.meshPrefixes]) checkPrefix(p, `service "${s.name}"`);
    for (const w of s.extraAllowedCallers ?? []) spiffeId(w, topology.namespace, topology.trustDomain);
    if (s.meshCallersLimitedToPrefixes && s.meshPrefixes.length === 0) {
      throw new Error(`topology: service "${s.name}" limits mesh callers to its meshPrefixes but has none`);
    }
  }
  const edgeRouted = topology.services.flatMap((s) => s.edgePrefixes);
  if (new Set(edgeRouted).size !== edgeRouted.length) throw new Error('topology: two services claim the same edge prefix');
  if (!topology.edge.healthPath.startsWith('/')) throw new Error('topology: edge.healthPath must start with "/"');
  if (!(topology.edge.extAuthzTimeoutMs > 0)) throw new Error('topology: edge.extAuthzTimeoutMs must be > 0');
  if (!(topology.edge.maxRequestHeadersKb >= 1 && topology.edge.maxRequestHeadersKb <= 8192)) {
    throw new Error('topology: edge.maxRequestHeadersKb must be within 1..8192');
  }
  for (const h of topology.identityHeaders) {
    if (h !== h.toLowerCase()) throw new Error(`topology: identity header "${h}" must be lower-case`);
  }
}

function checkPrefix(p: string, where: string): void {
  // path_separated_prefix: must start with "/", must not end with "/", no query or fragment.
  if (!/^\/[^?#]*[^/?#]$/.test(p)) {
    throw new Error(`topology: ${where}: prefix "${p}" must start with "/", not end with "/", and have no "?" or "#"`);
  }
}
