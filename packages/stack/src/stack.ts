/**
 * `startStack()`: the whole jwt-mesh on one machine, started in dependency order, each part
 * waited for until it is ready. `make up` (through the CLI's supervisor) and the end-to-end tests
 * both run exactly this function, with different options (fixed ports and `.run/` for `make up`;
 * free ports, temp folders and a unique Redis prefix for tests).
 *
 * Order: Envoy binary -> certificates -> (tracing on without a collector of yours: the OTLP
 * receiver, src/traces/) -> PostgreSQL (DATABASE_URL or embedded PGlite) ->
 * migrations -> Redis (REDIS_URL, or a local redis-server with the least-privilege ACL users of
 * the core's `redisAclRules`: the auth-service connects as the issuer's user, every verifier as
 * the verifiers' read-only user, passwords generated into `<runDir>/redis/`) -> auth-service ->
 * its sidecar Envoy -> demo users -> authz-service replicas (mTLS) -> services -> their sidecar
 * Envoys -> edge Envoy.
 *
 * Every verifier fetches the JWK Set from the auth sidecar over mTLS, with its own mesh
 * certificate, pinning the `auth` SPIFFE ID (`JWKS_URL` https, `JWKS_CA_FILE`, `JWKS_CERT_FILE`,
 * `JWKS_KEY_FILE`, `JWKS_SERVER_ID`).
 *
 * Failure: the part that did not start is named with its log file and the last lines of that
 * log, everything already started is stopped, and {@link StackStartError} is thrown.
 */
import { createServer } from 'node:net';
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { execFileSync } from 'node:child_process';
import pg from 'pg';
import YAML from 'yaml';
import { randomBytes } from 'node:crypto';
import { parsePolicy, type PolicyRule } from '@jwt-mesh/core';
import { REDIS_ACL_USERS, redisAclFile, redisAclRules } from '@jwt-mesh/core/redis';
import {
  createDevCerts,
  defaultTopology,
  JWKS_PATH,
  MESH_WORKLOADS,
  renderConfigs,
  spiffeId,
  sidecarFileName,
  k8sServiceHost,
  type DevCerts,
  type PortsOverride,
  type ServiceSpec,
  type Topology,
} from '@jwt-mesh/envoy';
import { envoyBinary, REPO_ROOT, startEnvoy, type EnvoyProcess } from '@jwt-mesh/testkit';
import { isPortClash, PORT_ATTEMPTS, reserveFreePort, type PortReserver } from './ports.js';
import { grpcHealth, httpGet, postgresPing, redisPing, waitUntil } from './probe.js';
import { runToCompletion, spawnProcess, tailFile, type ManagedProcess, type ProcessRecord } from './proc.js';
import { writeState, type ServiceUrls, type StackState } from './state.js';
import { DEMO_USERS, seedUsers, type DemoUser } from './users.js';

/** The services of the default topology, in the order they are started (callees first). */
export const SERVICES = ['profile', 'inventory', 'orders'] as const;

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

/** A recording upstream (tests): an HTTP server already listening on 127.0.0.1:`port`, put behind its own sidecar. */
export interface ExtraUpstream {
  /** Workload name (DNS label; also its SPIFFE `sa` and mesh certificate name). */
  name: string;
  /** Its HTTP port on 127.0.0.1. */
  port: number;
  /** Path prefixes the edge routes to it (`path_separated_prefix`, no trailing slash). */
  edgePrefixes: string[];
}

/** The stack's part that runs the built-in OTLP receiver (`make up TRACING=on`). */
export const TRACES_PART = 'traces';

/** Default port of the built-in OTLP receiver in `fixed` mode (OTLP/HTTP's own port). */
export const DEFAULT_TRACE_RECEIVER_PORT = 4318;

/**
 * OpenTelemetry tracing of the whole mesh: every Node process (through `@jwt-mesh/tracing`'s
 * standard `OTEL_*` variables) and every Envoy (its OpenTelemetry tracer, envoy/src/render.ts)
 * export OTLP/HTTP to one place: the collector at {@link StackTracing.endpoint}, or, without one,
 * the stack's own receiver (part {@link TRACES_PART}, `src/traces/`), which `make trace` reads.
 */
export interface StackTracing {
  /**
   * OTLP/HTTP base URL of a collector you run (Jaeger, Tempo, the OpenTelemetry Collector), e.g.
   * `http://127.0.0.1:4318`: the Node processes get it as `OTEL_EXPORTER_OTLP_ENDPOINT`, the
   * proxies export to `<endpoint>/v1/traces`. Plain `http://` only (the proxies' exporter
   * cluster has no TLS). Absent: the built-in receiver is started.
   */
  endpoint?: string;
  /** Percentage (0..100) of requests arriving without a `traceparent` that the edge samples. Default 100. */
  edgeSamplePercent?: number;
  /** The built-in receiver's port with `ports: 'fixed'`. Default {@link DEFAULT_TRACE_RECEIVER_PORT}. */
  receiverPort?: number;
  /** Traces the built-in receiver keeps (the oldest are dropped). Default 200. */
  receiverMaxTraces?: number;
  /** Largest export request the built-in receiver accepts, bytes. Default 4 MiB. */
  receiverMaxBodyBytes?: number;
}

/** Where a collector's OTLP/HTTP base URL sends traces, for the Envoy exporter cluster. */
export interface OtlpCollector {
  /** The base URL without a trailing slash (`OTEL_EXPORTER_OTLP_ENDPOINT`). */
  endpoint: string;
  /** Host for the exporter cluster: an IP literal (`localhost` becomes 127.0.0.1) or a DNS name. */
  host: string;
  port: number;
  /** `<base path>/v1/traces` (OTLP/HTTP: the signal path is appended to the base URL). */
  tracesPath: string;
}

/**
 * Parses an OTLP/HTTP base URL (the value of `OTEL_EXPORTER_OTLP_ENDPOINT`, OTLP exporter spec).
 * @throws Error naming the problem: not a URL, not `http://` (the proxies cannot export over TLS
 *   here), credentials, a query or a fragment in it.
 */
export function otlpCollectorOf(endpoint: string): OtlpCollector {
  let u: URL;
  try {
    u = new URL(endpoint);
  } catch {
    throw new Error(`OTEL_EXPORTER_OTLP_ENDPOINT ${JSON.stringify(endpoint)} is not a URL (e.g. http://127.0.0.1:4318)`);
  }
  if (u.protocol !== 'http:') {
    throw new Error(`OTEL_EXPORTER_OTLP_ENDPOINT must be an http:// URL: the Envoy proxies export over plain HTTP (got ${u.protocol}//)`);
  }
  if (u.username || u.password || u.search || u.hash) throw new Error('OTEL_EXPORTER_OTLP_ENDPOINT must not carry credentials, a query or a fragment');
  const hostname = u.hostname.replace(/^\[|\]$/g, '');
  const base = u.pathname.replace(/\/+$/, '');
  return {
    endpoint: `${u.protocol}//${u.host}${base}`,
    host: hostname === 'localhost' ? '127.0.0.1' : hostname,
    port: u.port ? Number(u.port) : 80,
    tracesPath: `${base}/v1/traces`,
  };
}

/** Which parts to start. Everything by default; the auth-service and its database always. */
export interface PartSelection {
  /** The authz-service replicas. Default true. */
  authz?: boolean;
  /** orders, inventory, profile and their sidecars. Default true. */
  services?: boolean;
  /** The edge Envoy (needs authz). Default true. */
  edge?: boolean;
}

/** Options of {@link startStack}. Paths may be relative to the current directory. */
export interface StackOptions {
  /** Folder for state, logs, certificates, data. Default `<repo>/.run`. */
  runDir?: string;
  /** Log folder: `<part>.log` per process. Default `<runDir>/logs`. */
  logDir?: string;
  /** Dev PKI folder (created or completed with envoy/'s `createDevCerts`). Default `<runDir>/certs`. */
  certDir?: string;
  /** State file for `stopStack` / `make down`. Default `<runDir>/stack.json`; `false` writes none (tests). */
  stateFile?: string | false;
  /**
   * `fixed` (make up: {@link FIXED_PORTS}, the local plan) or `free` (tests: free loopback ports).
   * Default `fixed`. With `free`, each port is held by a socket from the pick until just before the
   * process that binds it is spawned, and a part that still finds its port taken (EADDRINUSE) is
   * started again on new ports, up to {@link PORT_ATTEMPTS} times (the sidecars are not: their
   * outbound port is already in their service's environment; holding their ports covers them).
   */
  ports?: 'fixed' | 'free';
  /** How `free` ports are picked and held (tests inject one to simulate a port taken at bind time). Default {@link reserveFreePort}. */
  reservePort?: PortReserver;
  /** Edge ports in `fixed` mode. Defaults 8080, 8443, 9901. */
  edgePorts?: { http?: number; https?: number; admin?: number };
  /** PostgreSQL URL. When absent an embedded PostgreSQL (PGlite) is started. */
  databaseUrl?: string;
  /** PGlite data folder. Default `<runDir>/pgdata`. */
  pgliteDataDir?: string;
  /**
   * Redis URL, used as given by every process. When absent a local `redis-server` is started on a
   * free port with an ACL file: the `default` user off, the issuer's user for the auth-service and
   * the verifiers' user for authz-service and the services (fresh passwords at every start, in
   * `<runDir>/redis/{issuer,verifier}.password`, mode 0600).
   */
  redisUrl?: string;
  /**
   * Prefix of the Redis keys and of the revocation channel, passed as `REDIS_PREFIX` to the
   * auth-service and every verifier. Default `jwtmesh:`.
   */
  redisPrefix?: string;
  /** Demo users to create. Default {@link DEMO_USERS}. */
  users?: readonly DemoUser[];
  /** Which parts to start. */
  parts?: PartSelection;
  /** Number of authz-service replicas. Default 2. */
  authzReplicas?: number;
  /** Extra environment: for every Node process (`all`), or per kind. Applied last. */
  env?: { all?: Record<string, string>; auth?: Record<string, string>; authz?: Record<string, string>; services?: Record<string, string> };
  /** Rules appended to authz-service/policy.yaml (the file is written to `<runDir>/policy.yaml`). */
  policyRules?: PolicyRule[];
  /** Recording upstreams put behind their own sidecars (tests). */
  extraUpstreams?: ExtraUpstream[];
  /** Progress lines (default: stdout). */
  onProgress?: (line: string) => void;
  /** How long one part may take to become ready, milliseconds. Default 90000. */
  readyTimeoutMs?: number;
  /** The supervisor's record, written into the state file (the CLI sets it). */
  supervisor?: ProcessRecord | null;
  /** OpenTelemetry tracing of every Node process and every proxy (see {@link StackTracing}). Default off. */
  tracing?: StackTracing;
}

/** Thrown when a part does not start; names the part and its log file. */
export class StackStartError extends Error {
  readonly part: string;
  readonly logFile: string | null;
  constructor(part: string, reason: string, logFile: string | null, opts?: { cause?: unknown; what?: string }) {
    const tail = logFile ? tailFile(logFile, 20) : '';
    super(
      `${part} ${opts?.what ?? 'failed to start'}: ${reason}` +
        (logFile ? `\n  log: ${logFile}` : '') +
        (tail ? `\n  last lines of the log:\n${tail.split('\n').map((l) => `    | ${l}`).join('\n')}` : ''),
      opts?.cause === undefined ? undefined : { cause: opts.cause },
    );
    this.name = new.target.name;
    this.part = part;
    this.logFile = logFile;
  }
}

/** One running part (a process) of the stack. */
interface Running {
  record: ProcessRecord;
  running(): boolean;
  kill(sig: NodeJS.Signals): void;
  stop(): Promise<void>;
}

/** A started stack. */
export interface Stack {
  /** Ports, URLs, users, processes (what `.run/stack.json` holds). */
  readonly state: StackState;
  /** The dev PKI (mesh CA, workload certificates, the untrusted CA for negative tests). */
  readonly certs: DevCerts;
  /** The Redis key prefix in use. */
  readonly redisPrefix: string;
  /** Part names, in start order (e.g. `postgres`, `redis`, `auth`, `authz-1`, `authz-2`, `profile`, ..., `sidecar-orders`, `edge`). */
  parts(): string[];
  /** True while the part's process runs. */
  isRunning(part: string): boolean;
  /** The part's log file. */
  logFile(part: string): string;
  /** Stops one part (SIGTERM, then SIGKILL after 10 s). */
  stopPart(part: string): Promise<void>;
  /** Starts a stopped part again with the same settings and waits until it is ready. */
  startPart(part: string): Promise<void>;
  /** Sends a signal to a part's process group (SIGSTOP / SIGCONT to freeze and thaw it). */
  signalPart(part: string, sig: NodeJS.Signals): void;
  /** The Envoy handle of `edge` or `sidecar-<service>` (admin URL, stats). */
  envoy(part: string): EnvoyProcess;
  /** Stops every part, edge first, databases last. Idempotent. */
  stop(): Promise<void>;
}

/** One part as {@link PartBook.launch} starts it: `start` spawns it and resolves once it is ready. */
interface PartDef {
  name: string;
  start(): Promise<Running>;
  /** Reserves new ports for this part after its start failed on a taken port (`free` ports only). */
  repick?: () => Promise<void>;
}

/** Resolves options against the repository and the run folder. */
function paths(opts: StackOptions) {
  const runDir = resolve(opts.runDir ?? join(REPO_ROOT, '.run'));
  return {
    runDir,
    logDir: resolve(opts.logDir ?? join(runDir, 'logs')),
    certDir: resolve(opts.certDir ?? join(runDir, 'certs')),
    stateFile: opts.stateFile === false ? null : resolve(opts.stateFile ?? join(runDir, 'stack.json')),
    pgliteDataDir: resolve(opts.pgliteDataDir ?? join(runDir, 'pgdata')),
  };
}

/** True when nothing listens on 127.0.0.1:`port` (we could bind it). */
function portFree(port: number): Promise<boolean> {
  return new Promise((resolveFree) => {
    const srv = createServer();
    srv.once('error', () => resolveFree(false));
    srv.listen({ host: '127.0.0.1', port, exclusive: true }, () => srv.close(() => resolveFree(true)));
  });
}

const NODE_TSX = ['--import', 'tsx'];

/**
 * Starts the stack. See the module comment for the order and {@link StackOptions} for the knobs.
 * @returns a {@link Stack} handle; its state is also written to the state file (unless disabled).
 * @throws StackStartError naming the part that failed and its log file, after stopping everything
 *   that was started.
 */
export async function startStack(options: StackOptions = {}): Promise<Stack> {
  const run = launcher(options);
  try {
    findEnvoy(run);
    const certs = await makeCerts(run);
    const mesh = await planMesh(run, certs);
    await startTraceReceiver(mesh);
    const databaseUrl = await startPostgres(run);
    await migrate(run, databaseUrl);
    const redis = await startRedis(run);
    const policyFile = writePolicy(run);
    const w: Wiring = { ...mesh, databaseUrl, redis, policyFile };
    await startAuth(w);
    await seedDemoUsers(w);
    await startAuthz(w);
    if (run.selection.services) await startServices(w);
    await startSidecars(w);
    if (run.selection.edge) await startEdge(w);
    await run.releaseAll(); // ports of parts not started (e.g. the edge's with parts.edge false)
    const state = stackState(w);
    run.publish(state);
    return stackHandle(run, state, certs);
  } catch (err) {
    await run.stopAll();
    if (run.paths.stateFile) rmSync(run.paths.stateFile, { force: true });
    if (err instanceof StackStartError) throw err;
    throw new StackStartError('stack', (err as Error).message, null, { cause: err });
  }
}

/** The folders and the state file of one stack, resolved ({@link paths}). */
type StackPaths = ReturnType<typeof paths>;

/** {@link StackOptions} resolved and checked: what every step of {@link startStack} reads. */
interface StackSettings {
  readonly options: StackOptions;
  readonly paths: StackPaths;
  /** Which parts to start, every default applied. */
  readonly selection: Required<PartSelection>;
  /** Number of authz-service replicas (1..8). */
  readonly replicas: number;
  /** The Redis key prefix (`REDIS_PREFIX`). */
  readonly prefix: string;
  readonly users: readonly DemoUser[];
  readonly extras: ExtraUpstream[];
  /** How long one part may take to become ready, milliseconds. */
  readonly readyTimeoutMs: number;
  /** `ports: 'free'`: every port reserved and held; a part whose port is taken at bind time is started again. */
  readonly free: boolean;
  /** Prints one progress line: `stack: <what, padded> <text>`. */
  say(what: string, text: string): void;
  /** A file path as printed: relative to the current directory when inside the repository. */
  rel(file: string): string;
  /** The log file of a part: `<logDir>/<name>.log`. */
  logOf(name: string): string;
}

/**
 * The bookkeeping of one {@link startStack}: the parts started so far, in start order (what is
 * stopped on failure and by {@link Stack.stop}), and the ports held for parts not spawned yet.
 */
interface PartBook {
  readonly running: Map<string, Running>;
  readonly envoys: Map<string, EnvoyProcess>;
  readonly defs: Map<string, PartDef>;
  /** Part names in start order. */
  readonly order: string[];
  /** Reserves a free loopback port for `purpose` and holds it until {@link PartBook.release}. */
  reserve(purpose: string): Promise<number>;
  /** The `fixed` port, or with `free` ports a reserved one. */
  pick(fixed: number, purpose: string): Promise<number>;
  /** Lets go of the holds on `ports` (call right before spawning the process that binds them). */
  release(...ports: Array<number | undefined>): Promise<void>;
  releaseAll(): Promise<void>;
  /** Starts one part (again on new ports after a clash, up to {@link PORT_ATTEMPTS} times) and records it. */
  launch(def: PartDef): Promise<void>;
  /** Starts parts in parallel; waits for every one to finish starting (or fail) before reporting the first failure, so nothing is left half-started. */
  launchAll(list: PartDef[]): Promise<void>;
  /** Stops every started part in reverse start order and lets go of every hold. */
  stopAll(): Promise<void>;
  /** Takes the finished stack's state and writes it, with the processes, to the state file (and again after each later {@link PartBook.launch}). */
  publish(state: StackState): void;
}

/** What every step of {@link startStack} shares: the settings and the bookkeeping. */
type Launcher = StackSettings & PartBook;

/**
 * Resolves and checks the options, makes the log folder and sets up the bookkeeping.
 * @throws Error on options that cannot work together (before anything is started).
 */
function launcher(options: StackOptions): Launcher {
  const p = paths(options);
  const progress = options.onProgress ?? ((line: string) => process.stdout.write(`${line}\n`));
  const say = (what: string, text: string) => progress(`stack: ${what.padEnd(12)} ${text}`);
  const readyTimeoutMs = options.readyTimeoutMs ?? 90_000;
  const parts = { authz: options.parts?.authz ?? true, services: options.parts?.services ?? true, edge: options.parts?.edge ?? true };
  if (parts.edge && !parts.authz) throw new Error('startStack: parts.edge needs parts.authz (the edge fails closed without ext_authz)');
  const replicas = options.authzReplicas ?? 2;
  if (!Number.isInteger(replicas) || replicas < 1 || replicas > 8) throw new Error('startStack: authzReplicas must be 1..8');
  const settings: StackSettings = {
    options,
    paths: p,
    selection: parts,
    replicas,
    prefix: options.redisPrefix ?? 'jwtmesh:',
    users: options.users ?? DEMO_USERS,
    extras: options.extraUpstreams ?? [],
    readyTimeoutMs,
    free: options.ports === 'free',
    say,
    rel: (f: string) => (f.startsWith(REPO_ROOT) ? relative(process.cwd(), f) || '.' : f),
    logOf: (name: string) => join(p.logDir, `${name}.log`),
  };
  mkdirSync(p.logDir, { recursive: true });
  return { ...settings, ...partBook(settings, options.reservePort ?? reserveFreePort) };
}

/** The bookkeeping of {@link PartBook}; port holds come from `reservePort`. */
function partBook(s: StackSettings, reservePort: PortReserver): PartBook {
  const running = new Map<string, Running>();
  const envoys = new Map<string, EnvoyProcess>();
  const defs = new Map<string, PartDef>();
  const order: string[] = [];
  let state: StackState | undefined;

  const saveState = () => {
    if (state && s.paths.stateFile) {
      state.processes = order.filter((n) => running.has(n)).map((n) => (running.get(n) as Running).record);
      writeState(s.paths.stateFile, state);
    }
  };
  // Port holds (ports: 'free'): port -> release of the socket holding it until its process is spawned.
  const holds = new Map<number, () => Promise<void>>();
  const reserve = async (purpose: string): Promise<number> => {
    const r = await reservePort(purpose);
    holds.set(r.port, r.release);
    return r.port;
  };
  const release = async (...ports: Array<number | undefined>): Promise<void> => {
    for (const port of ports) {
      const h = port === undefined ? undefined : holds.get(port);
      if (h) {
        holds.delete(port as number);
        await h();
      }
    }
  };
  const releaseAll = () => release(...holds.keys());
  const launch = async (def: PartDef): Promise<void> => {
    defs.set(def.name, def);
    if (!order.includes(def.name)) order.push(def.name);
    let r: Running;
    for (let attempt = 1; ; attempt++) {
      try {
        r = await def.start();
        break;
      } catch (err) {
        if (!def.repick || attempt >= PORT_ATTEMPTS || !isPortClash(err)) throw err;
        s.say(def.name, `a port was taken at bind time (EADDRINUSE, attempt ${attempt} of ${PORT_ATTEMPTS}); starting it again on new ports`);
        await def.repick();
      }
    }
    running.set(def.name, r);
    saveState();
  };
  return {
    running,
    envoys,
    defs,
    order,
    reserve,
    pick: async (fixed, purpose) => (s.free ? reserve(purpose) : fixed),
    release,
    releaseAll,
    launch,
    async launchAll(list) {
      const results = await Promise.allSettled(list.map((d) => launch(d)));
      const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed) throw failed.reason;
    },
    async stopAll() {
      await releaseAll();
      // Reverse start order: edge, sidecars, services, authz, auth, redis, postgres.
      for (const name of [...order].reverse()) {
        const r = running.get(name);
        if (r) await r.stop().catch(() => undefined);
      }
      running.clear();
    },
    publish(finished) {
      state = finished;
      saveState();
    },
  };
}

/** Step: finds the Envoy binary and prints it with its version. @throws StackStartError (`envoy`) when there is none. */
function findEnvoy(run: Launcher): void {
  let envoyPath: string;
  try {
    envoyPath = envoyBinary();
  } catch (err) {
    throw new StackStartError('envoy', `${(err as Error).message}\n  install it with: make envoy (make up does it for you)`, null);
  }
  let envoyVersion = '';
  try {
    envoyVersion = /(\d+\.\d+\.\d+)\//.exec(execFileSync(envoyPath, ['--version'], { encoding: 'utf8', timeout: 10_000 }))?.[1] ?? '';
  } catch {
    // the version is informational
  }
  run.say('envoy', `${run.rel(envoyPath)}${envoyVersion ? ` (${envoyVersion})` : ''}`);
}

/** Step: the dev PKI, created or completed with envoy/'s `createDevCerts` (the mesh workloads and the extra upstreams). @throws StackStartError (`certificates`). */
async function makeCerts(run: Launcher): Promise<DevCerts> {
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

/** The ports of one service of the topology (its app, gRPC, and its sidecar's inbound, outbound and admin ports). */
interface ServicePorts {
  app: number;
  grpc?: number;
  inbound: number;
  outbound: number;
  admin: number;
}

/** Every port of the stack. A part started again after a port clash gets new ones here (`repick`), so read them at start time. */
interface PortPlan {
  edge: { http: number; https: number; admin: number };
  authz: number[];
  authzMetrics: number[];
  /** By service name, the auth-service (`auth`) and the extra upstreams included. */
  services: Record<string, ServicePorts>;
}

/** Where the traces go: a collector of yours, or the built-in receiver's port (it moves on a port clash). */
interface TracingPlan {
  collector: OtlpCollector | undefined;
  receiverPort: number | undefined;
}

/** The launcher plus what is decided before the first process starts: certificates, topology, ports, tracing. */
interface Mesh extends Launcher {
  readonly certs: DevCerts;
  readonly topology: Topology;
  readonly plan: PortPlan;
  readonly tracing: TracingPlan;
}

/**
 * Step: the topology, every port, and where the traces go; with fixed ports, checks that none is taken.
 * @throws StackStartError (`tracing` is misconfigured, `ports` check failed).
 */
async function planMesh(run: Launcher, certs: DevCerts): Promise<Mesh> {
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

/** Tracing: a collector the user runs, or the built-in receiver on its own port. @throws StackStartError (`tracing` is misconfigured). */
async function planTracing(run: Launcher): Promise<TracingPlan> {
  const { options } = run;
  let collector: OtlpCollector | undefined;
  try {
    collector = options.tracing?.endpoint ? otlpCollectorOf(options.tracing.endpoint) : undefined;
  } catch (err) {
    throw new StackStartError('tracing', (err as Error).message, null, { what: 'is misconfigured' });
  }
  const receiverPort: number | undefined =
    options.tracing && !collector ? await run.pick(options.tracing.receiverPort ?? DEFAULT_TRACE_RECEIVER_PORT, TRACES_PART) : undefined;
  return { collector, receiverPort };
}

/** The collector every process and proxy exports to: yours, or the built-in receiver; undefined with tracing off. */
function tracingCollector(t: TracingPlan): OtlpCollector | undefined {
  return t.collector ?? (t.receiverPort !== undefined ? otlpCollectorOf(`http://127.0.0.1:${t.receiverPort}`) : undefined);
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

/** Step: the built-in OTLP receiver (tracing on, no collector of yours), or a line naming your collector. */
async function startTraceReceiver(m: Mesh): Promise<void> {
  const { tracing } = m;
  if (tracing.receiverPort === undefined) {
    if (tracing.collector) m.say('tracing', `every process and proxy exports OTLP/HTTP to your collector at ${tracing.collector.endpoint}`);
    return;
  }
  const entry = join(REPO_ROOT, 'packages', 'stack', 'src', 'traces', 'main.ts');
  const log = m.logOf(TRACES_PART);
  const t = m.options.tracing as StackTracing;
  await m.launch({
    name: TRACES_PART,
    ...(m.free
      ? {
          repick: async () => {
            tracing.receiverPort = await m.reserve(TRACES_PART);
          },
        }
      : {}),
    start: async () => {
      const port = tracing.receiverPort as number;
      await m.release(port);
      const env: NodeJS.ProcessEnv = { ...process.env };
      delete env['NODE_OPTIONS'];
      const proc = spawnProcess({
        name: TRACES_PART,
        command: process.execPath,
        args: [
          ...NODE_TSX,
          entry,
          '--port',
          String(port),
          ...(t.receiverMaxTraces !== undefined ? ['--max-traces', String(t.receiverMaxTraces)] : []),
          ...(t.receiverMaxBodyBytes !== undefined ? ['--max-body-bytes', String(t.receiverMaxBodyBytes)] : []),
        ],
        cwd: REPO_ROOT,
        env,
        logFile: log,
        markers: [entry],
      });
      await guard(TRACES_PART, log, proc, () =>
        waitUntil(
          'trace receiver /healthz',
          async () => {
            const r = await httpGet(`http://127.0.0.1:${port}/healthz`);
            return r.status === 200 ? true : `GET /healthz: ${r.status || r.body}`;
          },
          { timeoutMs: m.readyTimeoutMs, alive: proc.running },
        ),
      );
      return proc;
    },
  });
  m.say(TRACES_PART, `OTLP receiver http://127.0.0.1:${tracing.receiverPort}/v1/traces, loopback only (log ${m.rel(log)}); make trace prints a request's spans`);
}

/**
 * Step: PostgreSQL. The server of `databaseUrl` when given (it must answer), else an embedded PGlite.
 * @returns the database URL every part uses. @throws StackStartError (`postgres`).
 */
async function startPostgres(run: Launcher): Promise<string> {
  const databaseUrl = run.options.databaseUrl;
  if (!databaseUrl) return startPglite(run);
  const err = await postgresPing(databaseUrl.replace(/\/[^/?]*(\?.*)?$/, '/postgres$1'), 5000);
  if (err) {
    throw new StackStartError(
      'postgres',
      `cannot reach the PostgreSQL server of DATABASE_URL (${redactUrl(databaseUrl)}): ${err}\n  unset DATABASE_URL to use the embedded PostgreSQL (PGlite) instead`,
      null,
    );
  }
  run.say('database', `PostgreSQL at ${redactUrl(databaseUrl)} (DATABASE_URL)`);
  return databaseUrl;
}

/** The embedded PostgreSQL (PGlite, src/pglite.ts) on a port it picks and writes to `<runDir>/pglite.port`. @returns its URL. */
async function startPglite(run: Launcher): Promise<string> {
  const p = run.paths;
  let databaseUrl = '';
  const portFile = join(p.runDir, 'pglite.port');
  rmSync(portFile, { force: true });
  const entry = join(REPO_ROOT, 'packages', 'stack', 'src', 'pglite.ts');
  const log = run.logOf('postgres');
  await run.launch({
    name: 'postgres',
    start: async () => {
      rmSync(portFile, { force: true });
      const proc = spawnProcess({
        name: 'postgres',
        command: process.execPath,
        args: [...NODE_TSX, entry, '--data', p.pgliteDataDir, '--port', '0', '--port-file', portFile],
        cwd: REPO_ROOT,
        env: process.env,
        logFile: log,
        markers: [entry, p.pgliteDataDir],
      });
      await guard('postgres', log, proc, async () => {
        await waitUntil('PGlite', async () => (existsSync(portFile) && readFileSync(portFile, 'utf8').trim() ? true : 'no port yet'), {
          timeoutMs: run.readyTimeoutMs,
          alive: proc.running,
        });
        const port = Number(readFileSync(portFile, 'utf8').trim());
        databaseUrl = `postgresql://postgres@127.0.0.1:${port}/postgres`;
        const url = databaseUrl;
        await waitUntil('PGlite SELECT 1', async () => (await postgresPing(url)) ?? true, { timeoutMs: run.readyTimeoutMs, alive: proc.running });
      });
      return proc;
    },
  });
  run.say('database', `embedded PostgreSQL (PGlite) at ${databaseUrl}, data in ${run.rel(p.pgliteDataDir)} (log ${run.rel(log)})`);
  return databaseUrl;
}

/** Step: the auth-service's migrations (`npm run migrate`), skipped when none is pending. @throws StackStartError (`migrations`). */
async function migrate(run: Launcher, databaseUrl: string): Promise<void> {
  const log = run.logOf('migrate');
  const pending = await pendingMigrations(databaseUrl);
  if (pending === 0) {
    run.say('migrations', 'up to date');
    return;
  }
  const code = await runToCompletion({
    name: 'migrate',
    command: 'npm',
    args: ['run', 'migrate', '-w', '@jwt-mesh/auth-service'],
    cwd: REPO_ROOT,
    env: { ...process.env, DATABASE_URL: databaseUrl },
    logFile: log,
    timeoutMs: 180_000,
  });
  if (code !== 0) throw new StackStartError('migrations', `npm run migrate -w @jwt-mesh/auth-service exited with ${code}`, log);
  run.say('migrations', `applied (log ${run.rel(log)})`);
}

/** The Redis ACL users of a local redis-server: names and password files (what the state file records). */
type RedisAcl = NonNullable<StackState['redis']['acl']>;

/** The Redis every part uses: its URL, and the ACL users when the stack started the server. */
interface StackRedis {
  url: string;
  acl: RedisAcl | undefined;
}

/**
 * Step: Redis. The server of `redisUrl` when given (it must answer PING), else a local
 * redis-server with the least-privilege ACL users. @throws StackStartError (`redis`).
 */
async function startRedis(run: Launcher): Promise<StackRedis> {
  const redisUrl = run.options.redisUrl;
  if (!redisUrl) return startRedisServer(run);
  if (!(await redisPing(redisUrl, 3000))) {
    throw new StackStartError(
      'redis',
      `no answer to PING at REDIS_URL (${redactUrl(redisUrl)})\n  unset REDIS_URL to start a local redis-server instead`,
      null,
    );
  }
  run.say('redis', `${redactUrl(redisUrl)} (REDIS_URL), key prefix "${run.prefix}"`);
  return { url: redisUrl, acl: undefined };
}

/** A local redis-server on a free port, no persistence, with the ACL file of {@link writeRedisAcl}. */
async function startRedisServer(run: Launcher): Promise<StackRedis> {
  const bin = findOnPath('redis-server');
  if (!bin) {
    throw new StackStartError(
      'redis',
      'no REDIS_URL was given and there is no redis-server on PATH.\n' +
        '  Install one (Debian/Ubuntu: sudo apt-get install redis-server; macOS: brew install redis),\n' +
        '  or point REDIS_URL at a running Redis, e.g. REDIS_URL=redis://127.0.0.1:6379/0 make up',
      null,
    );
  }
  const redisDir = join(run.paths.runDir, 'redis');
  mkdirSync(redisDir, { recursive: true });
  const { acl, aclFile, verifierPassword } = writeRedisAcl(run.prefix, redisDir);
  let port = await run.reserve('redis');
  const log = run.logOf('redis');
  await run.launch({
    name: 'redis',
    repick: async () => {
      port = await run.reserve('redis');
    },
    start: async () => {
      await run.release(port);
      const proc = spawnProcess({
        name: 'redis',
        command: bin,
        args: ['--bind', '127.0.0.1', '--port', String(port), '--save', '', '--appendonly', 'no', '--dir', redisDir, '--protected-mode', 'yes', '--aclfile', aclFile],
        cwd: redisDir,
        env: process.env,
        logFile: log,
        // redis-server rewrites its process title to "<path> 127.0.0.1:<port>".
        markers: ['redis-server', `127.0.0.1:${port}`],
      });
      await guard('redis', log, proc, () =>
        waitUntil('redis-server', async () => ((await redisPing(`redis://${REDIS_ACL_USERS.verifier}:${verifierPassword}@127.0.0.1:${port}`)) ? true : 'no PONG'), {
          timeoutMs: run.readyTimeoutMs,
          alive: proc.running,
        }),
      );
      return proc;
    },
  });
  const url = `redis://127.0.0.1:${port}/0`;
  run.say('redis', `local redis-server at ${url} (no persistence; log ${run.rel(log)}), key prefix "${run.prefix}"`);
  run.say('redis', `ACL users ${REDIS_ACL_USERS.issuer} (auth-service) and ${REDIS_ACL_USERS.verifier} (read-only: verifiers), default user off; passwords in ${run.rel(redisDir)}`);
  return { url, acl };
}

/**
 * Least privilege: one ACL user per role (the core's `redisAclRules` for `prefix`), fresh
 * passwords, the default user off. Writes `issuer.password`, `verifier.password` and `users.acl`
 * into `redisDir` (mode 0600).
 */
function writeRedisAcl(prefix: string, redisDir: string): { acl: RedisAcl; aclFile: string; verifierPassword: string } {
  const aclRules = redisAclRules(prefix);
  const secretFile = (name: string, text: string) => {
    const file = join(redisDir, name);
    rmSync(file, { force: true });
    writeFileSync(file, text, { mode: 0o600 });
    return file;
  };
  const passwords = { issuer: randomBytes(32).toString('hex'), verifier: randomBytes(32).toString('hex') };
  const acl: RedisAcl = {
    issuer: { username: REDIS_ACL_USERS.issuer, passwordFile: secretFile('issuer.password', `${passwords.issuer}\n`) },
    verifier: { username: REDIS_ACL_USERS.verifier, passwordFile: secretFile('verifier.password', `${passwords.verifier}\n`) },
  };
  const aclFile = secretFile(
    'users.acl',
    redisAclFile([
      { name: REDIS_ACL_USERS.issuer, password: passwords.issuer, rules: aclRules.issuer },
      { name: REDIS_ACL_USERS.verifier, password: passwords.verifier, rules: aclRules.verifier },
    ]),
  );
  return { acl, aclFile, verifierPassword: passwords.verifier };
}

/**
 * Step: authz-service/policy.yaml with `policyRules` appended, written to `<runDir>/policy.yaml`.
 * @returns its path, or undefined without extra rules (the replicas read their own policy.yaml).
 * @throws Error naming the bad field of a rule.
 */
function writePolicy(run: Launcher): string | undefined {
  const { policyRules } = run.options;
  if (!policyRules || policyRules.length === 0) return undefined;
  const base = YAML.parse(readFileSync(join(REPO_ROOT, 'authz-service', 'policy.yaml'), 'utf8')) as { rules: PolicyRule[] };
  const doc = { ...base, rules: [...base.rules, ...policyRules] };
  parsePolicy(doc); // throws naming the bad field
  const policyFile = join(run.paths.runDir, 'policy.yaml');
  writeFileSync(policyFile, YAML.stringify(doc));
  return policyFile;
}

/** The mesh plus what the Node processes are started with: the database, Redis and the authz policy file. */
interface Wiring extends Mesh {
  readonly databaseUrl: string;
  readonly redis: StackRedis;
  readonly policyFile: string | undefined;
}

// Functions of the auth ports: the auth-service may move to another port if its own was taken.
/** The auth-service's ports (app, and its sidecar's inbound, outbound, admin). */
function authPorts(plan: PortPlan): ServicePorts {
  return plan.services['auth'] as ServicePorts;
}
/** The auth-service's own URL on loopback. */
function authUrl(plan: PortPlan): string {
  return `http://127.0.0.1:${authPorts(plan).app}`;
}
/** The `iss` of its tokens (`JWT_ISSUER`). */
function issuerOf(plan: PortPlan): string {
  return `http://localhost:${authPorts(plan).app}`;
}
/** The `aud` the verifiers expect (`JWT_AUDIENCE`). */
function audienceOf(options: StackOptions): string {
  return options.env?.all?.JWT_AUDIENCE ?? 'jwt-mesh';
}
/** Where verifiers fetch the JWK Set: the auth sidecar, mTLS, the `auth` SPIFFE ID pinned. */
function meshJwksUrl(plan: PortPlan): string {
  return `https://127.0.0.1:${authPorts(plan).inbound}${JWKS_PATH}`;
}

/** The environment shared by every verifier: issuer, audience, the JWK Set over mTLS, Redis (the verifiers' ACL user). */
function verifierEnv(w: Wiring): Record<string, string> {
  const { redis } = w;
  return {
    JWT_ISSUER: issuerOf(w.plan),
    JWT_AUDIENCE: audienceOf(w.options),
    JWKS_URL: meshJwksUrl(w.plan),
    JWKS_CA_FILE: w.certs.ca.cert,
    JWKS_SERVER_ID: spiffeId('auth'),
    REDIS_URL: redis.url,
    ...(redis.acl ? { REDIS_USERNAME: redis.acl.verifier.username, REDIS_PASSWORD_FILE: redis.acl.verifier.passwordFile } : {}),
    REDIS_PREFIX: w.prefix,
    LOG_LEVEL: 'info',
  };
}

/**
 * The OpenTelemetry variables of every Node process when tracing is on (`@jwt-mesh/tracing`
 * reads them): the collector's base URL, a parent-based sampler that never starts a sampled
 * trace on its own (the edge decides; a process follows the incoming traceparent), and a 1 s
 * batch delay so `make trace` sees a request soon after it ends.
 */
function tracingEnv(m: Mesh): Record<string, string> {
  const c = tracingCollector(m.tracing);
  return c ? { OTEL_EXPORTER_OTLP_ENDPOINT: c.endpoint, OTEL_TRACES_SAMPLER: 'parentbased_always_off', OTEL_BSP_SCHEDULE_DELAY: '1000' } : {};
}

/** The environment of a Node part: the launcher's own minus what each part must get explicitly, then the verifiers', tracing's, its `own`, `env.all` and its kind's (`kind`). */
function childEnv(w: Wiring, own: Record<string, string>, kind?: Record<string, string>): NodeJS.ProcessEnv {
  const base: NodeJS.ProcessEnv = { ...process.env };
  // Never leak the launcher's own settings into a part by accident: every part gets what it needs explicitly.
  for (const k of ['DATABASE_URL', 'REDIS_URL', 'REDIS_USERNAME', 'REDIS_PASSWORD_FILE', 'REDIS_TLS_CA_FILE', 'PORT', 'HOST', 'GRPC_PORT', 'UPSTREAM_URL', 'UPSTREAM_AUTHORITY', 'JWKS_CERT_FILE', 'JWKS_KEY_FILE']) delete base[k];
  // Tracing is the stack's decision: the Node processes export where the proxies do, or not at all.
  for (const k of ['OTEL_EXPORTER_OTLP_ENDPOINT', 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT']) delete base[k];
  delete base['NODE_OPTIONS'];
  return { ...base, ...verifierEnv(w), ...tracingEnv(w), ...own, ...(w.options.env?.all ?? {}), ...(kind ?? {}) };
}

/** A Node process of the stack, run with tsx: what {@link nodePart} starts. */
interface NodePartSpec {
  name: string;
  /** Its entry script. */
  entry: string;
  cwd: string;
  /** Its environment, computed at each start (a start after `repick` sees the new ports). */
  env: () => NodeJS.ProcessEnv;
  /** Resolves once the started process is ready; rejects (naming what it waited for) when it is not. */
  ready: (proc: ManagedProcess) => Promise<void>;
  /** Its ports, released from their holds right before the spawn. */
  ports: () => Array<number | undefined>;
  /** Reserves new ports for it (`free` ports only). */
  repick: () => Promise<void>;
}

/** A Node part: spawned with tsx, its log `<name>.log`, waited for with `spec.ready`. */
function nodePart(m: Mesh, spec: NodePartSpec): PartDef {
  const { name } = spec;
  return {
    name,
    ...(m.free ? { repick: spec.repick } : {}),
    start: async () => {
      const log = m.logOf(name);
      await m.release(...spec.ports());
      const proc = spawnProcess({ name, command: process.execPath, args: [...NODE_TSX, spec.entry], cwd: spec.cwd, env: spec.env(), logFile: log, markers: [spec.entry] });
      await guard(name, log, proc, () => spec.ready(proc));
      return proc;
    },
  };
}

/** Waits until `GET url()` answers 200 (while the process runs). */
function httpReady(m: Mesh, what: string, url: () => string): (proc: ManagedProcess) => Promise<void> {
  return (proc) =>
    waitUntil(
      what,
      async () => {
        const r = await httpGet(url());
        return r.status === 200 ? true : `GET ${url()}: ${r.status || r.body}`;
      },
      { timeoutMs: m.readyTimeoutMs, alive: proc.running },
    );
}

/**
 * The Envoy configs (one source: envoy/src/render.ts, local target), by file name. Rendered at
 * each Envoy start, so a part started again on new ports gets a matching config.
 */
function renderAll(m: Mesh): Record<string, string> {
  const { plan } = m;
  const portsOverride: PortsOverride = {
    edge: plan.edge,
    authz: plan.authz.map((port) => ({ host: '127.0.0.1', port })),
    services: Object.fromEntries(Object.entries(plan.services).map(([n, s]) => [n, { ...s, host: '127.0.0.1' }])),
  };
  const c = tracingCollector(m.tracing);
  return renderConfigs(m.topology, 'local', {
    ports: portsOverride,
    certDir: m.paths.certDir,
    bindAddress: '127.0.0.1',
    ...(c
      ? {
          tracing: {
            collector: { host: c.host, port: c.port },
            tracesPath: c.tracesPath,
            ...(m.options.tracing?.edgeSamplePercent !== undefined ? { edgeSamplePercent: m.options.tracing.edgeSamplePercent } : {}),
          },
        }
      : {}),
  });
}

/** An Envoy part: its config from {@link renderAll} (`file`), started with testkit's `startEnvoy`, its log linked as `<name>.log`. */
function envoyPart(m: Mesh, name: string, file: string, portsOf: () => number[], repick?: () => Promise<void>): PartDef {
  const envoyLogDir = join(m.paths.logDir, 'envoy');
  return {
    name,
    ...(m.free && repick ? { repick } : {}),
    start: async () => {
      const config = renderAll(m)[file] as string;
      await m.release(...portsOf());
      let e: EnvoyProcess;
      try {
        e = await startEnvoy({ config, name, logDir: envoyLogDir, readyTimeoutMs: m.readyTimeoutMs, cwd: m.paths.runDir });
      } catch (err) {
        throw new StackStartError(name, (err as Error).message.split('\n')[0] ?? 'Envoy did not start', latestEnvoyLog(envoyLogDir, name));
      }
      m.envoys.set(name, e);
      linkLog(m.logOf(name), m.paths.logDir, e.logFile);
      return envoyRunning(name, e);
    },
  };
}

/** Points `link` (`<logDir>/<part>.log`) at the log file testkit's startEnvoy wrote, for `make logs`. */
function linkLog(link: string, logDir: string, logFile: string): void {
  try {
    if (existsSync(link) || isSymlink(link)) unlinkSync(link);
    symlinkSync(relative(logDir, logFile), link);
  } catch {
    // the symlink is a convenience; the real file is e.logFile
  }
}

/** A started Envoy as a {@link Running} part (its pid alone is signalled: testkit starts it in the launcher's group). */
function envoyRunning(name: string, e: EnvoyProcess): Running {
  let exited = false;
  void e.exited.then(() => (exited = true));
  return {
    record: { name, pid: e.pid, pgid: null, markers: [e.configFile], log: e.logFile },
    running: () => !exited,
    kill: (sig) => {
      if (!exited) process.kill(e.pid, sig);
    },
    stop: async () => {
      if (!exited) process.kill(e.pid, 'SIGCONT');
      await e.stop();
    },
  };
}

/** Step: the auth-service, then its sidecar: the edge and every verifier reach it only through the sidecar (mTLS). */
async function startAuth(w: Wiring): Promise<void> {
  const authDir = join(REPO_ROOT, 'auth-service');
  const ports = () => authPorts(w.plan);
  await w.launch(
    nodePart(w, {
      name: 'auth',
      entry: join(authDir, 'src', 'main.ts'),
      cwd: authDir,
      env: () =>
        childEnv(
          w,
          {
            PORT: String(ports().app),
            HOST: '127.0.0.1',
            DATABASE_URL: w.databaseUrl,
            // The issuer's Redis user (the verifiers' one comes from verifierEnv).
            ...(w.redis.acl ? { REDIS_USERNAME: w.redis.acl.issuer.username, REDIS_PASSWORD_FILE: w.redis.acl.issuer.passwordFile } : {}),
            // The edge on loopback appends the client's address to x-forwarded-for.
            TRUST_PROXY: 'loopback',
          },
          w.options.env?.auth,
        ),
      ready: httpReady(w, 'auth-service /readyz', () => `${authUrl(w.plan)}/readyz`),
      ports: () => [ports().app],
      repick: async () => {
        ports().app = await w.reserve('auth');
      },
    }),
  );
  w.say('auth', `${authUrl(w.plan)} ready (issuer ${issuerOf(w.plan)}; log ${w.rel(w.logOf('auth'))})`);
  await w.launch(envoyPart(w, 'sidecar-auth', sidecarFileName('auth'), () => [ports().inbound, ports().outbound, ports().admin]));
  w.say('sidecar-auth', `mTLS inbound https://127.0.0.1:${ports().inbound} (callers: the edge; verifiers for ${JWKS_PATH} only)`);
}

/** Step: the demo users, through the auth-service. @throws StackStartError (`users`, with the auth-service's log). */
async function seedDemoUsers(w: Wiring): Promise<void> {
  try {
    await seedUsers(authUrl(w.plan), w.databaseUrl, w.users);
  } catch (err) {
    throw new StackStartError('users', (err as Error).message, w.logOf('auth'), { cause: err });
  }
  w.say('users', w.users.map((u) => `${u.username} (${u.scopes.join(' ')})`).join(', '));
}

/** Step: the authz-service replicas (ext_authz over mTLS), started in parallel, each ready when `grpc.health.v1` answers SERVING. */
async function startAuthz(w: Wiring): Promise<void> {
  const grpcTls = {
    ca: readFileSync(w.certs.ca.cert),
    cert: readFileSync((w.certs.workloads['edge'] as { cert: string }).cert),
    key: readFileSync((w.certs.workloads['edge'] as { key: string }).key),
    serverName: k8sServiceHost('authz'),
  };
  if (!w.selection.authz) return;
  await w.launchAll(w.plan.authz.map((_port, i) => authzReplica(w, i, grpcTls)));
  w.say('authz', `${w.replicas} replica(s) SERVING over mTLS: ${w.plan.authz.map((port) => `127.0.0.1:${port}`).join(', ')}`);
}

/** Replica `i` (0-based) of the authz-service, `authz-<i + 1>`; its health is asked over mTLS with `grpcTls` (the edge's certificate). */
function authzReplica(w: Wiring, i: number, grpcTls: Parameters<typeof grpcHealth>[1]): PartDef {
  const { plan, certs } = w;
  const authzDir = join(REPO_ROOT, 'authz-service');
  const authzCert = certs.workloads['authz'] as { cert: string; key: string };
  const name = `authz-${i + 1}`;
  const address = () => `127.0.0.1:${plan.authz[i]}`;
  return nodePart(w, {
    name,
    entry: join(authzDir, 'src', 'main.ts'),
    cwd: authzDir,
    env: () =>
      childEnv(
        w,
        {
          AUTHZ_PORT: String(plan.authz[i]),
          AUTHZ_HOST: '127.0.0.1',
          AUTHZ_TLS_CERT: authzCert.cert,
          AUTHZ_TLS_KEY: authzCert.key,
          AUTHZ_TLS_CA: certs.ca.cert,
          JWKS_CERT_FILE: authzCert.cert,
          JWKS_KEY_FILE: authzCert.key,
          AUTHZ_METRICS_PORT: String(plan.authzMetrics[i]),
          AUTHZ_METRICS_HOST: '127.0.0.1',
          ...(w.policyFile ? { AUTHZ_POLICY_FILE: w.policyFile } : {}),
        },
        w.options.env?.authz,
      ),
    ready: (proc) =>
      waitUntil(
        `${name} gRPC health`,
        async () => {
          const s = await grpcHealth(address(), grpcTls);
          return s === 'SERVING' ? true : s;
        },
        { timeoutMs: w.readyTimeoutMs, alive: proc.running, intervalMs: 300 },
      ),
    ports: () => [plan.authz[i], plan.authzMetrics[i]],
    repick: async () => {
      plan.authz[i] = await w.reserve(name);
      plan.authzMetrics[i] = await w.reserve(`${name}.metrics`);
    },
  });
}

/** The URLs of every service of the topology (the auth-service and the extra upstreams included), from the ports now in the plan. */
function serviceUrlsOf(m: Mesh): Record<string, ServiceUrls> {
  const serviceUrls: Record<string, ServiceUrls> = {};
  for (const s of m.topology.services) {
    const sp = m.plan.services[s.name] as ServicePorts;
    serviceUrls[s.name] = {
      app: `http://127.0.0.1:${sp.app}`,
      ...(sp.grpc !== undefined ? { grpc: `127.0.0.1:${sp.grpc}` } : {}),
      inbound: `https://127.0.0.1:${sp.inbound}`,
      outbound: `http://127.0.0.1:${sp.outbound}`,
      admin: `http://127.0.0.1:${sp.admin}`,
    };
  }
  return serviceUrls;
}

/** Step: orders, inventory and profile ({@link SERVICES}), started in parallel, each ready when `GET /readyz` answers 200. */
async function startServices(w: Wiring): Promise<void> {
  await w.launchAll(SERVICES.map((name) => servicePart(w, name)));
  const serviceUrls = serviceUrlsOf(w);
  w.say('services', SERVICES.map((n) => `${n} ${serviceUrls[n]?.app}${serviceUrls[n]?.grpc ? ` (gRPC ${serviceUrls[n]?.grpc})` : ''}`).join(', '));
}

/** One of {@link SERVICES}: its ports, its upstream (its own sidecar's outbound port), and its own mesh certificate for the JWK Set. */
function servicePart(w: Wiring, name: (typeof SERVICES)[number]): PartDef {
  const { plan, certs } = w;
  const ports = (service: string) => plan.services[service] as ServicePorts;
  /** The service's own mesh certificate, presented to the auth sidecar when it fetches the JWK Set. */
  const jwksClientCert = (service: string): Record<string, string> => {
    const c = certs.workloads[service] as { cert: string; key: string };
    return { JWKS_CERT_FILE: c.cert, JWKS_KEY_FILE: c.key };
  };
  const envFor = (): Record<string, Record<string, string>> => ({
    profile: { PORT: String(ports('profile').app), HOST: '127.0.0.1', GRPC_PORT: String(ports('profile').grpc) },
    inventory: {
      PORT: String(ports('inventory').app),
      HOST: '127.0.0.1',
      UPSTREAM_URL: `http://127.0.0.1:${ports('inventory').outbound}`,
      UPSTREAM_AUTHORITY: 'profile',
    },
    orders: { PORT: String(ports('orders').app), HOST: '127.0.0.1', UPSTREAM_URL: `http://127.0.0.1:${ports('orders').outbound}` },
  });
  const dir = join(REPO_ROOT, 'services', name);
  return nodePart(w, {
    name,
    entry: join(dir, 'src', 'main.ts'),
    cwd: dir,
    env: () => childEnv(w, { ...(envFor()[name] as Record<string, string>), ...jwksClientCert(name) }, w.options.env?.services),
    ready: httpReady(w, `${name} /readyz`, () => `http://127.0.0.1:${ports(name).app}/readyz`),
    ports: () => [ports(name).app, ports(name).grpc],
    repick: async () => {
      const sp = ports(name);
      sp.app = await w.reserve(`${name}.app`);
      if (sp.grpc !== undefined) sp.grpc = await w.reserve(`${name}.grpc`);
    },
  });
}

/** Step: the sidecar Envoys of the services and of the extra upstreams, started in parallel. */
async function startSidecars(w: Wiring): Promise<void> {
  const sidecars = [...(w.selection.services ? SERVICES : []), ...w.extras.map((x) => x.name)];
  if (sidecars.length === 0) return;
  // No repick: the sidecar's outbound port is already in its running service's UPSTREAM_URL,
  // and the callers' sidecars start at the same time; the holds (released right before each
  // Envoy starts, which binds within a few hundred ms) cover the sidecars.
  await w.launchAll(
    sidecars.map((s) => {
      const sp = () => w.plan.services[s] as ServicePorts;
      return envoyPart(w, `sidecar-${s}`, sidecarFileName(s), () => [sp().inbound, sp().outbound, sp().admin]);
    }),
  );
  w.say('sidecars', `${sidecars.join(', ')} (mTLS inbound, loopback outbound; logs ${w.rel(join(w.paths.logDir, 'sidecar-*.log'))})`);
}

/** The edge's URLs: plain HTTP on loopback, HTTPS under the name its dev certificate carries. */
function edgeUrls(plan: PortPlan): { http: string; https: string } {
  return { http: `http://127.0.0.1:${plan.edge.http}`, https: `https://localhost:${plan.edge.https}` };
}

/** Step: the edge Envoy, ready when `GET /healthz` answers 200 through ext_authz. @throws StackStartError (`edge`). */
async function startEdge(w: Wiring): Promise<void> {
  const { plan } = w;
  await w.launch(
    envoyPart(
      w,
      'edge',
      'edge.yaml',
      () => [plan.edge.http, plan.edge.https, plan.edge.admin],
      async () => {
        plan.edge = { http: await w.reserve('edge.http'), https: await w.reserve('edge.https'), admin: await w.reserve('edge.admin') };
      },
    ),
  );
  const edge = edgeUrls(plan);
  await waitUntil(
    'edge /healthz',
    async () => {
      const r = await httpGet(`${edge.http}/healthz`);
      return r.status === 200 ? true : `GET /healthz: ${r.status || r.body}`;
    },
    { timeoutMs: w.readyTimeoutMs },
  ).catch((err: unknown) => {
    throw new StackStartError('edge', (err as Error).message, w.logOf('edge'));
  });
  w.say('edge', `${edge.http} and ${edge.https} ready (admin http://127.0.0.1:${plan.edge.admin})`);
}

/** The state of the started stack (`.run/stack.json`): URLs, database, Redis, issuer, users, tracing; `processes` is filled when it is written. */
function stackState(w: Wiring): StackState {
  const { options, paths: p, plan } = w;
  const edge = edgeUrls(plan);
  const collector = tracingCollector(w.tracing);
  return {
    version: 1,
    startedAt: new Date().toISOString(),
    root: REPO_ROOT,
    runDir: p.runDir,
    logDir: p.logDir,
    certDir: p.certDir,
    supervisor: options.supervisor ?? null,
    processes: [],
    urls: {
      edge: edge.http,
      edgeHttps: edge.https,
      edgeAdmin: `http://127.0.0.1:${plan.edge.admin}`,
      auth: authUrl(plan),
      jwks: `${authUrl(plan)}/.well-known/jwks.json`,
      authzGrpc: plan.authz.map((port) => `127.0.0.1:${port}`),
      authzMetrics: plan.authzMetrics.map((port) => `http://127.0.0.1:${port}/metrics`),
      services: serviceUrlsOf(w),
    },
    database: { url: w.databaseUrl, embedded: !options.databaseUrl, dataDir: options.databaseUrl ? null : p.pgliteDataDir },
    redis: { url: w.redis.url, embedded: !options.redisUrl, prefix: w.prefix, ...(w.redis.acl ? { acl: w.redis.acl } : {}) },
    jwt: { issuer: issuerOf(plan), audience: audienceOf(options) },
    users: w.users.map((u) => ({ ...u })),
    ...(collector
      ? {
          tracing: {
            endpoint: collector.endpoint,
            receiver: w.tracing.receiverPort !== undefined ? `http://127.0.0.1:${w.tracing.receiverPort}` : null,
            edgeSamplePercent: options.tracing?.edgeSamplePercent ?? 100,
          },
        }
      : {}),
    ready: true,
  };
}

/** The {@link Stack} handle over the started parts. */
function stackHandle(run: Launcher, state: StackState, certs: DevCerts): Stack {
  const { running, order } = run;
  const get = (part: string): Running => {
    const r = running.get(part);
    if (!r) throw new Error(`stack: no part "${part}" (parts: ${order.join(', ')})`);
    return r;
  };
  let stopping: Promise<void> | undefined;
  return {
    state,
    certs,
    redisPrefix: run.prefix,
    parts: () => [...order],
    isRunning: (part) => running.get(part)?.running() ?? false,
    logFile: (part) => running.get(part)?.record.log ?? run.logOf(part),
    async stopPart(part) {
      await get(part).stop();
    },
    async startPart(part) {
      const def = run.defs.get(part);
      if (!def) throw new Error(`stack: no part "${part}"`);
      if (running.get(part)?.running()) return;
      await run.launch(def);
    },
    signalPart(part, sig) {
      get(part).kill(sig);
    },
    envoy(part) {
      const e = run.envoys.get(part);
      if (!e) throw new Error(`stack: no Envoy part "${part}"`);
      return e;
    },
    stop() {
      stopping ??= (async () => {
        await run.stopAll();
        if (run.paths.stateFile) rmSync(run.paths.stateFile, { force: true });
      })();
      return stopping;
    },
  };
}

/** Runs `ready`, turning a failure into a {@link StackStartError} for `part` (after stopping `proc`). */
async function guard(part: string, log: string, proc: ManagedProcess, ready: () => Promise<void>): Promise<void> {
  try {
    await ready();
  } catch (err) {
    await proc.stop(3000);
    throw new StackStartError(part, (err as Error).message, log, { cause: err });
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

/**
 * How many migrations in auth-service/prisma/migrations are not recorded as finished in
 * `_prisma_migrations`; -1 when that cannot be told (then the migration tool runs).
 */
async function pendingMigrations(databaseUrl: string): Promise<number> {
  const dir = join(REPO_ROOT, 'auth-service', 'prisma', 'migrations');
  let names: string[];
  try {
    names = readdirSync(dir, { withFileTypes: true })
      .filter((d) => d.isDirectory())
      .map((d) => d.name);
  } catch {
    return -1;
  }
  const client = new pg.Client({ connectionString: databaseUrl, connectionTimeoutMillis: 5000 });
  try {
    await client.connect();
    const r = await client.query<{ migration_name: string }>(
      'SELECT migration_name FROM _prisma_migrations WHERE finished_at IS NOT NULL AND rolled_back_at IS NULL',
    );
    const done = new Set(r.rows.map((x) => x.migration_name));
    return names.filter((n) => !done.has(n)).length;
  } catch {
    return -1;
  } finally {
    await client.end().catch(() => undefined);
  }
}

function findOnPath(bin: string): string | null {
  for (const dir of (process.env['PATH'] ?? '').split(':')) {
    if (dir && existsSync(join(dir, bin))) return join(dir, bin);
  }
  for (const dir of ['/usr/bin', '/usr/local/bin', '/usr/sbin']) if (existsSync(join(dir, bin))) return join(dir, bin);
  return null;
}

function isSymlink(file: string): boolean {
  try {
    return lstatSync(file).isSymbolicLink();
  } catch {
    return false;
  }
}

/** The newest log file testkit's startEnvoy wrote for `name` (its names carry pid and time). */
function latestEnvoyLog(dir: string, name: string): string | null {
  try {
    const files = readdirSync(dir)
      .filter((f) => f.startsWith(`${name}-`) && f.endsWith('.log'))
      .sort();
    return files.length ? join(dir, files[files.length - 1] as string) : null;
  } catch {
    return null;
  }
}

/** A URL with its password replaced by `***`. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(unparseable URL)';
  }
}
