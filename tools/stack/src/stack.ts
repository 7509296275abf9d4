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
  const p = paths(options);
  const progress = options.onProgress ?? ((line: string) => process.stdout.write(`${line}\n`));
  const say = (what: string, text: string) => progress(`stack: ${what.padEnd(12)} ${text}`);
  const readyTimeoutMs = options.readyTimeoutMs ?? 90_000;
  const parts = { authz: options.parts?.authz ?? true, services: options.parts?.services ?? true, edge: options.parts?.edge ?? true };
  if (parts.edge && !parts.authz) throw new Error('startStack: parts.edge needs parts.authz (the edge fails closed without ext_authz)');
  const replicas = options.authzReplicas ?? 2;
  if (!Number.isInteger(replicas) || replicas < 1 || replicas > 8) throw new Error('startStack: authzReplicas must be 1..8');
  const prefix = options.redisPrefix ?? 'jwtmesh:';
  const users = options.users ?? DEMO_USERS;
  const extras = options.extraUpstreams ?? [];
  const rel = (f: string) => (f.startsWith(REPO_ROOT) ? relative(process.cwd(), f) || '.' : f);
  mkdirSync(p.logDir, { recursive: true });
  const logOf = (name: string) => join(p.logDir, `${name}.log`);

  const running = new Map<string, Running>();
  const envoys = new Map<string, EnvoyProcess>();
  const defs = new Map<string, PartDef>();
  const order: string[] = [];
  let state: StackState | undefined;

  const saveState = () => {
    if (state && p.stateFile) {
      state.processes = order.filter((n) => running.has(n)).map((n) => (running.get(n) as Running).record);
      writeState(p.stateFile, state);
    }
  };
  // Port holds (ports: 'free'): port -> release of the socket holding it until its process is spawned.
  const reservePort = options.reservePort ?? reserveFreePort;
  const holds = new Map<number, () => Promise<void>>();
  const reserve = async (purpose: string): Promise<number> => {
    const r = await reservePort(purpose);
    holds.set(r.port, r.release);
    return r.port;
  };
  /** Lets go of the holds on `ports` (call right before spawning the process that binds them). */
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
        say(def.name, `a port was taken at bind time (EADDRINUSE, attempt ${attempt} of ${PORT_ATTEMPTS}); starting it again on new ports`);
        await def.repick();
      }
    }
    running.set(def.name, r);
    saveState();
  };
  /** Starts parts in parallel; waits for every one to finish starting (or fail) before reporting the first failure, so nothing is left half-started. */
  const launchAll = async (list: PartDef[]): Promise<void> => {
    const results = await Promise.allSettled(list.map((d) => launch(d)));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  };
  const stopAll = async () => {
    await releaseAll();
    // Reverse start order: edge, sidecars, services, authz, auth, redis, postgres.
    for (const name of [...order].reverse()) {
      const r = running.get(name);
      if (r) await r.stop().catch(() => undefined);
    }
    running.clear();
  };

  try {
    // ---- Envoy -------------------------------------------------------------------------------
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
    say('envoy', `${rel(envoyPath)}${envoyVersion ? ` (${envoyVersion})` : ''}`);

    // ---- certificates ------------------------------------------------------------------------
    const workloads = [...MESH_WORKLOADS, ...extras.map((e) => e.name)];
    let certs: DevCerts;
    try {
      certs = await createDevCerts({ dir: p.certDir, workloads });
    } catch (err) {
      throw new StackStartError('certificates', (err as Error).message, null, { cause: err });
    }
    say('certificates', `${rel(p.certDir)} (mesh CA and ${workloads.length} SPIFFE workload certificates${certs.created.length ? ', new' : ', reused'})`);

    // ---- ports -------------------------------------------------------------------------------
    const free = options.ports === 'free';
    const pick = async (fixed: number, purpose: string) => (free ? reserve(purpose) : fixed);
    const topology = buildTopology(parts.services, extras);
    const plan = {
      edge: {
        http: await pick(options.edgePorts?.http ?? FIXED_PORTS.edgeHttp, 'edge.http'),
        https: await pick(options.edgePorts?.https ?? FIXED_PORTS.edgeHttps, 'edge.https'),
        admin: await pick(options.edgePorts?.admin ?? FIXED_PORTS.edgeAdmin, 'edge.admin'),
      },
      authz: [] as number[],
      authzMetrics: [] as number[],
      services: {} as Record<string, { app: number; grpc?: number; inbound: number; outbound: number; admin: number }>,
    };
    for (let i = 0; i < replicas; i++) {
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
    // Tracing: a collector the user runs, or the built-in receiver on its own port.
    let collector: OtlpCollector | undefined;
    try {
      collector = options.tracing?.endpoint ? otlpCollectorOf(options.tracing.endpoint) : undefined;
    } catch (err) {
      throw new StackStartError('tracing', (err as Error).message, null, { what: 'is misconfigured' });
    }
    let receiverPort: number | undefined =
      options.tracing && !collector ? await pick(options.tracing.receiverPort ?? DEFAULT_TRACE_RECEIVER_PORT, TRACES_PART) : undefined;
    const tracingCollector = (): OtlpCollector | undefined =>
      collector ?? (receiverPort !== undefined ? otlpCollectorOf(`http://127.0.0.1:${receiverPort}`) : undefined);
    if (!free) {
      const wanted: Array<[number, string, string]> = [
        ...(receiverPort !== undefined ? [[receiverPort, 'trace receiver', 'TRACE_RECEIVER_PORT'] as [number, string, string]] : []),
        [plan.edge.http, 'edge HTTP', 'EDGE_PORT'],
        [plan.edge.https, 'edge HTTPS', 'EDGE_HTTPS_PORT'],
        [plan.edge.admin, 'edge admin', 'EDGE_ADMIN_PORT'],
        ...plan.authz.map((port, i): [number, string, string] => [port, `authz-${i + 1}`, '']),
        ...plan.authzMetrics.map((port, i): [number, string, string] => [port, `authz-${i + 1} metrics`, '']),
        ...Object.entries(plan.services).flatMap(([name, s]): Array<[number, string, string]> => [
          ...(extras.some((e) => e.name === name) ? [] : [[s.app, `${name} app`, ''] as [number, string, string]]),
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

    // ---- trace receiver (tracing on, no collector of yours) ------------------------------------
    if (receiverPort !== undefined) {
      const entry = join(REPO_ROOT, 'tools', 'stack', 'src', 'traces', 'main.ts');
      const log = logOf(TRACES_PART);
      const t = options.tracing as StackTracing;
      await launch({
        name: TRACES_PART,
        ...(free
          ? {
              repick: async () => {
                receiverPort = await reserve(TRACES_PART);
              },
            }
          : {}),
        start: async () => {
          const port = receiverPort as number;
          await release(port);
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
              { timeoutMs: readyTimeoutMs, alive: proc.running },
            ),
          );
          return proc;
        },
      });
      say(TRACES_PART, `OTLP receiver http://127.0.0.1:${receiverPort}/v1/traces, loopback only (log ${rel(log)}); make trace prints a request's spans`);
    } else if (collector) {
      say('tracing', `every process and proxy exports OTLP/HTTP to your collector at ${collector.endpoint}`);
    }

    // Functions of the auth ports: the auth-service may move to another port if its own was taken.
    const authPorts = () => plan.services['auth'] as (typeof plan.services)[string];
    const authUrl = () => `http://127.0.0.1:${authPorts().app}`;
    const issuer = () => `http://localhost:${authPorts().app}`;
    const audience = options.env?.all?.JWT_AUDIENCE ?? 'jwt-mesh';
    const jwksUrl = () => `${authUrl()}/.well-known/jwks.json`;
    /** Where verifiers fetch the JWK Set: the auth sidecar, mTLS, the `auth` SPIFFE ID pinned. */
    const meshJwksUrl = () => `https://127.0.0.1:${authPorts().inbound}${JWKS_PATH}`;

    // ---- PostgreSQL ----------------------------------------------------------------------------
    let databaseUrl = options.databaseUrl;
    if (databaseUrl) {
      const err = await postgresPing(databaseUrl.replace(/\/[^/?]*(\?.*)?$/, '/postgres$1'), 5000);
      if (err) {
        throw new StackStartError(
          'postgres',
          `cannot reach the PostgreSQL server of DATABASE_URL (${redactUrl(databaseUrl)}): ${err}\n  unset DATABASE_URL to use the embedded PostgreSQL (PGlite) instead`,
          null,
        );
      }
      say('database', `PostgreSQL at ${redactUrl(databaseUrl)} (DATABASE_URL)`);
    } else {
      const portFile = join(p.runDir, 'pglite.port');
      rmSync(portFile, { force: true });
      const entry = join(REPO_ROOT, 'tools', 'stack', 'src', 'pglite.ts');
      const log = logOf('postgres');
      await launch({
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
              timeoutMs: readyTimeoutMs,
              alive: proc.running,
            });
            const port = Number(readFileSync(portFile, 'utf8').trim());
            databaseUrl = `postgresql://postgres@127.0.0.1:${port}/postgres`;
            const url = databaseUrl;
            await waitUntil('PGlite SELECT 1', async () => (await postgresPing(url)) ?? true, { timeoutMs: readyTimeoutMs, alive: proc.running });
          });
          return proc;
        },
      });
      say('database', `embedded PostgreSQL (PGlite) at ${databaseUrl}, data in ${rel(p.pgliteDataDir)} (log ${rel(log)})`);
    }
    const dbUrl = databaseUrl as string;

    // ---- migrations ----------------------------------------------------------------------------
    {
      const log = logOf('migrate');
      const pending = await pendingMigrations(dbUrl);
      if (pending === 0) {
        say('migrations', 'up to date');
      } else {
        const code = await runToCompletion({
          name: 'migrate',
          command: 'npm',
          args: ['run', 'migrate', '-w', '@jwt-mesh/auth-service'],
          cwd: REPO_ROOT,
          env: { ...process.env, DATABASE_URL: dbUrl },
          logFile: log,
          timeoutMs: 180_000,
        });
        if (code !== 0) throw new StackStartError('migrations', `npm run migrate -w @jwt-mesh/auth-service exited with ${code}`, log);
        say('migrations', `applied (log ${rel(log)})`);
      }
    }

    // ---- Redis ---------------------------------------------------------------------------------
    let redisUrl = options.redisUrl;
    let redisAcl: NonNullable<StackState['redis']['acl']> | undefined;
    if (redisUrl) {
      if (!(await redisPing(redisUrl, 3000))) {
        throw new StackStartError(
          'redis',
          `no answer to PING at REDIS_URL (${redactUrl(redisUrl)})\n  unset REDIS_URL to start a local redis-server instead`,
          null,
        );
      }
      say('redis', `${redactUrl(redisUrl)} (REDIS_URL), key prefix "${prefix}"`);
    } else {
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
      const redisDir = join(p.runDir, 'redis');
      mkdirSync(redisDir, { recursive: true });
      // Least privilege: one ACL user per role, fresh passwords, the default user off.
      const aclRules = redisAclRules(prefix);
      const secretFile = (name: string, text: string) => {
        const file = join(redisDir, name);
        rmSync(file, { force: true });
        writeFileSync(file, text, { mode: 0o600 });
        return file;
      };
      const passwords = { issuer: randomBytes(32).toString('hex'), verifier: randomBytes(32).toString('hex') };
      redisAcl = {
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
      let port = await reserve('redis');
      const log = logOf('redis');
      await launch({
        name: 'redis',
        repick: async () => {
          port = await reserve('redis');
        },
        start: async () => {
          await release(port);
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
            waitUntil('redis-server', async () => ((await redisPing(`redis://${REDIS_ACL_USERS.verifier}:${passwords.verifier}@127.0.0.1:${port}`)) ? true : 'no PONG'), {
              timeoutMs: readyTimeoutMs,
              alive: proc.running,
            }),
          );
          return proc;
        },
      });
      redisUrl = `redis://127.0.0.1:${port}/0`;
      say('redis', `local redis-server at ${redisUrl} (no persistence; log ${rel(log)}), key prefix "${prefix}"`);
      say('redis', `ACL users ${REDIS_ACL_USERS.issuer} (auth-service) and ${REDIS_ACL_USERS.verifier} (read-only: verifiers), default user off; passwords in ${rel(redisDir)}`);
    }
    const rUrl = redisUrl as string;

    // ---- authz policy --------------------------------------------------------------------------
    let policyFile: string | undefined;
    if (options.policyRules && options.policyRules.length > 0) {
      const base = YAML.parse(readFileSync(join(REPO_ROOT, 'authz-service', 'policy.yaml'), 'utf8')) as { rules: PolicyRule[] };
      const doc = { ...base, rules: [...base.rules, ...options.policyRules] };
      parsePolicy(doc); // throws naming the bad field
      policyFile = join(p.runDir, 'policy.yaml');
      writeFileSync(policyFile, YAML.stringify(doc));
    }

    // ---- environment shared by every verifier ---------------------------------------------------
    const verifierEnv = (): Record<string, string> => ({
      JWT_ISSUER: issuer(),
      JWT_AUDIENCE: audience,
      JWKS_URL: meshJwksUrl(),
      JWKS_CA_FILE: certs.ca.cert,
      JWKS_SERVER_ID: spiffeId('auth'),
      REDIS_URL: rUrl,
      ...(redisAcl ? { REDIS_USERNAME: redisAcl.verifier.username, REDIS_PASSWORD_FILE: redisAcl.verifier.passwordFile } : {}),
      REDIS_PREFIX: prefix,
      LOG_LEVEL: 'info',
    });
    /**
     * The OpenTelemetry variables of every Node process when tracing is on (`@jwt-mesh/tracing`
     * reads them): the collector's base URL, a parent-based sampler that never starts a sampled
     * trace on its own (the edge decides; a process follows the incoming traceparent), and a 1 s
     * batch delay so `make trace` sees a request soon after it ends.
     */
    const tracingEnv = (): Record<string, string> => {
      const c = tracingCollector();
      return c ? { OTEL_EXPORTER_OTLP_ENDPOINT: c.endpoint, OTEL_TRACES_SAMPLER: 'parentbased_always_off', OTEL_BSP_SCHEDULE_DELAY: '1000' } : {};
    };
    const childEnv = (own: Record<string, string>, kind?: Record<string, string>): NodeJS.ProcessEnv => {
      const base: NodeJS.ProcessEnv = { ...process.env };
      // Never leak the launcher's own settings into a part by accident: every part gets what it needs explicitly.
      for (const k of ['DATABASE_URL', 'REDIS_URL', 'REDIS_USERNAME', 'REDIS_PASSWORD_FILE', 'REDIS_TLS_CA_FILE', 'PORT', 'HOST', 'GRPC_PORT', 'UPSTREAM_URL', 'UPSTREAM_AUTHORITY', 'JWKS_CERT_FILE', 'JWKS_KEY_FILE']) delete base[k];
      // Tracing is the stack's decision: the Node processes export where the proxies do, or not at all.
      for (const k of ['OTEL_EXPORTER_OTLP_ENDPOINT', 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT']) delete base[k];
      delete base['NODE_OPTIONS'];
      return { ...base, ...verifierEnv(), ...tracingEnv(), ...own, ...(options.env?.all ?? {}), ...(kind ?? {}) };
    };
    /**
     * A Node part. `env` and `ready` are called at each start, so a start after `repick` uses the
     * new ports; `ports` are released from their holds right before the spawn.
     */
    const nodePart = (
      name: string,
      entry: string,
      cwd: string,
      env: () => NodeJS.ProcessEnv,
      ready: () => (proc: ManagedProcess) => Promise<void>,
      portsOf: () => Array<number | undefined>,
      repick: () => Promise<void>,
    ): PartDef => ({
      name,
      ...(free ? { repick } : {}),
      start: async () => {
        const log = logOf(name);
        await release(...portsOf());
        const proc = spawnProcess({ name, command: process.execPath, args: [...NODE_TSX, entry], cwd, env: env(), logFile: log, markers: [entry] });
        await guard(name, log, proc, () => ready()(proc));
        return proc;
      },
    });
    const httpReady = (what: string, url: () => string) => (proc: ManagedProcess) =>
      waitUntil(
        what,
        async () => {
          const r = await httpGet(url());
          return r.status === 200 ? true : `GET ${url()}: ${r.status || r.body}`;
        },
        { timeoutMs: readyTimeoutMs, alive: proc.running },
      );

    // ---- Envoy configs (one source: envoy/src/render.ts, local target) -----------------------------
    // Rendered at each Envoy start, so a part started again on new ports gets a matching config.
    const renderAll = () => {
      const portsOverride: PortsOverride = {
        edge: plan.edge,
        authz: plan.authz.map((port) => ({ host: '127.0.0.1', port })),
        services: Object.fromEntries(Object.entries(plan.services).map(([n, s]) => [n, { ...s, host: '127.0.0.1' }])),
      };
      const c = tracingCollector();
      return renderConfigs(topology, 'local', {
        ports: portsOverride,
        certDir: p.certDir,
        bindAddress: '127.0.0.1',
        ...(c
          ? {
              tracing: {
                collector: { host: c.host, port: c.port },
                tracesPath: c.tracesPath,
                ...(options.tracing?.edgeSamplePercent !== undefined ? { edgeSamplePercent: options.tracing.edgeSamplePercent } : {}),
              },
            }
          : {}),
      });
    };
    const envoyLogDir = join(p.logDir, 'envoy');
    const envoyPart = (name: string, file: string, portsOf: () => number[], repick?: () => Promise<void>): PartDef => ({
      name,
      ...(free && repick ? { repick } : {}),
      start: async () => {
        const config = renderAll()[file] as string;
        await release(...portsOf());
        let e: EnvoyProcess;
        try {
          e = await startEnvoy({ config, name, logDir: envoyLogDir, readyTimeoutMs, cwd: p.runDir });
        } catch (err) {
          throw new StackStartError(name, (err as Error).message.split('\n')[0] ?? 'Envoy did not start', latestEnvoyLog(envoyLogDir, name));
        }
        envoys.set(name, e);
        const link = logOf(name);
        try {
          if (existsSync(link) || isSymlink(link)) unlinkSync(link);
          symlinkSync(relative(p.logDir, e.logFile), link);
        } catch {
          // the symlink is a convenience; the real file is e.logFile
        }
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
      },
    });
    // ---- auth-service --------------------------------------------------------------------------
    const authDir = join(REPO_ROOT, 'auth-service');
    await launch(
      nodePart(
        'auth',
        join(authDir, 'src', 'main.ts'),
        authDir,
        () =>
          childEnv(
            {
              PORT: String(authPorts().app),
              HOST: '127.0.0.1',
              DATABASE_URL: dbUrl,
              // The issuer's Redis user (the verifiers' one comes from verifierEnv).
              ...(redisAcl ? { REDIS_USERNAME: redisAcl.issuer.username, REDIS_PASSWORD_FILE: redisAcl.issuer.passwordFile } : {}),
              // The edge on loopback appends the client's address to x-forwarded-for.
              TRUST_PROXY: 'loopback',
            },
            options.env?.auth,
          ),
        () => httpReady('auth-service /readyz', () => `${authUrl()}/readyz`),
        () => [authPorts().app],
        async () => {
          authPorts().app = await reserve('auth');
        },
      ),
    );
    say('auth', `${authUrl()} ready (issuer ${issuer()}; log ${rel(logOf('auth'))})`);
    // The edge and every verifier reach the auth-service only through its sidecar (mTLS).
    await launch(envoyPart('sidecar-auth', sidecarFileName('auth'), () => [authPorts().inbound, authPorts().outbound, authPorts().admin]));
    say('sidecar-auth', `mTLS inbound https://127.0.0.1:${authPorts().inbound} (callers: the edge; verifiers for ${JWKS_PATH} only)`);

    // ---- demo users ----------------------------------------------------------------------------
    try {
      await seedUsers(authUrl(), dbUrl, users);
    } catch (err) {
      throw new StackStartError('users', (err as Error).message, logOf('auth'), { cause: err });
    }
    say('users', users.map((u) => `${u.username} (${u.scopes.join(' ')})`).join(', '));

    // ---- authz-service replicas ------------------------------------------------------------------
    const authzDir = join(REPO_ROOT, 'authz-service');
    const grpcTls = {
      ca: readFileSync(certs.ca.cert),
      cert: readFileSync((certs.workloads['edge'] as { cert: string }).cert),
      key: readFileSync((certs.workloads['edge'] as { key: string }).key),
      serverName: k8sServiceHost('authz'),
    };
    if (parts.authz) {
      const authzCert = certs.workloads['authz'] as { cert: string; key: string };
      await launchAll(
        plan.authz.map((_port, i) => {
          const name = `authz-${i + 1}`;
          const address = () => `127.0.0.1:${plan.authz[i]}`;
          return nodePart(
              name,
              join(authzDir, 'src', 'main.ts'),
              authzDir,
              () => childEnv(
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
                  ...(policyFile ? { AUTHZ_POLICY_FILE: policyFile } : {}),
                },
                options.env?.authz,
              ),
              () => (proc) =>
                waitUntil(
                  `${name} gRPC health`,
                  async () => {
                    const s = await grpcHealth(address(), grpcTls);
                    return s === 'SERVING' ? true : s;
                  },
                  { timeoutMs: readyTimeoutMs, alive: proc.running, intervalMs: 300 },
                ),
              () => [plan.authz[i], plan.authzMetrics[i]],
              async () => {
                plan.authz[i] = await reserve(name);
                plan.authzMetrics[i] = await reserve(`${name}.metrics`);
              },
          );
        }),
      );
      say('authz', `${replicas} replica(s) SERVING over mTLS: ${plan.authz.map((port) => `127.0.0.1:${port}`).join(', ')}`);
    }

    // ---- services ------------------------------------------------------------------------------
    const serviceUrls: Record<string, ServiceUrls> = {};
    const setServiceUrls = () => {
      for (const s of topology.services) {
        const sp = plan.services[s.name] as (typeof plan.services)[string];
        serviceUrls[s.name] = {
          app: `http://127.0.0.1:${sp.app}`,
          ...(sp.grpc !== undefined ? { grpc: `127.0.0.1:${sp.grpc}` } : {}),
          inbound: `https://127.0.0.1:${sp.inbound}`,
          outbound: `http://127.0.0.1:${sp.outbound}`,
          admin: `http://127.0.0.1:${sp.admin}`,
        };
      }
    };
    setServiceUrls();
    if (parts.services) {
      const ports = (name: string) => plan.services[name] as (typeof plan.services)[string];
      /** The service's own mesh certificate, presented to the auth sidecar when it fetches the JWK Set. */
      const jwksClientCert = (name: string): Record<string, string> => {
        const c = certs.workloads[name] as { cert: string; key: string };
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
      await launchAll(
        SERVICES.map((name) => {
          const dir = join(REPO_ROOT, 'services', name);
          return nodePart(
            name,
            join(dir, 'src', 'main.ts'),
            dir,
            () => childEnv({ ...(envFor()[name] as Record<string, string>), ...jwksClientCert(name) }, options.env?.services),
            () => httpReady(`${name} /readyz`, () => `http://127.0.0.1:${ports(name).app}/readyz`),
            () => [ports(name).app, ports(name).grpc],
            async () => {
              const sp = ports(name);
              sp.app = await reserve(`${name}.app`);
              if (sp.grpc !== undefined) sp.grpc = await reserve(`${name}.grpc`);
            },
          );
        }),
      );
      setServiceUrls();
      say('services', SERVICES.map((n) => `${n} ${serviceUrls[n]?.app}${serviceUrls[n]?.grpc ? ` (gRPC ${serviceUrls[n]?.grpc})` : ''}`).join(', '));
    }

    const sidecars = [...(parts.services ? SERVICES : []), ...extras.map((x) => x.name)];
    if (sidecars.length > 0) {
      // No repick: the sidecar's outbound port is already in its running service's UPSTREAM_URL,
      // and the callers' sidecars start at the same time; the holds (released right before each
      // Envoy starts, which binds within a few hundred ms) cover the sidecars.
      await launchAll(
        sidecars.map((s) => {
          const sp = () => plan.services[s] as (typeof plan.services)[string];
          return envoyPart(`sidecar-${s}`, sidecarFileName(s), () => [sp().inbound, sp().outbound, sp().admin]);
        }),
      );
      say('sidecars', `${sidecars.join(', ')} (mTLS inbound, loopback outbound; logs ${rel(join(p.logDir, 'sidecar-*.log'))})`);
    }
    if (parts.edge) {
      await launch(
        envoyPart(
          'edge',
          'edge.yaml',
          () => [plan.edge.http, plan.edge.https, plan.edge.admin],
          async () => {
            plan.edge = { http: await reserve('edge.http'), https: await reserve('edge.https'), admin: await reserve('edge.admin') };
          },
        ),
      );
    }
    const edgeHttp = `http://127.0.0.1:${plan.edge.http}`;
    const edgeHttps = `https://localhost:${plan.edge.https}`;
    if (parts.edge) {
      await waitUntil(
        'edge /healthz',
        async () => {
          const r = await httpGet(`${edgeHttp}/healthz`);
          return r.status === 200 ? true : `GET /healthz: ${r.status || r.body}`;
        },
        { timeoutMs: readyTimeoutMs },
      ).catch((err: unknown) => {
        throw new StackStartError('edge', (err as Error).message, logOf('edge'));
      });
      say('edge', `${edgeHttp} and ${edgeHttps} ready (admin http://127.0.0.1:${plan.edge.admin})`);
    }

    await releaseAll(); // ports of parts not started (e.g. the edge's with parts.edge false)
    state = {
      version: 1,
      startedAt: new Date().toISOString(),
      root: REPO_ROOT,
      runDir: p.runDir,
      logDir: p.logDir,
      certDir: p.certDir,
      supervisor: options.supervisor ?? null,
      processes: [],
      urls: {
        edge: edgeHttp,
        edgeHttps,
        edgeAdmin: `http://127.0.0.1:${plan.edge.admin}`,
        auth: authUrl(),
        jwks: jwksUrl(),
        authzGrpc: plan.authz.map((port) => `127.0.0.1:${port}`),
        authzMetrics: plan.authzMetrics.map((port) => `http://127.0.0.1:${port}/metrics`),
        services: serviceUrls,
      },
      database: { url: dbUrl, embedded: !options.databaseUrl, dataDir: options.databaseUrl ? null : p.pgliteDataDir },
      redis: { url: rUrl, embedded: !options.redisUrl, prefix, ...(redisAcl ? { acl: redisAcl } : {}) },
      jwt: { issuer: issuer(), audience },
      users: users.map((u) => ({ ...u })),
      ...(tracingCollector()
        ? {
            tracing: {
              endpoint: (tracingCollector() as OtlpCollector).endpoint,
              receiver: receiverPort !== undefined ? `http://127.0.0.1:${receiverPort}` : null,
              edgeSamplePercent: options.tracing?.edgeSamplePercent ?? 100,
            },
          }
        : {}),
      ready: true,
    };
    saveState();
    const finalState = state;
    const finalCerts = certs;

    const get = (part: string): Running => {
      const r = running.get(part);
      if (!r) throw new Error(`stack: no part "${part}" (parts: ${order.join(', ')})`);
      return r;
    };
    let stopping: Promise<void> | undefined;
    return {
      state: finalState,
      certs: finalCerts,
      redisPrefix: prefix,
      parts: () => [...order],
      isRunning: (part) => running.get(part)?.running() ?? false,
      logFile: (part) => running.get(part)?.record.log ?? logOf(part),
      async stopPart(part) {
        await get(part).stop();
      },
      async startPart(part) {
        const def = defs.get(part);
        if (!def) throw new Error(`stack: no part "${part}"`);
        if (running.get(part)?.running()) return;
        await launch(def);
      },
      signalPart(part, sig) {
        get(part).kill(sig);
      },
      envoy(part) {
        const e = envoys.get(part);
        if (!e) throw new Error(`stack: no Envoy part "${part}"`);
        return e;
      },
      stop() {
        stopping ??= (async () => {
          await stopAll();
          if (p.stateFile) rmSync(p.stateFile, { force: true });
        })();
        return stopping;
      },
    };
  } catch (err) {
    await stopAll();
    if (p.stateFile) rmSync(p.stateFile, { force: true });
    if (err instanceof StackStartError) throw err;
    throw new StackStartError('stack', (err as Error).message, null, { cause: err });
  }
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
