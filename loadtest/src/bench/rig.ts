/**
 * The rig every pass of `make bench` measures: the stack on free ports (`.run/bench`, raised auth
 * rate limits, traced when asked), the shared upstream of modes 1-3, one bench Envoy per mode of
 * ./configs.ts, mode 5's chain without authentication when asked, and a pool of access tokens;
 * started by {@link startRig}, stopped by {@link stopRig}. Also the route every step sends
 * ({@link orderRoute}) and the processes whose CPU belongs to each mode's path.
 */
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { PortsOverride } from '@jwt-mesh/envoy';
import { DEMO_USERS, otlpCollectorOf, spawnProcess, startStack, type ManagedProcess, type Stack } from '@jwt-mesh/stack';
import { startEnvoy, type EnvoyProcess } from '@jwt-mesh/testkit';
import type { RouteSpec } from '../../k6/lib/scenario.js';
import { TokenPool } from '../tokens.js';
import { startChainNoauth, type ChainNoauth } from './chain-noauth.js';
import { benchEdgeConfig, ENVOY_MODES, type EnvoyMode } from './configs.js';
import { LOADTEST_DIR, REPO, type BenchOptions } from './options.js';
import type { Accounted } from './procstat.js';
import type { BenchMode } from './report.js';
import { say } from './results.js';

/** The route every benchmark step sends: view order ord-1001 (the chain in mode 4). */
export function orderRoute(chain: boolean): RouteSpec {
  return { name: 'order-1001', method: 'GET', path: '/api/orders/ord-1001', weight: 1, auth: true, chain, expectStatus: 200 };
}

/** Starts the shared upstream of modes 1-3 as its own process (dies with this one); resolves with its port. */
async function startUpstream(logDir: string): Promise<{ proc: ManagedProcess; port: number }> {
  const entry = join(LOADTEST_DIR, 'src', 'bench', 'upstream.ts');
  const portFile = join(logDir, '..', 'bench-upstream.port');
  rmSync(portFile, { force: true });
  const proc = spawnProcess({
    name: 'bench-upstream',
    command: process.execPath,
    args: ['--import', 'tsx', entry, portFile],
    cwd: REPO,
    env: process.env,
    logFile: join(logDir, 'bench-upstream.log'),
  });
  for (let i = 0; i < 600; i++) {
    if (!proc.running()) throw new Error(`bench upstream exited (log ${join(logDir, 'bench-upstream.log')})`);
    if (existsSync(portFile)) {
      const port = Number(readFileSync(portFile, 'utf8'));
      if (port > 0) return { proc, port };
    }
    await sleep(50);
  }
  await proc.stop(1000);
  throw new Error('bench upstream did not start in 30 s');
}

/** Everything a run starts, so it can all be stopped. */
export interface Rig {
  stack: Stack;
  upstream: { proc: ManagedProcess; port: number };
  envoys: Partial<Record<EnvoyMode, EnvoyProcess>>;
  targets: Record<BenchMode, string>;
  tokens: TokenPool;
  accounted: Accounted[];
  /** The second chain of mode `chain_noauth`, when that mode runs. */
  noauth: ChainNoauth | null;
}

/**
 * Starts the stack (free ports, own run folder, raised auth rate limits), the upstream and the bench Envoys.
 * `edgeSamplePercent`: absent or null, no tracing anywhere (as `make up`); a percentage (0..100), the stack
 * as `make up TRACING=on TRACE_SAMPLE_PERCENT=<it>` (its OTLP receiver, part `traces`, takes
 * every span) and the bench Envoys with the same edge tracer.
 */
export async function startRig(opts: Pick<BenchOptions, 'pool' | 'envoyConcurrency'> & { chainNoauth?: boolean; edgeSamplePercent?: number | null }, extraEnv: { authz?: Record<string, string>; services?: Record<string, string> } = {}): Promise<Rig> {
  const runDir = join(REPO, '.run', 'bench');
  rmSync(join(runDir, 'logs'), { recursive: true, force: true });
  mkdirSync(runDir, { recursive: true });
  const limits = {
    LOGIN_RATE_LIMIT_PER_MIN: '100000',
    LOGIN_USERNAME_RATE_LIMIT_PER_MIN: '100000',
    REFRESH_RATE_LIMIT_PER_MIN: '100000',
    REGISTER_RATE_LIMIT_PER_MIN: '100000',
  };
  say('starting the stack (free ports, .run/bench) ...');
  const stack = await startStack({
    runDir,
    ports: 'free',
    stateFile: join(runDir, 'stack.json'),
    ...(process.env.DATABASE_URL ? { databaseUrl: process.env.DATABASE_URL } : {}),
    ...(process.env.REDIS_URL ? { redisUrl: process.env.REDIS_URL } : {}),
    // The default prefix on purpose: the services read no prefix setting (packages/runtime
    // verifier-env.ts), so with any other prefix they would never see a revocation.
    env: { auth: limits, ...(extraEnv.authz ? { authz: extraEnv.authz } : {}), ...(extraEnv.services ? { services: extraEnv.services } : {}) },
    ...(typeof opts.edgeSamplePercent === 'number' ? { tracing: { edgeSamplePercent: opts.edgeSamplePercent } } : {}),
    onProgress: (line) => say(line),
  });
  const started: { upstream?: { proc: ManagedProcess; port: number }; envoys: Partial<Record<EnvoyMode, EnvoyProcess>>; noauth?: ChainNoauth } = { envoys: {} };
  try {
    const st = stack.state;
    const logDir = join(runDir, 'logs');
    started.upstream = await startUpstream(logDir);
    const ports: PortsOverride = {
      edge: { http: 0, https: 0, admin: 0 },
      authz: st.urls.authzGrpc,
      services: { auth: { inbound: authSidecarPort(st) } },
    };
    const collector = st.tracing ? otlpCollectorOf(st.tracing.endpoint) : null;
    const input = {
      ports,
      certDir: st.certDir,
      upstreamPort: started.upstream.port,
      issuer: st.jwt.issuer,
      audience: st.jwt.audience,
      ...(collector && typeof opts.edgeSamplePercent === 'number'
        ? { tracing: { collector: { host: collector.host, port: collector.port }, tracesPath: collector.tracesPath, edgeSamplePercent: opts.edgeSamplePercent } }
        : {}),
    };
    await Promise.all(
      ENVOY_MODES.map(async (mode) => {
        started.envoys[mode] = await startEnvoy({
          config: benchEdgeConfig(mode, input),
          name: `bench-${mode}`,
          logDir: join(logDir, 'envoy'),
          cwd: runDir,
          concurrency: opts.envoyConcurrency,
        });
      }),
    );
    const targets = { full: st.urls.edge, full_many: st.urls.edge } as Record<BenchMode, string>;
    for (const mode of ENVOY_MODES) {
      const a = await (started.envoys[mode] as EnvoyProcess).listenerAddress('edge_http');
      targets[mode] = `http://127.0.0.1:${a.port}`;
    }
    targets.ext_authz_many = targets.ext_authz;
    if (opts.chainNoauth) {
      say('starting the chain without authentication (bench-only services, their sidecars, an edge without ext_authz) ...');
      started.noauth = await startChainNoauth({ repo: REPO, logDir, runDir, certDir: st.certDir, envoyConcurrency: opts.envoyConcurrency });
      targets.chain_noauth = started.noauth.edgeUrl;
    }
    const alice = DEMO_USERS.find((u) => u.username === 'alice') ?? DEMO_USERS[0];
    if (!alice) throw new Error('no demo user to log in as');
    const tokens = await TokenPool.create({ baseUrl: st.urls.auth, users: [{ username: alice.username, password: alice.password }], size: opts.pool });
    const accounted: Accounted[] = [
      ...st.processes.map((p) => ({ name: p.name, pid: p.pid, pgid: p.pgid })),
      ...ENVOY_MODES.map((m) => ({ name: `bench-envoy-${m}`, pid: (started.envoys[m] as EnvoyProcess).pid })),
      { name: 'bench-upstream', pid: started.upstream.proc.record.pid },
      ...(started.noauth?.accounted ?? []),
    ];
    return { stack, upstream: started.upstream, envoys: started.envoys, targets, tokens, accounted, noauth: started.noauth ?? null };
  } catch (err) {
    await started.noauth?.stop();
    await Promise.all(Object.values(started.envoys).map((e) => e?.stop()));
    await started.upstream?.proc.stop(2000);
    await stack.stop();
    throw err;
  }
}

/** Stops everything {@link startRig} started. */
export async function stopRig(rig: Rig): Promise<void> {
  rig.tokens.close();
  await rig.noauth?.stop();
  await Promise.all(Object.values(rig.envoys).map((e) => e?.stop()));
  await rig.upstream.proc.stop(2000);
  await rig.stack.stop();
}

/** The processes whose CPU belongs to a mode's path (plus the generator, always reported). */
export function pathProcesses(mode: BenchMode, all: readonly Accounted[]): Accounted[] {
  const want: Record<BenchMode, (n: string) => boolean> = {
    none: (n) => n === 'bench-envoy-none' || n === 'bench-upstream',
    jwt_authn: (n) => n === 'bench-envoy-jwt_authn' || n === 'bench-upstream' || n === 'auth',
    ext_authz: (n) => n === 'bench-envoy-ext_authz' || n === 'bench-upstream' || n.startsWith('authz-') || n === 'redis',
    full: (n) => n === 'edge' || n.startsWith('sidecar-') || n.startsWith('authz-') || ['orders', 'inventory', 'profile', 'redis'].includes(n),
    ext_authz_many: (n) => want.ext_authz(n),
    full_many: (n) => want.full(n),
    chain_noauth: (n) => n.startsWith('noauth-'),
  };
  return all.filter((p) => want[mode](p.name));
}

/** The auth sidecar's inbound port: the bench edges reach the auth-service through it, as the stack's edge does. */
export function authSidecarPort(st: Rig['stack']['state']): number {
  return Number(new URL(st.urls.services['auth']?.inbound ?? 'https://127.0.0.1:0').port);
}
