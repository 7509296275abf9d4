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
 * Envoys -> edge Envoy. `startStack` reads as that list: one step per part, each in its module
 * under src/parts/ (launcher.ts: the shared settings and bookkeeping; plan.ts: certificates,
 * topology, ports; tracing.ts, databases.ts, auth.ts, authz.ts, services.ts, edge.ts: the parts;
 * node.ts and envoy.ts: how a Node process and an Envoy are started; handle.ts: what it returns).
 *
 * Every verifier fetches the JWK Set from the auth sidecar over mTLS, with its own mesh
 * certificate, pinning the `auth` SPIFFE ID (`JWKS_URL` https, `JWKS_CA_FILE`, `JWKS_CERT_FILE`,
 * `JWKS_KEY_FILE`, `JWKS_SERVER_ID`).
 *
 * Failure: the part that did not start is named with its log file and the last lines of that
 * log, everything already started is stopped, and {@link StackStartError} is thrown.
 */
import { rmSync } from 'node:fs';
import type { PolicyRule } from '@jwt-mesh/core';
import type { DevCerts } from '@jwt-mesh/envoy';
import type { EnvoyProcess } from '@jwt-mesh/testkit';
import type { PortReserver } from './ports.js';
import type { ProcessRecord } from './proc.js';
import type { StackState } from './state.js';
import type { DemoUser } from './users.js';
import { launcher, StackStartError } from './parts/launcher.js';
import { makeCerts, planMesh } from './parts/plan.js';
import { type StackTracing, startTraceReceiver } from './parts/tracing.js';
import { migrate, startPostgres, startRedis } from './parts/databases.js';
import type { Wiring } from './parts/node.js';
import { findEnvoy } from './parts/envoy.js';
import { seedDemoUsers, startAuth } from './parts/auth.js';
import { startAuthz, writePolicy } from './parts/authz.js';
import { startServices, startSidecars } from './parts/services.js';
import { startEdge } from './parts/edge.js';
import { stackHandle, stackState } from './parts/handle.js';

export { SERVICES } from './parts/services.js';
export { FIXED_PORTS } from './parts/plan.js';
export { TRACES_PART, DEFAULT_TRACE_RECEIVER_PORT, otlpCollectorOf } from './parts/tracing.js';
export type { StackTracing, OtlpCollector } from './parts/tracing.js';
export { StackStartError } from './parts/launcher.js';
export { redactUrl } from './parts/databases.js';

/** A recording upstream (tests): an HTTP server already listening on 127.0.0.1:`port`, put behind its own sidecar. */
export interface ExtraUpstream {
  /** Workload name (DNS label; also its SPIFFE `sa` and mesh certificate name). */
  name: string;
  /** Its HTTP port on 127.0.0.1. */
  port: number;
  /** Path prefixes the edge routes to it (`path_separated_prefix`, no trailing slash). */
  edgePrefixes: string[];
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
