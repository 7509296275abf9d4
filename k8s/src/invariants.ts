/**
 * The invariants every rendered overlay must hold, checked in code on the objects kustomize
 * renders. Each rule is a pure function of the objects and a {@link CheckContext}; each returns
 * {@link Violation}s (empty = the rule holds). k8s/test/invariants.test.ts feeds every rule a
 * deliberately broken manifest and sees it fail.
 *
 * Rules (their ids appear in every message):
 * - `probes`: every long-running container (main containers and native sidecars) has a
 *   readinessProbe and a livenessProbe. Job/CronJob pods run to completion and are exempt.
 * - `resources`: every container has cpu and memory requests and limits, request <= limit.
 * - `security-context`: every container runs with runAsNonRoot, allowPrivilegeEscalation false,
 *   readOnlyRootFilesystem, capabilities drop ALL (none added), not privileged, and a
 *   RuntimeDefault or Localhost seccomp profile (container or pod level).
 * - `sidecar`: every mesh service has pods, each with the pinned Envoy as a sidecar whose config is
 *   that service's rendered sidecar config (node.id `sidecar-<service>`); the app containers bind
 *   127.0.0.1 and no Service targets their ports: only the sidecar is reachable.
 * - `envoy-mounts`: every file an Envoy config reads (certificates, keys, CAs) lies under a volume
 *   mounted into that Envoy container.
 * - `ports`: every Service targetPort, every probe port and every Envoy cluster endpoint exists on
 *   the container it names: Service ports resolve on every selected pod (headless Services: the
 *   container port equals the Service port, nothing translates it); probe ports on the probed
 *   container; loopback clusters on another container of the same pod; DNS clusters on a Service
 *   port of this namespace; non-loopback Envoy listeners are declared container ports and vice versa;
 *   an app's UPSTREAM_URL is a loopback listener of its own sidecar (the outbound one).
 * - `images`: every image is built here (k8s/images.tsv: a Dockerfile that BuildKit's parser
 *   accepts, multi-stage, ending as a numeric non-root USER, for an existing workspace) or is a
 *   pinned upstream image; the Envoy image is the version the local stack pins; no `latest`.
 * - `references`: every Secret and ConfigMap a pod references exists, is created by
 *   k8s/create-secrets.sh, or is issued by a cert-manager Certificate.
 * - `network-policy`: a default-deny policy exists; every connection the mesh needs (each Envoy
 *   cluster, each JWKS_URL, the declared app connections) is allowed by egress and ingress rules;
 *   the datastores (PostgreSQL: auth and the migration Job; Redis: the issuer and the verifiers)
 *   and the auth sidecar (the edge and the verifiers) are reachable from exactly their declared clients.
 * - `redis-credentials`: least privilege on Redis. Only the issuer's pods reference the issuer's
 *   Redis credentials (its Secret, by env, envFrom or volume); every other Redis client (the
 *   verifiers: authz-service and the services) references the verifiers' Secret instead, and a
 *   Redis client's container sets no password in `REDIS_URL`'s literal value.
 * - `jwks-tls`: every container that reads a JWKS_URL fetches it over https, pins the issuer's
 *   identity (JWKS_SERVER_ID is the `auth` SPIFFE ID), and presents a client certificate:
 *   JWKS_CA_FILE, JWKS_CERT_FILE and JWKS_KEY_FILE are set and lie under a volume mounted into
 *   that container.
 * - `tracing`: all or nothing. With the tracing component (the collector's Service exists), every
 *   long-running container of a jwt-mesh image has an OTLP endpoint (`OTEL_EXPORTER_OTLP_ENDPOINT`
 *   or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, by env or envFrom) on the collector's OTLP/HTTP port,
 *   with a parent-based sampler when one is set, and every Envoy config has the OpenTelemetry
 *   tracer on every HTTP connection manager but its probe listener (`health`), exporting through a
 *   cluster that points at the collector; without it, no container has an OTLP endpoint and no
 *   Envoy config has a tracer. (Whether those connections are allowed is the `network-policy` rule's.)
 */
import { isIP } from 'node:net';
import { posix } from 'node:path';
import YAML from 'yaml';
import {
  containersOf,
  isBatch,
  podTemplates,
  podsSelectedBy,
  refOf,
  resolveContainerPort,
  selectorMatches,
  type Container,
  type K8sObject,
  type PodTemplate,
  type Probe,
} from './manifests.js';

export type RuleId =
  | 'probes'
  | 'resources'
  | 'security-context'
  | 'sidecar'
  | 'envoy-mounts'
  | 'ports'
  | 'images'
  | 'references'
  | 'network-policy'
  | 'redis-credentials'
  | 'jwks-tls'
  | 'tracing';

export const RULES: readonly RuleId[] = [
  'probes',
  'resources',
  'security-context',
  'sidecar',
  'envoy-mounts',
  'ports',
  'images',
  'references',
  'network-policy',
  'redis-credentials',
  'jwks-tls',
  'tracing',
];

/** One broken invariant. */
export interface Violation {
  rule: RuleId;
  /** `Kind/name` of the object at fault. */
  object: string;
  /** The container at fault, when there is one. */
  container?: string;
  message: string;
}

/** An image jwt-mesh builds (a line of k8s/images.tsv). */
export interface BuiltImage {
  /** Repository path of the workspace the image runs, e.g. `services/orders`. */
  workspace: string;
  /** Repository path of its Dockerfile. */
  dockerfile: string;
}

/** A Dockerfile as BuildKit's parser reads it (k8s/scripts/dockerfile_info.py). */
export type DockerfileInfo =
  | { ok: true; instructions: Array<{ cmd: string; flags: string[]; value: string[]; line: number }> }
  | { ok: false; error: string };

/** A connection an app opens itself (its URL lives in a Secret, so no manifest shows it). */
export interface AppConnection {
  /** Client workload (pod label app.kubernetes.io/name). */
  from: string;
  /** Server workload (pod label app.kubernetes.io/name). */
  to: string;
  port: number;
}

/** Everything the rules need besides the objects. */
export interface CheckContext {
  /** Services that must run behind an Envoy sidecar (the Envoy topology's services). */
  meshServices: readonly string[];
  /** The Envoy image every proxy must run, e.g. `envoyproxy/envoy:v1.40.0`. */
  envoyImage: string;
  /** Other upstream images allowed, as exact pinned references (`postgres:17.5-alpine`). */
  upstreamImages: readonly string[];
  /** Images built from this repository, by image name without tag. */
  builtImages: ReadonlyMap<string, BuiltImage>;
  /** Parsed Dockerfiles by repository path. */
  dockerfiles: ReadonlyMap<string, DockerfileInfo>;
  /** Whether a repository-relative path exists. */
  fileExists(path: string): boolean;
  /** Secrets created outside the manifests (`k8s/create-secrets.sh --list`). */
  externalSecrets: readonly string[];
  /** Connections the apps open that no manifest shows. */
  appConnections: readonly AppConnection[];
  /** Datastores (and the auth sidecar) and the exact set of workloads allowed to reach them on `port`. */
  exclusiveAccess: Readonly<Record<string, { port: number; clients: readonly string[] }>>;
  /**
   * The Redis ACL users' Secrets: `issuerSecret` (the issuer's user, which writes the revocation
   * store) may be referenced only by the `issuers` workloads; every other Redis client (from
   * `appConnections`) must reference `verifierSecret` (the read-only user).
   */
  redisCredentials: { issuerSecret: string; verifierSecret: string; issuers: readonly string[] };
  /** The identity every verifier must pin for the JWK Set (JWKS_SERVER_ID): the issuer's SPIFFE ID. */
  issuerIdentity: string;
  /**
   * The tracing component's collector: its Service name and OTLP/HTTP port. Its Service in the
   * rendered objects means tracing is on (see the `tracing` rule).
   */
  tracing: { collectorService: string; otlpHttpPort: number };
}

const NAME_LABEL = 'app.kubernetes.io/name';
const ENVOY_CONFIG_KEY_ARGS = ['--config-path', '-c'];

// ---------------------------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------------------------

function v(rule: RuleId, pod: PodTemplate | K8sObject, message: string, container?: string): Violation {
  const object = 'ref' in pod && typeof pod.ref === 'string' ? pod.ref : refOf(pod as K8sObject);
  return container === undefined ? { rule, object, message } : { rule, object, container, message };
}

function nameOf(pod: PodTemplate): string | undefined {
  return pod.labels[NAME_LABEL];
}

function findObject(objects: readonly K8sObject[], kind: string, name: string, namespace: string): K8sObject | undefined {
  return objects.find((o) => o.kind === kind && o.metadata.name === name && (o.metadata.namespace ?? 'default') === namespace);
}

/** Parses a Kubernetes quantity (`50m`, `1`, `64Mi`, `1G`, `1e3`) into a plain number (cores, bytes). */
export function parseQuantity(q: string | number): number {
  if (typeof q === 'number') return q;
  const m = /^([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E)?$/.exec(q.trim());
  if (!m) return Number.NaN;
  const n = Number(m[1]);
  const f: Record<string, number> = {
    m: 1e-3, k: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15, E: 1e18,
    Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, Pi: 2 ** 50, Ei: 2 ** 60,
  };
  return m[2] ? n * (f[m[2]] as number) : n;
}

/** An Envoy bootstrap mounted into a pod from a ConfigMap. */
export interface MountedEnvoyConfig {
  pod: PodTemplate;
  container: Container;
  /** The ConfigMap it comes from (as rendered, with kustomize's hash suffix). */
  configMap: string;
  /** The parsed bootstrap, or undefined when the ConfigMap or key is missing / not YAML. */
  config: Record<string, unknown> | undefined;
  /** The bootstrap as the pod reads it (the ConfigMap value). */
  text?: string;
  /** Why `config` is undefined. */
  problem?: string;
}

/** True when `container` runs the Envoy image (any tag). */
export function isEnvoyContainer(container: Container): boolean {
  return /^(docker\.io\/)?envoyproxy\/envoy(-[a-z]+)?[:@]/.test(container.image ?? '');
}

/**
 * The Envoy bootstraps the pods mount: for every Envoy container, the file named by
 * `--config-path`/`-c`, found through its volumeMounts in a ConfigMap volume.
 */
export function envoyConfigs(objects: readonly K8sObject[], pods: readonly PodTemplate[] = podTemplates(objects)): MountedEnvoyConfig[] {
  const out: MountedEnvoyConfig[] = [];
  for (const pod of pods) {
    for (const { container } of containersOf(pod)) {
      if (!isEnvoyContainer(container)) continue;
      const argv = [...(container.command ?? []), ...(container.args ?? [])];
      const i = argv.findIndex((a) => ENVOY_CONFIG_KEY_ARGS.includes(a));
      const path = i >= 0 ? argv[i + 1] : argv.find((a) => a.startsWith('--config-path='))?.slice('--config-path='.length);
      const base: Omit<MountedEnvoyConfig, 'config'> = { pod, container, configMap: '' };
      if (!path) {
        out.push({ ...base, config: undefined, problem: 'Envoy is started without --config-path' });
        continue;
      }
      const mount = (container.volumeMounts ?? []).find((m) => !m.subPath && path.startsWith(`${m.mountPath.replace(/\/$/, '')}/`));
      const volume = mount && pod.spec.volumes?.find((vol) => vol.name === mount.name);
      if (!mount || !volume?.configMap) {
        out.push({ ...base, config: undefined, problem: `its config ${path} is not in a mounted ConfigMap` });
        continue;
      }
      const key = path.slice(mount.mountPath.replace(/\/$/, '').length + 1);
      const cm = findObject(objects, 'ConfigMap', volume.configMap.name, pod.namespace);
      const text = (cm?.['data'] as Record<string, string> | undefined)?.[key];
      if (text === undefined) {
        out.push({ ...base, configMap: volume.configMap.name, config: undefined, problem: `ConfigMap ${volume.configMap.name} has no key ${key}` });
        continue;
      }
      try {
        out.push({ ...base, configMap: volume.configMap.name, config: YAML.parse(text) as Record<string, unknown>, text });
      } catch (err) {
        out.push({ ...base, configMap: volume.configMap.name, config: undefined, problem: `not YAML: ${(err as Error).message}` });
      }
    }
  }
  return out;
}

interface SocketAddr {
  address: string;
  port: number;
}

function socketAddr(a: unknown): SocketAddr | undefined {
  const s = (a as { socket_address?: { address?: string; port_value?: number } } | undefined)?.socket_address;
  return s && typeof s.address === 'string' && typeof s.port_value === 'number' ? { address: s.address, port: s.port_value } : undefined;
}

/** Listener addresses of an Envoy bootstrap (static_resources.listeners). */
export function envoyListeners(config: Record<string, unknown>): Array<{ name: string } & SocketAddr> {
  const listeners = ((config['static_resources'] as Record<string, unknown> | undefined)?.['listeners'] ?? []) as Array<Record<string, unknown>>;
  return listeners.flatMap((l) => {
    const a = socketAddr(l['address']);
    return a ? [{ name: String(l['name']), ...a }] : [];
  });
}

/** Cluster endpoints of an Envoy bootstrap (static_resources.clusters[].load_assignment). */
export function envoyClusterEndpoints(config: Record<string, unknown>): Array<{ cluster: string } & SocketAddr> {
  const clusters = ((config['static_resources'] as Record<string, unknown> | undefined)?.['clusters'] ?? []) as Array<Record<string, unknown>>;
  const out: Array<{ cluster: string } & SocketAddr> = [];
  for (const c of clusters) {
    const la = c['load_assignment'] as { endpoints?: Array<{ lb_endpoints?: Array<{ endpoint?: { address?: unknown } }> }> } | undefined;
    for (const e of la?.endpoints ?? []) {
      for (const lb of e.lb_endpoints ?? []) {
        const a = socketAddr(lb.endpoint?.address);
        if (a) out.push({ cluster: String(c['name']), ...a });
      }
    }
  }
  return out;
}

/** Every `filename` an Envoy config reads (certificates, keys, CAs, ...). */
export function envoyFiles(config: unknown): string[] {
  const out: string[] = [];
  const walk = (x: unknown): void => {
    if (Array.isArray(x)) x.forEach(walk);
    else if (x && typeof x === 'object') {
      for (const [k, val] of Object.entries(x)) {
        if (k === 'filename' && typeof val === 'string') out.push(val);
        else walk(val);
      }
    }
  };
  walk(config);
  return out;
}

function isLoopback(address: string): boolean {
  return address === '::1' || (isIP(address) === 4 && address.startsWith('127.'));
}

function isWildcard(address: string): boolean {
  return address === '0.0.0.0' || address === '::';
}

/** What a host in an Envoy cluster or a URL points at, inside the cluster. */
type Destination = { kind: 'loopback' } | { kind: 'service'; name: string; namespace: string } | { kind: 'external' };

/** Resolves `orders`, `orders.jwt-mesh`, `orders.jwt-mesh.svc`, `orders.jwt-mesh.svc.cluster.local` to a Service. */
export function resolveHost(host: string, namespace: string): Destination {
  if (isIP(host) !== 0) return isLoopback(host) ? { kind: 'loopback' } : { kind: 'external' };
  if (host === 'localhost') return { kind: 'loopback' };
  const parts = host.toLowerCase().split('.');
  const [svc, ns] = parts;
  if (parts.length === 1) return { kind: 'service', name: svc as string, namespace };
  if (parts.length === 2 || (parts.length === 3 && parts[2] === 'svc') || (parts.length === 5 && parts.slice(2).join('.') === 'svc.cluster.local')) {
    return { kind: 'service', name: svc as string, namespace: ns as string };
  }
  return { kind: 'external' };
}

// ---------------------------------------------------------------------------------------------
// Rules
// ---------------------------------------------------------------------------------------------

/** Rule `probes`. */
export function checkProbes(objects: readonly K8sObject[]): Violation[] {
  const out: Violation[] = [];
  for (const pod of podTemplates(objects)) {
    if (isBatch(pod)) continue;
    for (const { container, role } of containersOf(pod)) {
      if (role === 'init') continue;
      if (!container.readinessProbe) out.push(v('probes', pod, 'no readinessProbe', container.name));
      if (!container.livenessProbe) out.push(v('probes', pod, 'no livenessProbe', container.name));
    }
  }
  return out;
}

/** Rule `resources`. */
export function checkResources(objects: readonly K8sObject[]): Violation[] {
  const out: Violation[] = [];
  for (const pod of podTemplates(objects)) {
    for (const { container } of containersOf(pod)) {
      const r = container.resources ?? {};
      for (const res of ['cpu', 'memory'] as const) {
        const request = r.requests?.[res];
        const limit = r.limits?.[res];
        if (request === undefined) out.push(v('resources', pod, `no ${res} request`, container.name));
        if (limit === undefined) out.push(v('resources', pod, `no ${res} limit`, container.name));
        if (request !== undefined && limit !== undefined) {
          const rq = parseQuantity(request);
          const lq = parseQuantity(limit);
          if (Number.isNaN(rq) || Number.isNaN(lq)) out.push(v('resources', pod, `${res}: unparseable quantity (${request} / ${limit})`, container.name));
          else if (rq > lq) out.push(v('resources', pod, `${res} request ${request} exceeds the limit ${limit}`, container.name));
        }
      }
    }
  }
  return out;
}

/** Rule `security-context`. */
export function checkSecurityContext(objects: readonly K8sObject[]): Violation[] {
  const out: Violation[] = [];
  for (const pod of podTemplates(objects)) {
    const psc = pod.spec.securityContext ?? {};
    for (const { container } of containersOf(pod)) {
      const sc = container.securityContext ?? {};
      const bad = (m: string) => out.push(v('security-context', pod, m, container.name));
      if ((sc.runAsNonRoot ?? psc.runAsNonRoot) !== true) bad('runAsNonRoot is not true');
      if ((sc.runAsUser ?? psc.runAsUser) === 0) bad('runAsUser is 0 (root)');
      if (sc.allowPrivilegeEscalation !== false) bad('allowPrivilegeEscalation is not false');
      if (sc.readOnlyRootFilesystem !== true) bad('readOnlyRootFilesystem is not true');
      if (sc.privileged === true) bad('privileged');
      if (!(sc.capabilities?.drop ?? []).includes('ALL')) bad('capabilities.drop does not contain ALL');
      if ((sc.capabilities?.add ?? []).length > 0) bad(`capabilities added: ${(sc.capabilities?.add ?? []).join(', ')}`);
      const seccomp = (sc.seccompProfile ?? psc.seccompProfile)?.type;
      if (seccomp !== 'RuntimeDefault' && seccomp !== 'Localhost') bad(`seccompProfile is ${seccomp ?? 'unset'} (want RuntimeDefault)`);
    }
  }
  return out;
}

/** Rule `sidecar`. */
export function checkSidecars(objects: readonly K8sObject[], ctx: Pick<CheckContext, 'meshServices' | 'envoyImage'>): Violation[] {
  const out: Violation[] = [];
  const pods = podTemplates(objects);
  const configs = envoyConfigs(objects, pods);
  const services = objects.filter((o) => o.kind === 'Service');
  for (const name of ctx.meshServices) {
    const mine = pods.filter((p) => nameOf(p) === name);
    if (mine.length === 0) {
      out.push({ rule: 'sidecar', object: `service ${name}`, message: `mesh service "${name}" has no pod template (label ${NAME_LABEL}=${name})` });
    }
    for (const pod of mine) {
      const envoys = containersOf(pod).filter((c) => isEnvoyContainer(c.container));
      if (envoys.length === 0) {
        out.push(v('sidecar', pod, 'no Envoy sidecar container'));
        continue;
      }
      for (const { container, role } of envoys) {
        if (role === 'init') out.push(v('sidecar', pod, 'the Envoy init container is not a sidecar (restartPolicy: Always)', container.name));
        if (container.image !== ctx.envoyImage) out.push(v('sidecar', pod, `Envoy image ${container.image} is not ${ctx.envoyImage}`, container.name));
        const mounted = configs.find((c) => c.pod === pod && c.container === container);
        if (!mounted?.config) {
          out.push(v('sidecar', pod, `Envoy config: ${mounted?.problem ?? 'not found'}`, container.name));
          continue;
        }
        const nodeId = (mounted.config['node'] as { id?: string } | undefined)?.id;
        if (nodeId !== `sidecar-${name}`) {
          out.push(v('sidecar', pod, `mounts ConfigMap ${mounted.configMap} with node.id "${nodeId}", not the rendered sidecar-${name} config`, container.name));
        }
      }
      // Only the sidecar is reachable: the app binds loopback and no Service targets its ports.
      const envoyNames = new Set(envoys.map((e) => e.container.name));
      for (const { container } of containersOf(pod)) {
        if (envoyNames.has(container.name) || !container.ports?.length) continue;
        const host = container.env?.find((e) => e.name === 'HOST')?.value;
        if (host !== '127.0.0.1') out.push(v('sidecar', pod, `app listens on HOST=${host ?? '(image default)'}, not 127.0.0.1 behind its sidecar`, container.name));
        for (const svc of services) {
          if (!podsSelectedBy(svc, [pod]).length) continue;
          for (const sp of ((svc['spec'] as { ports?: Array<{ port: number; targetPort?: number | string }> }).ports ?? [])) {
            const target = sp.targetPort ?? sp.port;
            if (resolveContainerPort(container, target) !== undefined) {
              out.push(v('sidecar', pod, `Service ${svc.metadata.name} port ${sp.port} reaches the app directly (targetPort ${target}), bypassing the sidecar`, container.name));
            }
          }
        }
      }
    }
  }
  return out;
}

/** Rule `envoy-mounts`. */
export function checkEnvoyMounts(objects: readonly K8sObject[]): Violation[] {
  const out: Violation[] = [];
  for (const m of envoyConfigs(objects)) {
    if (!m.config) {
      out.push(v('envoy-mounts', m.pod, `Envoy config: ${m.problem ?? 'not found'}`, m.container.name));
      continue;
    }
    for (const file of envoyFiles(m.config)) {
      if (file.startsWith('/dev/')) continue;
      const mount = (m.container.volumeMounts ?? []).find((vm) => file.startsWith(`${vm.mountPath.replace(/\/$/, '')}/`));
      if (!mount) out.push(v('envoy-mounts', m.pod, `config ${m.configMap} reads ${file}, which no volume mount provides`, m.container.name));
    }
  }
  return out;
}

function probePorts(probe: Probe | undefined): Array<number | string> {
  if (!probe) return [];
  return [probe.httpGet?.port, probe.tcpSocket?.port, probe.grpc?.port].filter((p): p is number | string => p !== undefined);
}

/** Rule `ports`. */
export function checkPorts(objects: readonly K8sObject[]): Violation[] {
  const out: Violation[] = [];
  const pods = podTemplates(objects);

  // Services: every targetPort resolves on every selected pod.
  for (const svc of objects.filter((o) => o.kind === 'Service')) {
    const spec = svc['spec'] as { selector?: Record<string, string>; clusterIP?: string; type?: string; ports?: Array<{ name?: string; port: number; targetPort?: number | string }> };
    if (!spec.selector || spec.type === 'ExternalName') continue;
    const selected = podsSelectedBy(svc, pods);
    if (selected.length === 0) {
      out.push(v('ports', svc, `selector ${JSON.stringify(spec.selector)} matches no pod template`));
      continue;
    }
    for (const sp of spec.ports ?? []) {
      const target = sp.targetPort ?? sp.port;
      for (const pod of selected) {
        const resolved = containersOf(pod)
          .filter((c) => c.role !== 'init')
          .map((c) => resolveContainerPort(c.container, target))
          .find((p) => p !== undefined);
        if (resolved === undefined) {
          out.push(v('ports', svc, `port ${sp.name ?? sp.port}: targetPort ${target} is not a container port of ${pod.ref}`));
        } else if (spec.clusterIP === 'None' && resolved !== sp.port) {
          out.push(v('ports', svc, `headless Service port ${sp.port} differs from the container port ${resolved} of ${pod.ref} (nothing translates it)`));
        }
      }
    }
  }

  // Probes: the port is the probed container's own.
  for (const pod of pods) {
    for (const { container } of containersOf(pod)) {
      for (const [kind, probe] of [['readinessProbe', container.readinessProbe], ['livenessProbe', container.livenessProbe], ['startupProbe', container.startupProbe]] as const) {
        for (const port of probePorts(probe)) {
          if (resolveContainerPort(container, port) === undefined) {
            out.push(v('ports', pod, `${kind} port ${port} is not a port of this container`, container.name));
          }
        }
      }
    }
  }

  // Envoy: listeners are declared container ports (and the other way round); clusters point at
  // a container port of the same pod (loopback) or at a Service port of this namespace.
  for (const m of envoyConfigs(objects, pods)) {
    if (!m.config) continue;
    const listeners = envoyListeners(m.config);
    for (const l of listeners) {
      if (isLoopback(l.address)) continue;
      if (!isWildcard(l.address)) {
        out.push(v('ports', m.pod, `listener ${l.name} binds ${l.address}, neither loopback nor the pod's wildcard address`, m.container.name));
      } else if (resolveContainerPort(m.container, l.port) === undefined) {
        out.push(v('ports', m.pod, `listener ${l.name} on port ${l.port} is not a declared container port`, m.container.name));
      }
    }
    for (const p of m.container.ports ?? []) {
      if (!listeners.some((l) => !isLoopback(l.address) && l.port === p.containerPort)) {
        out.push(v('ports', m.pod, `container port ${p.name ?? p.containerPort} (${p.containerPort}) has no Envoy listener in ${m.configMap}`, m.container.name));
      }
    }
    // The app's outgoing calls (UPSTREAM_URL) go to a loopback listener of its sidecar.
    for (const { container } of containersOf(m.pod)) {
      const url = container === m.container ? undefined : container.env?.find((e) => e.name === 'UPSTREAM_URL')?.value;
      if (!url) continue;
      let u: URL | undefined;
      try {
        u = new URL(url);
      } catch {
        u = undefined;
      }
      const port = u && (u.port ? Number(u.port) : 80);
      if (!u || !isLoopback(u.hostname.replace(/^\[|\]$/g, '')) || !listeners.some((l) => isLoopback(l.address) && l.port === port)) {
        out.push(v('ports', m.pod, `UPSTREAM_URL ${url} is not a loopback listener of the sidecar (${m.configMap})`, container.name));
      }
    }
    for (const e of envoyClusterEndpoints(m.config)) {
      const dest = resolveHost(e.address, m.pod.namespace);
      if (dest.kind === 'loopback') {
        const owner = containersOf(m.pod).find((c) => c.container !== m.container && c.role !== 'init' && resolveContainerPort(c.container, e.port) !== undefined);
        if (!owner) out.push(v('ports', m.pod, `cluster ${e.cluster} -> ${e.address}:${e.port}: no other container of the pod has port ${e.port}`, m.container.name));
      } else if (dest.kind === 'service') {
        const svc = findObject(objects, 'Service', dest.name, dest.namespace);
        if (!svc) out.push(v('ports', m.pod, `cluster ${e.cluster} -> ${e.address}: no Service ${dest.namespace}/${dest.name}`, m.container.name));
        else if (!((svc['spec'] as { ports?: Array<{ port: number }> }).ports ?? []).some((p) => p.port === e.port)) {
          out.push(v('ports', m.pod, `cluster ${e.cluster} -> ${e.address}:${e.port}: Service ${dest.name} has no port ${e.port}`, m.container.name));
        }
      } else {
        out.push(v('ports', m.pod, `cluster ${e.cluster} -> ${e.address}: not a Service of this cluster`, m.container.name));
      }
    }
  }
  return out;
}

/** Splits `repo/name:tag` / `repo/name@sha256:...` into name and tag/digest. */
export function parseImage(image: string): { name: string; tag?: string; digest?: string } {
  const at = image.indexOf('@');
  if (at >= 0) return { name: image.slice(0, at), digest: image.slice(at + 1) };
  const colon = image.lastIndexOf(':');
  if (colon > image.lastIndexOf('/')) return { name: image.slice(0, colon), tag: image.slice(colon + 1) };
  return { name: image };
}

const DOCKERFILE_INSTRUCTIONS = new Set([
  'ADD', 'ARG', 'CMD', 'COPY', 'ENTRYPOINT', 'ENV', 'EXPOSE', 'FROM', 'HEALTHCHECK', 'LABEL', 'MAINTAINER',
  'ONBUILD', 'RUN', 'SHELL', 'STOPSIGNAL', 'USER', 'VOLUME', 'WORKDIR',
]);

/** Problems of a Dockerfile for a jwt-mesh image (empty = fine). */
export function dockerfileProblems(info: DockerfileInfo | undefined): string[] {
  if (!info) return ['not parsed'];
  if (!info.ok) return [`does not parse: ${info.error}`];
  const problems: string[] = [];
  for (const i of info.instructions) {
    if (!DOCKERFILE_INSTRUCTIONS.has(i.cmd)) problems.push(`line ${i.line}: unknown instruction ${i.cmd}`);
  }
  const froms = info.instructions.filter((i) => i.cmd === 'FROM');
  if (froms.length < 2) problems.push('not a multi-stage build (one FROM)');
  const lastFrom = info.instructions.lastIndexOf(froms[froms.length - 1] as (typeof info.instructions)[number]);
  const finalStage = info.instructions.slice(lastFrom);
  const user = finalStage.filter((i) => i.cmd === 'USER').pop()?.value[0];
  if (!user) problems.push('the final stage sets no USER (runs as root)');
  else if (!/^\d+(:\d+)?$/.test(user)) problems.push(`the final USER "${user}" is not numeric (Kubernetes cannot verify runAsNonRoot)`);
  else if (Number(user.split(':')[0]) === 0) problems.push('the final USER is root (0)');
  if (!info.instructions.some((i) => i.cmd === 'ARG' && i.value[0]?.split('=')[0] === 'WORKSPACE')) problems.push('takes no WORKSPACE build argument');
  return problems;
}

/** Rule `images`. */
export function checkImages(objects: readonly K8sObject[], ctx: Pick<CheckContext, 'envoyImage' | 'upstreamImages' | 'builtImages' | 'dockerfiles' | 'fileExists'>): Violation[] {
  const out: Violation[] = [];
  const envoyName = parseImage(ctx.envoyImage).name;
  for (const pod of podTemplates(objects)) {
    for (const { container } of containersOf(pod)) {
      const image = container.image ?? '';
      const bad = (m: string) => out.push(v('images', pod, m, container.name));
      const { name, tag, digest } = parseImage(image);
      if (!tag && !digest) bad(`image "${image}" has no tag`);
      if (tag === 'latest') bad(`image "${image}" uses the moving tag latest`);
      const built = ctx.builtImages.get(name);
      if (built) {
        if (!ctx.fileExists(built.dockerfile)) bad(`image ${name}: Dockerfile ${built.dockerfile} does not exist`);
        else for (const p of dockerfileProblems(ctx.dockerfiles.get(built.dockerfile))) bad(`image ${name}: ${built.dockerfile}: ${p}`);
        if (!ctx.fileExists(posix.join(built.workspace, 'package.json'))) bad(`image ${name}: workspace ${built.workspace} has no package.json`);
      } else if (name === envoyName || name === `docker.io/${envoyName}`) {
        if (image !== ctx.envoyImage) bad(`Envoy image ${image} is not ${ctx.envoyImage}, the version the local stack pins`);
      } else if (!ctx.upstreamImages.includes(image)) {
        bad(`image ${image} is neither built here (k8s/images.tsv) nor a pinned upstream image`);
      }
    }
  }
  return out;
}

/** The Secrets and ConfigMaps a pod references: volumes (projected too), env and envFrom of every container. */
function referencesOf(pod: PodTemplate): { secrets: Set<string>; configMaps: Set<string> } {
  const secrets = new Set<string>();
  const configMaps = new Set<string>();
  for (const vol of pod.spec.volumes ?? []) {
    if (vol.secret) secrets.add(vol.secret.secretName);
    if (vol.configMap) configMaps.add(vol.configMap.name);
    for (const s of vol.projected?.sources ?? []) {
      if (s.secret) secrets.add(s.secret.name);
      if (s.configMap) configMaps.add(s.configMap.name);
    }
  }
  for (const { container } of containersOf(pod)) {
    for (const e of container.env ?? []) {
      if (e.valueFrom?.secretKeyRef) secrets.add(e.valueFrom.secretKeyRef.name);
      if (e.valueFrom?.configMapKeyRef) configMaps.add(e.valueFrom.configMapKeyRef.name);
    }
    for (const e of container.envFrom ?? []) {
      if (e.secretRef) secrets.add(e.secretRef.name);
      if (e.configMapRef) configMaps.add(e.configMapRef.name);
    }
  }
  return { secrets, configMaps };
}

/** Rule `references`. */
export function checkReferences(objects: readonly K8sObject[], ctx: Pick<CheckContext, 'externalSecrets'>): Violation[] {
  const out: Violation[] = [];
  const issued = new Set(
    objects.filter((o) => o.kind === 'Certificate').map((o) => `${o.metadata.namespace ?? 'default'}/${(o['spec'] as { secretName?: string }).secretName}`),
  );
  for (const pod of podTemplates(objects)) {
    const secretOk = (name: string) =>
      ctx.externalSecrets.includes(name) || issued.has(`${pod.namespace}/${name}`) || findObject(objects, 'Secret', name, pod.namespace) !== undefined;
    const configMapOk = (name: string) => findObject(objects, 'ConfigMap', name, pod.namespace) !== undefined;
    const { secrets, configMaps } = referencesOf(pod);
    for (const s of secrets) {
      if (!secretOk(s)) out.push(v('references', pod, `Secret ${s} is neither in the manifests, nor created by k8s/create-secrets.sh, nor issued by a Certificate`));
    }
    for (const c of configMaps) if (!configMapOk(c)) out.push(v('references', pod, `ConfigMap ${c} does not exist`));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// NetworkPolicy evaluation
// ---------------------------------------------------------------------------------------------

interface PolicyPeer {
  podSelector?: Parameters<typeof selectorMatches>[0];
  namespaceSelector?: Parameters<typeof selectorMatches>[0];
  ipBlock?: unknown;
}
interface PolicyPort {
  protocol?: string;
  port?: number | string;
  endPort?: number;
}
interface PolicyRule {
  from?: PolicyPeer[];
  to?: PolicyPeer[];
  ports?: PolicyPort[];
}
interface PolicySpec {
  podSelector?: Parameters<typeof selectorMatches>[0];
  policyTypes?: string[];
  ingress?: PolicyRule[];
  egress?: PolicyRule[];
}

function policyTypes(spec: PolicySpec): string[] {
  if (spec.policyTypes?.length) return spec.policyTypes;
  return spec.egress ? ['Ingress', 'Egress'] : ['Ingress'];
}

function namespaceLabels(objects: readonly K8sObject[], ns: string): Record<string, string> {
  const obj = objects.find((o) => o.kind === 'Namespace' && o.metadata.name === ns);
  return { ...(obj?.metadata.labels ?? {}), 'kubernetes.io/metadata.name': ns };
}

function peerMatches(objects: readonly K8sObject[], peer: PolicyPeer, policyNs: string, pod: PodTemplate): boolean {
  if (peer.ipBlock) return false; // pod IPs are not known offline: an ipBlock is never credited
  if (peer.namespaceSelector) {
    if (!selectorMatches(peer.namespaceSelector, namespaceLabels(objects, pod.namespace))) return false;
  } else if (pod.namespace !== policyNs) return false;
  return peer.podSelector ? selectorMatches(peer.podSelector, pod.labels) : true;
}

function portMatches(ports: PolicyPort[] | undefined, port: number, portName: string | undefined): boolean {
  if (!ports?.length) return true;
  return ports.some((p) => {
    if ((p.protocol ?? 'TCP') !== 'TCP') return false;
    if (p.port === undefined) return true;
    if (typeof p.port === 'string') return p.port === portName;
    return p.endPort !== undefined ? port >= p.port && port <= p.endPort : p.port === port;
  });
}

/**
 * Whether NetworkPolicies let `from` open a TCP connection to `to` on `port` (the destination
 * container port; `portName` its name, for named policy ports). Both sides must allow it: egress
 * of the source (when any Egress policy selects it) and ingress of the destination (likewise).
 */
export function connectionAllowed(objects: readonly K8sObject[], from: PodTemplate, to: PodTemplate, port: number, portName?: string): boolean {
  const policies = objects.filter((o) => o.kind === 'NetworkPolicy');
  const side = (self: PodTemplate, other: PodTemplate, type: 'Ingress' | 'Egress'): boolean => {
    const selecting = policies.filter((p) => {
      const spec = p['spec'] as PolicySpec;
      return (p.metadata.namespace ?? 'default') === self.namespace && policyTypes(spec).includes(type) && selectorMatches(spec.podSelector ?? {}, self.labels);
    });
    if (selecting.length === 0) return true;
    return selecting.some((p) => {
      const spec = p['spec'] as PolicySpec;
      const rules = (type === 'Ingress' ? spec.ingress : spec.egress) ?? [];
      return rules.some((r) => {
        const peers = type === 'Ingress' ? r.from : r.to;
        const peerOk = !peers?.length || peers.some((peer) => peerMatches(objects, peer, p.metadata.namespace ?? 'default', other));
        return peerOk && portMatches(r.ports, port, portName);
      });
    });
  };
  return side(from, to, 'Egress') && side(to, from, 'Ingress');
}

/** Resolves a Service port to the container port (and its name) on one selected pod. */
function targetOn(svc: K8sObject, servicePort: number, pod: PodTemplate): { port: number; name?: string } | undefined {
  const sp = ((svc['spec'] as { ports?: Array<{ port: number; targetPort?: number | string }> }).ports ?? []).find((p) => p.port === servicePort);
  if (!sp) return undefined;
  for (const { container, role } of containersOf(pod)) {
    if (role === 'init') continue;
    const port = resolveContainerPort(container, sp.targetPort ?? sp.port);
    if (port !== undefined) {
      const name = container.ports?.find((p) => p.containerPort === port)?.name;
      return name === undefined ? { port } : { port, name };
    }
  }
  return undefined;
}

function envValue(objects: readonly K8sObject[], pod: PodTemplate, container: Container, name: string): string | undefined {
  const direct = container.env?.find((e) => e.name === name);
  if (direct?.value !== undefined) return direct.value;
  for (const src of container.envFrom ?? []) {
    if (!src.configMapRef) continue;
    const cm = findObject(objects, 'ConfigMap', src.configMapRef.name, pod.namespace);
    const value = (cm?.['data'] as Record<string, string> | undefined)?.[name];
    if (value !== undefined) return value;
  }
  return undefined;
}

/** Environment variables holding a URL the container connects to itself (checked against the NetworkPolicies). */
export const URL_VARIABLES = ['JWKS_URL', 'OTEL_EXPORTER_OTLP_ENDPOINT', 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT'] as const;

/** Rule `network-policy`. */
export function checkNetworkPolicies(objects: readonly K8sObject[], ctx: Pick<CheckContext, 'appConnections' | 'exclusiveAccess'>): Violation[] {
  const out: Violation[] = [];
  const pods = podTemplates(objects);
  const namespaces = new Set(pods.map((p) => p.namespace));
  for (const ns of namespaces) {
    const denyAll = objects.some((o) => {
      if (o.kind !== 'NetworkPolicy' || (o.metadata.namespace ?? 'default') !== ns) return false;
      const spec = o['spec'] as PolicySpec;
      const sel = spec.podSelector ?? {};
      const empty = !Object.keys(sel.matchLabels ?? {}).length && !(sel.matchExpressions ?? []).length;
      const types = policyTypes(spec);
      return empty && types.includes('Ingress') && types.includes('Egress') && !spec.ingress?.length && !spec.egress?.length;
    });
    if (!denyAll) out.push({ rule: 'network-policy', object: `namespace ${ns}`, message: 'no default-deny NetworkPolicy (empty podSelector, Ingress and Egress, no rules)' });
  }

  const need = (from: PodTemplate, svcName: string, svcNs: string, servicePort: number, why: string) => {
    const svc = findObject(objects, 'Service', svcName, svcNs);
    if (!svc) return; // the `ports` rule reports a missing Service
    for (const to of podsSelectedBy(svc, pods)) {
      const target = targetOn(svc, servicePort, to);
      if (!target) continue; // the `ports` rule reports it
      if (!connectionAllowed(objects, from, to, target.port, target.name)) {
        out.push(v('network-policy', from, `${why}: NetworkPolicies block ${from.ref} -> ${to.ref} port ${target.port}`));
      }
    }
  };

  // Every Envoy cluster that points at a Service.
  for (const m of envoyConfigs(objects, pods)) {
    if (!m.config) continue;
    for (const e of envoyClusterEndpoints(m.config)) {
      const dest = resolveHost(e.address, m.pod.namespace);
      if (dest.kind === 'service') need(m.pod, dest.name, dest.namespace, e.port, `Envoy cluster ${e.cluster} (${m.configMap})`);
    }
  }
  // Every URL a container connects to by itself: the JWK Set, the OTLP collector.
  for (const pod of pods) {
    for (const { container } of containersOf(pod)) {
      for (const name of URL_VARIABLES) {
        const url = envValue(objects, pod, container, name);
        if (!url) continue;
        let u: URL;
        try {
          u = new URL(url);
        } catch {
          out.push(v('network-policy', pod, `${name} ${url} is not a URL`, container.name));
          continue;
        }
        const dest = resolveHost(u.hostname, pod.namespace);
        const port = u.port ? Number(u.port) : u.protocol === 'https:' ? 443 : 80;
        if (dest.kind === 'service') need(pod, dest.name, dest.namespace, port, `${name} of container ${container.name}`);
      }
    }
  }
  // Declared app connections (URLs in Secrets).
  const byName = (n: string) => pods.filter((p) => nameOf(p) === n);
  for (const c of ctx.appConnections) {
    for (const from of byName(c.from)) {
      for (const to of byName(c.to)) {
        if (!connectionAllowed(objects, from, to, c.port)) {
          out.push(v('network-policy', from, `${c.from} needs ${c.to}:${c.port}: NetworkPolicies block ${from.ref} -> ${to.ref}`));
        }
      }
    }
  }
  // Datastores: exactly the declared clients.
  for (const [store, rule] of Object.entries(ctx.exclusiveAccess)) {
    for (const to of byName(store)) {
      for (const from of pods) {
        if (from === to) continue;
        const client = nameOf(from);
        const allowed = connectionAllowed(objects, from, to, rule.port);
        if (allowed && !rule.clients.includes(client ?? '')) {
          out.push(v('network-policy', to, `${from.ref} can reach ${store}:${rule.port}; only ${rule.clients.join(', ')} may`));
        }
      }
    }
  }
  return out;
}

/** Rule `redis-credentials` (see the module comment). */
export function checkRedisCredentials(objects: readonly K8sObject[], ctx: Pick<CheckContext, 'redisCredentials' | 'appConnections'>): Violation[] {
  const out: Violation[] = [];
  const { issuerSecret, verifierSecret, issuers } = ctx.redisCredentials;
  const clients = new Set(ctx.appConnections.filter((c) => c.to === 'redis').map((c) => c.from));
  for (const pod of podTemplates(objects)) {
    const name = nameOf(pod) ?? '';
    const { secrets } = referencesOf(pod);
    const issuer = issuers.includes(name);
    if (!issuer && secrets.has(issuerSecret)) {
      out.push(v('redis-credentials', pod, `references the issuer's Redis credentials (Secret ${issuerSecret}), which may write the revocation store; only ${issuers.join(', ')} may`));
    }
    if (!clients.has(name)) continue;
    const own = issuer ? issuerSecret : verifierSecret;
    if (!secrets.has(own)) out.push(v('redis-credentials', pod, `a Redis client without its own Redis user: it references no Secret ${own}`));
    for (const { container } of containersOf(pod)) {
      const url = container.env?.find((e) => e.name === 'REDIS_URL')?.value;
      if (url === undefined) continue;
      let password = '';
      try {
        password = new URL(url).password;
      } catch {
        // not a URL: the app's own configuration check reports it
      }
      if (password !== '') out.push(v('redis-credentials', pod, 'REDIS_URL carries a password in the manifest; use the Secret', container.name));
    }
  }
  return out;
}

/** Rule `jwks-tls`. */
export function checkJwksTls(objects: readonly K8sObject[], ctx: Pick<CheckContext, 'issuerIdentity'>): Violation[] {
  const out: Violation[] = [];
  for (const pod of podTemplates(objects)) {
    for (const { container } of containersOf(pod)) {
      const url = envValue(objects, pod, container, 'JWKS_URL');
      if (!url) continue;
      if (!/^https:\/\//i.test(url)) out.push(v('jwks-tls', pod, `JWKS_URL ${url} is not https: anyone on the path could serve signing keys`, container.name));
      const serverId = envValue(objects, pod, container, 'JWKS_SERVER_ID');
      if (serverId !== ctx.issuerIdentity) {
        out.push(v('jwks-tls', pod, `JWKS_SERVER_ID is ${serverId ?? '(unset)'}, not the issuer's identity ${ctx.issuerIdentity}`, container.name));
      }
      for (const name of ['JWKS_CA_FILE', 'JWKS_CERT_FILE', 'JWKS_KEY_FILE']) {
        const file = envValue(objects, pod, container, name);
        if (!file) {
          out.push(v('jwks-tls', pod, `${name} is not set: the JWK Set fetch needs the mesh CA and a client certificate`, container.name));
          continue;
        }
        const mounted = (container.volumeMounts ?? []).some((vm) => file.startsWith(`${vm.mountPath.replace(/\/$/, '')}/`));
        if (!mounted) out.push(v('jwks-tls', pod, `${name} ${file} lies under no volume mounted into the container`, container.name));
      }
    }
  }
  return out;
}

/** The HTTP connection managers of an Envoy bootstrap, with their listener's name. */
export function envoyHttpConnectionManagers(config: Record<string, unknown>): Array<{ listener: string; hcm: Record<string, unknown> }> {
  const listeners = ((config['static_resources'] as Record<string, unknown> | undefined)?.['listeners'] ?? []) as Array<Record<string, unknown>>;
  return listeners.flatMap((l) =>
    ((l['filter_chains'] ?? []) as Array<{ filters?: Array<{ name?: string; typed_config?: Record<string, unknown> }> }>).flatMap((c) =>
      (c.filters ?? [])
        .filter((f) => f.name === 'envoy.filters.network.http_connection_manager' && f.typed_config)
        .map((f) => ({ listener: String(l['name']), hcm: f.typed_config as Record<string, unknown> })),
    ),
  );
}

/** Rule `tracing` (see the module comment). */
export function checkTracing(objects: readonly K8sObject[], ctx: Pick<CheckContext, 'builtImages' | 'tracing'>): Violation[] {
  const out: Violation[] = [];
  const { collectorService, otlpHttpPort } = ctx.tracing;
  const pods = podTemplates(objects);
  const collectors = objects.filter((o) => o.kind === 'Service' && o.metadata.name === collectorService);
  const on = collectors.length > 0;
  const isCollector = (host: string, port: number, namespace: string): boolean => {
    const dest = resolveHost(host, namespace);
    return dest.kind === 'service' && dest.name === collectorService && port === otlpHttpPort && collectors.some((c) => (c.metadata.namespace ?? 'default') === dest.namespace);
  };
  for (const pod of pods) {
    if (isBatch(pod)) continue;
    for (const { container, role } of containersOf(pod)) {
      if (role === 'init' || isEnvoyContainer(container) || !ctx.builtImages.has(parseImage(container.image ?? '').name)) continue;
      const name = ['OTEL_EXPORTER_OTLP_TRACES_ENDPOINT', 'OTEL_EXPORTER_OTLP_ENDPOINT'].find((n) => envValue(objects, pod, container, n));
      const endpoint = name ? envValue(objects, pod, container, name) : undefined;
      if (!on) {
        if (endpoint) out.push(v('tracing', pod, `${name} is set (${endpoint}) but there is no collector (Service ${collectorService}): the tracing component is not in this overlay`, container.name));
        continue;
      }
      if (!endpoint) {
        out.push(v('tracing', pod, `no OTLP endpoint (OTEL_EXPORTER_OTLP_ENDPOINT): its spans would be lost while its proxy's reach ${collectorService}`, container.name));
        continue;
      }
      let u: URL | undefined;
      try {
        u = new URL(endpoint);
      } catch {
        u = undefined;
      }
      const port = u ? (u.port ? Number(u.port) : u.protocol === 'https:' ? 443 : 80) : 0;
      if (!u || u.protocol !== 'http:' || !isCollector(u.hostname, port, pod.namespace)) {
        out.push(v('tracing', pod, `${name} ${endpoint} is not the collector's OTLP/HTTP endpoint (http://${collectorService}...:${otlpHttpPort})`, container.name));
      }
      const sampler = envValue(objects, pod, container, 'OTEL_TRACES_SAMPLER');
      if (sampler !== undefined && !sampler.startsWith('parentbased_')) {
        out.push(v('tracing', pod, `OTEL_TRACES_SAMPLER ${sampler} ignores the incoming traceparent: the edge decides, every process must follow it (parentbased_*)`, container.name));
      }
    }
  }
  for (const m of envoyConfigs(objects, pods)) {
    if (!m.config) continue;
    const clusters = envoyClusterEndpoints(m.config);
    for (const { listener, hcm } of envoyHttpConnectionManagers(m.config)) {
      if (listener === 'health') continue;
      const tracing = hcm['tracing'] as { provider?: { name?: string; typed_config?: Record<string, any> } } | undefined;
      if (!on) {
        if (tracing) out.push(v('tracing', m.pod, `${m.configMap} listener ${listener} has a tracer but there is no collector (Service ${collectorService})`, m.container.name));
        continue;
      }
      if (tracing?.provider?.name !== 'envoy.tracers.opentelemetry') {
        out.push(v('tracing', m.pod, `${m.configMap} listener ${listener} has no OpenTelemetry tracer (envoy.tracers.opentelemetry)`, m.container.name));
        continue;
      }
      const exportCluster = tracing.provider.typed_config?.['http_service']?.['http_uri']?.['cluster'] ?? tracing.provider.typed_config?.['grpc_service']?.['envoy_grpc']?.['cluster_name'];
      const endpoints = clusters.filter((c) => c.cluster === exportCluster);
      if (endpoints.length === 0 || !endpoints.every((e) => isCollector(e.address, e.port, m.pod.namespace))) {
        out.push(v('tracing', m.pod, `${m.configMap} listener ${listener} exports through cluster ${String(exportCluster)}, which does not point at ${collectorService}:${otlpHttpPort}`, m.container.name));
      }
    }
  }
  return out;
}

/** Every rule over the objects; violations sorted by rule, then object. */
export function checkInvariants(objects: readonly K8sObject[], ctx: CheckContext): Violation[] {
  return [
    ...checkProbes(objects),
    ...checkResources(objects),
    ...checkSecurityContext(objects),
    ...checkSidecars(objects, ctx),
    ...checkEnvoyMounts(objects),
    ...checkPorts(objects),
    ...checkImages(objects, ctx),
    ...checkReferences(objects, ctx),
    ...checkNetworkPolicies(objects, ctx),
    ...checkRedisCredentials(objects, ctx),
    ...checkJwksTls(objects, ctx),
    ...checkTracing(objects, ctx),
  ];
}
