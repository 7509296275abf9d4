/**
 * What is decided before the first process starts: the dev PKI, the topology (envoy/'s default,
 * plus the extra upstreams), every port ({@link FIXED_PORTS} or free ones, held), and with fixed
 * ports the check that none of them is taken.
 */
import { createServer } from 'node:net';
import { createDevCerts, defaultTopology, type DevCerts, MESH_WORKLOADS, type ServicePorts as EnvoyServicePorts, type ServiceSpec, type Topology } from '@jwt-mesh/envoy';
import type { ExtraUpstream } from '../stack.js';
import { type Launcher, StackStartError } from './launcher.js';
import { planTracing, type TracingPlan } from './tracing.js';

/**
 * Fixed ports of `make up` (ports: 'fixed'). The edge's can be changed with EDGE_PORT,
 * EDGE_HTTPS_PORT, EDGE_ADMIN_PORT (see the CLI); the others follow the local plan of
 * envoy/src/topology.ts (`defaultPlan('local')`): service i (orders 1, inventory 2, profile 3,
 * auth 4) app 3000+i (the auth-service's: 4000), gRPC 3050+i, sidecar inbound 3100+i, outbound
 * 3200+i, admin 3300+i.
 */
export const FIXED_PORTS = Object.freeze({
  edgeHttp: 8080,
  edgeHttps: 8443,
  edgeAdmin: 9901,
  auth: 4000,
  authz: [9001, 9002] as readonly number[],
  authzMetrics: [9461, 9462] as readonly number[],
});

/** True when nothing listens on 127.0.0.1:`port` (we could bind it). */
function portFree(port: number): Promise<boolean> {
  return new Promise((resolveFree) => {
    const srv = createServer();
    srv.once('error', () => resolveFree(false));
    srv.listen({ host: '127.0.0.1', port, exclusive: true }, () => srv.close(() => resolveFree(true)));
  });
}

/** Step: the dev PKI, created or completed with envoy/'s `createDevCerts` (the mesh workloads and the extra upstreams). @throws StackStartError (`certificates`). */
export async function makeCerts(run: Launcher): Promise<DevCerts> {
  const workloads = [...MESH_WORKLOADS, ...run.extras.map((e) => e.name)];
  let certs: DevCerts;
  try {
    certs = await createDevCerts({ dir: run.paths.certDir, workloads });
  } catch (err) {
    throw new StackStartError('certificates', (err as Error).message, null, { cause: err });
  }
  run.say('certificates', `${run.rel(run.paths.certDir)} (mesh CA and ${workloads.length} SPIFFE workload certificates${certs.created.length ? ', new' : ', reused'})`);
  return certs;
}

/** The ports of one service of the topology on loopback: envoy's plan of them (its app, gRPC, and its sidecar's inbound, outbound and admin ports) without the host and the health port. */
export type ServicePorts = Omit<EnvoyServicePorts, 'host' | 'health'>;

/** Every port of the stack. A part started again after a port clash gets new ones here (`repick`), so read them at start time. */
export interface PortPlan {
  edge: { http: number; https: number; admin: number };
  authz: number[];
  authzMetrics: number[];
  /** By service name, the auth-service (`auth`) and the extra upstreams included. */
  services: Record<string, ServicePorts>;
}

/** The launcher plus what is decided before the first process starts: certificates, topology, ports, tracing. */
export interface Mesh extends Launcher {
  readonly certs: DevCerts;
  readonly topology: Topology;
  readonly plan: PortPlan;
  readonly tracing: TracingPlan;
}

/**
 * Step: the topology, every port, and where the traces go; with fixed ports, checks that none is taken.
 * @throws StackStartError (`tracing` is misconfigured, `ports` check failed).
 */
export async function planMesh(run: Launcher, certs: DevCerts): Promise<Mesh> {
  const topology = buildTopology(run.selection.services, run.extras);
  const plan = await planPorts(run, topology);
  const tracing = await planTracing(run);
  if (!run.free) await checkPortsFree(run, plan, tracing);
  return { ...run, certs, topology, plan, tracing };
}

/** The ports of every part: {@link FIXED_PORTS} and the local plan, or free ports (held). */
async function planPorts(run: Launcher, topology: Topology): Promise<PortPlan> {
  const { options, pick, extras } = run;
  const plan: PortPlan = {
    edge: {
      http: await pick(options.edgePorts?.http ?? FIXED_PORTS.edgeHttp, 'edge.http'),
      https: await pick(options.edgePorts?.https ?? FIXED_PORTS.edgeHttps, 'edge.https'),
      admin: await pick(options.edgePorts?.admin ?? FIXED_PORTS.edgeAdmin, 'edge.admin'),
    },
    authz: [],
    authzMetrics: [],
    services: {},
  };
  for (let i = 0; i < run.replicas; i++) {
    plan.authz.push(await pick(FIXED_PORTS.authz[i] ?? 9000 + i + 1, `authz-${i + 1}`));
    plan.authzMetrics.push(await pick(FIXED_PORTS.authzMetrics[i] ?? 9460 + i + 1, `authz-${i + 1}.metrics`));
  }
  for (const [i, s] of topology.services.entries()) {
    const extra = extras.find((e) => e.name === s.name);
    const n = i + 1;
    plan.services[s.name] = {
      // The auth-service's app port keeps its own name and number (4000; `auth` in port reservations).
      app: extra ? extra.port : s.name === 'auth' ? await pick(FIXED_PORTS.auth, 'auth') : await pick(3000 + n, `${s.name}.app`),
      ...(s.grpc ? { grpc: await pick(3050 + n, `${s.name}.grpc`) } : {}),
      inbound: await pick(3100 + n, `sidecar-${s.name}.inbound`),
      outbound: await pick(3200 + n, `sidecar-${s.name}.outbound`),
      admin: await pick(3300 + n, `sidecar-${s.name}.admin`),
    };
  }
  return plan;
}

/** Fixed ports: every port of the plan must be free on 127.0.0.1. @throws StackStartError (`ports` check failed) listing the taken ones. */
async function checkPortsFree(run: Launcher, plan: PortPlan, tracing: TracingPlan): Promise<void> {
  const { receiverPort } = tracing;
  const wanted: Array<[number, string, string]> = [
    ...(receiverPort !== undefined ? [[receiverPort, 'trace receiver', 'TRACE_RECEIVER_PORT'] as [number, string, string]] : []),
    [plan.edge.http, 'edge HTTP', 'EDGE_PORT'],
    [plan.edge.https, 'edge HTTPS', 'EDGE_HTTPS_PORT'],
    [plan.edge.admin, 'edge admin', 'EDGE_ADMIN_PORT'],
    ...plan.authz.map((port, i): [number, string, string] => [port, `authz-${i + 1}`, '']),
    ...plan.authzMetrics.map((port, i): [number, string, string] => [port, `authz-${i + 1} metrics`, '']),
    ...Object.entries(plan.services).flatMap(([name, s]): Array<[number, string, string]> => [
      ...(run.extras.some((e) => e.name === name) ? [] : [[s.app, `${name} app`, ''] as [number, string, string]]),
      ...(s.grpc !== undefined ? [[s.grpc, `${name} gRPC`, ''] as [number, string, string]] : []),
      [s.inbound, `sidecar-${name} inbound`, ''],
      [s.outbound, `sidecar-${name} outbound`, ''],
      [s.admin, `sidecar-${name} admin`, ''],
    ]),
  ];
  const busy: string[] = [];
  for (const [port, what, envVar] of wanted) {
    if (!(await portFree(port))) busy.push(`${port} (${what}${envVar ? `; set ${envVar}=<port> to use another` : ''})`);
  }
  if (busy.length > 0) {
    throw new StackStartError(
      'ports',
      `these ports are in use on 127.0.0.1: ${busy.join(', ')}.\n  Is a stack already running? 'make down' stops it; 'ss -ltnp' shows who listens.`,
      null,
      { what: 'check failed' },
    );
  }
}

/** The default topology without its services (`services: false`; the auth-service stays), plus the extra upstreams, each exposed at the edge. */
function buildTopology(withServices: boolean, extras: ExtraUpstream[]): Topology {
  const t = defaultTopology();
  if (!withServices) t.services = t.services.filter((s) => s.name === 'auth');
  for (const x of extras) {
    const spec: ServiceSpec = { name: x.name, edgePrefixes: x.edgePrefixes, meshPrefixes: x.edgePrefixes, calls: [] };
    t.services.push(spec);
  }
  return t;
}
