/**
 * `make bench`: one run, side by side, on this machine, with the same Envoy binary and the same
 * upstream:
 *   1. no authentication (the floor);
 *   2. Envoy's native jwt_authn with the auth service's JWK Set (cannot revoke);
 *   3. jwt-mesh ext_authz (verification + revocation + route policy);
 *   4. the full path: ext_authz at the edge and local verification in orders -> inventory -> profile.
 * For each: a grid of arrival rates, then the capacity at the SLO (p99 < 200 ms, no failed
 * request), the step at half of mode 1's capacity, CPU per request by process; then the
 * revocation-propagation figure. Writes loadtest/results/bench-latest.{json,md} and the table in
 * loadtest/README.md. `--profile` instead runs the CPU-profile pass (see ./profile.ts);
 * `--tracing <list>` the tracing-cost comparison (see ./tracing-cost.ts).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { cpus, loadavg, platform, release, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { k8sServiceHost, type PortsOverride } from '@jwt-mesh/envoy';
import { DEMO_USERS, otlpCollectorOf, spawnProcess, startStack, type ManagedProcess, type Stack } from '@jwt-mesh/stack';
import { envoyBinary, startEnvoy, type EnvoyProcess } from '@jwt-mesh/testkit';
import { request } from 'undici';
import { z } from 'zod';
import type { RouteSpec } from '../../k6/lib/scenario.js';
import { runLoad } from '../runner.js';
import { TokenPool, login, refreshTokens } from '../tokens.js';
import { benchEdgeConfig, ENVOY_MODES, filterNames, type EnvoyMode } from './configs.js';
import { findCapacity } from './capacity.js';
import { cpuPerRequest, cpuSnapshot, foreignCores, machineBusyMs, type Accounted } from './procstat.js';
import { authzVerifier, httpVerifier, propagationTrial, summarisePropagation, type PropagationTrial, type Verifier } from './propagation.js';
import { evaluateAims, MANY_TOKEN_MODES, MODE_LABELS, MODES, renderMarkdown, type BenchMode, type BenchResult, type ModeResult, type RunMeta, type StepResult } from './report.js';
import { runProfile } from './profile.js';
import { runGeneratorCost } from './generator-cost.js';
import { rawRs256PerSec } from './machine.js';
import { createManyTokens, type ManyTokens } from './many-tokens.js';
import { startChainNoauth, type ChainNoauth } from './chain-noauth.js';
import { runTracingCost } from './tracing-cost.js';
import { parseTracingSettings, TRACING_MODES, type TracingSetting } from './tracing-report.js';
import type { TokenSource } from '../runner.js';

const here = dirname(fileURLToPath(import.meta.url));
export const LOADTEST_DIR = resolve(here, '..', '..');
const REPO = resolve(LOADTEST_DIR, '..');

export const HELP = `make bench [BENCH_ARGS="..."]  /  npm run bench -w @jwt-mesh/loadtest -- [options]

Side-by-side benchmark on one machine, open model, p99 < 200 ms SLO; capacity search;
revocation propagation. Loopback only. Prints the machine's raw RS256 rate (node:crypto
verifications per second on one core) beside the figures. Modes:
  none            1. the edge without authentication, one plain upstream (the floor)
  jwt_authn       2. Envoy's native jwt_authn, same upstream
  ext_authz       3. jwt-mesh ext_authz (both authz replicas over mTLS), same upstream
  ext_authz_many  3m. mode 3 with --many-tokens distinct tokens (cold verification, revocation cache misses)
  chain_noauth    5. the same edge, sidecars and services with authentication off at every hop
                     (edge without ext_authz; bench-only service entry point that verifies nothing)
  full            4. the full path: edge ext_authz, orders -> inventory -> profile each verifying
  full_many       4m. mode 4 with --many-tokens distinct tokens

Options:
  --modes <list>            modes to run (default: all of the above)
  --rates <list>            grid of arrival rates, req/s (default 100,200,400,800,1600)
  --trial-sec <s>           measured seconds per step (default 6)
  --warmup-sec <s>          warm-up per mode at the lowest rate (default 2)
  --search-budget-sec <s>   capacity search time per mode (default 70; 0 = no search)
  --max-rate <n>            never offer more than this (default 12000)
  --pool <n>                sessions (distinct tokens) in the pool (default 16)
  --many-tokens <n>         distinct tokens of modes ext_authz_many and full_many (default 1000)
  --many-families <n>       logins those tokens come from, the rest by refresh grants (default 20)
  --connections <n>         keep-alive connections per target (default 64)
  --propagation-trials <n>  revocation trials (default 50; 0 = skip)
  --envoy-concurrency <n>   worker threads of the bench Envoys (default 1, as the stack's)
  --foreign-max-cores <x>   re-measure a failing step when other processes used more CPU than this (default 0.25)
  --quick                   3 s steps, rates 100,400,1600, 25 s search, 20 propagation trials
  --out <dir>               results folder (default loadtest/results)
  --no-readme               do not update the results table in loadtest/README.md
  --generator-cost          instead: CPU per request of the generator, the Node runner against k6
                            (constant-arrival-rate), against mode 1 at --generator-rates (k6 as
                            scripts/k6-bin.sh finds it: K6_BIN, else k6 on PATH, else make k6's venv)
  --generator-rates <list>  rates of --generator-cost, req/s (default 1000,3000)
  --profile                 instead: CPU-profile authz-service and the services under load (see README)
  --profile-rate <n>        arrival rate of the profile pass through mode 3 (default 600)
  --profile-full-rate <n>   arrival rate of the profile pass through mode 4 (default 150)
  --profile-low-rate <n>    arrival rate of the low-rate profile pass through mode 4 (default 20; 0 = skip)
  --profile-sec <s>         seconds per mode of the profile pass (default 20)
  --tracing <list>          instead: what OpenTelemetry tracing costs. Runs --modes (here ext_authz
                            and/or full; default both) once per setting, one rig per setting, in
                            the order given: off (no tracer, no OTLP endpoint: the Node SDK is not
                            loaded) or a percentage 0..100 of requests the edge samples (every
                            sidecar and Node process follows it), the spans going to the stack's
                            OTLP receiver. Per setting and mode: spans received per request, the
                            capacity at the SLO, p50/p99 and CPU ms per request by process at
                            --rates (default here 100,400), the receiver's CPU apart from the
                            path's. E.g. --tracing off,10,100. Writes results/tracing-latest.{json,md}
                            and the tracing table in loadtest/README.md (unless --no-readme).
                            With --profile: one percentage; the profile pass on a rig traced at it
                            (results/profile-tracing-latest.{md,json})
  -h, --help                this text
`;

const csvNumbers = z
  .string()
  .regex(/^\d+(\.\d+)?(,\d+(\.\d+)?)*$/, 'a comma-separated list of numbers')
  .transform((s) => s.split(',').map(Number));
const optsSchema = z.object({
  modes: z
    .string()
    .transform((s) => s.split(',').map((x) => x.trim()))
    .pipe(z.array(z.enum(MODES)).min(1)),
  rates: csvNumbers.pipe(z.array(z.number().min(1).max(100_000)).min(1)),
  trialSec: z.coerce.number().min(1).max(120),
  warmupSec: z.coerce.number().min(0).max(60),
  searchBudgetSec: z.coerce.number().min(0).max(1800),
  maxRate: z.coerce.number().min(10).max(100_000),
  pool: z.coerce.number().int().min(1).max(500),
  manyTokens: z.coerce.number().int().min(1).max(20_000),
  manyFamilies: z.coerce.number().int().min(1).max(500),
  connections: z.coerce.number().int().min(1).max(4096),
  propagationTrials: z.coerce.number().int().min(0).max(1000),
  envoyConcurrency: z.coerce.number().int().min(1).max(64),
  foreignMaxCores: z.coerce.number().min(0).max(64),
  out: z.string().min(1),
  readme: z.boolean(),
  profile: z.boolean(),
  generatorCost: z.boolean(),
  generatorRates: csvNumbers.pipe(z.array(z.number().min(1).max(100_000)).min(1)),
  profileRate: z.coerce.number().min(1).max(100_000),
  profileFullRate: z.coerce.number().min(1).max(100_000),
  profileLowRate: z.coerce.number().min(0).max(100_000),
  profileSec: z.coerce.number().min(1).max(600),
  tracing: z.array(z.union([z.literal('off'), z.number().min(0).max(100)])).min(1).nullable(),
});
export type BenchOptions = z.infer<typeof optsSchema>;

/** Parses the command line. @returns the options or 'help'. @throws Error naming the bad option. */
export function parseBenchArgs(argv: string[]): BenchOptions | 'help' {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      modes: { type: 'string' },
      rates: { type: 'string' },
      'trial-sec': { type: 'string' },
      'warmup-sec': { type: 'string' },
      'search-budget-sec': { type: 'string' },
      'max-rate': { type: 'string' },
      pool: { type: 'string' },
      'many-tokens': { type: 'string' },
      'many-families': { type: 'string' },
      connections: { type: 'string' },
      'propagation-trials': { type: 'string' },
      'envoy-concurrency': { type: 'string' },
      'foreign-max-cores': { type: 'string' },
      quick: { type: 'boolean' },
      out: { type: 'string' },
      'no-readme': { type: 'boolean' },
      profile: { type: 'boolean' },
      'generator-cost': { type: 'boolean' },
      'generator-rates': { type: 'string' },
      'profile-rate': { type: 'string' },
      'profile-full-rate': { type: 'string' },
      'profile-low-rate': { type: 'string' },
      'profile-sec': { type: 'string' },
      tracing: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) return 'help';
  const q = values.quick === true;
  // --tracing: validated first, so that its message (not a mode's) names what is wrong.
  const tracing: TracingSetting[] | null = values.tracing !== undefined ? parseTracingSettings(values.tracing) : null;
  if (tracing && values['generator-cost']) throw new Error('--tracing: not with --generator-cost');
  if (tracing && values.profile && (tracing.length !== 1 || tracing[0] === 'off')) {
    throw new Error('--tracing: with --profile, one sampling percentage (e.g. --profile --tracing 100): the profile pass runs one rig');
  }
  const raw = {
    modes: values.modes ?? (tracing ? TRACING_MODES.join(',') : MODES.join(',')),
    rates: values.rates ?? (tracing ? '100,400' : q ? '100,400,1600' : '100,200,400,800,1600'),
    trialSec: values['trial-sec'] ?? (q ? '3' : '6'),
    warmupSec: values['warmup-sec'] ?? (q ? '1' : '2'),
    searchBudgetSec: values['search-budget-sec'] ?? (q ? '25' : '70'),
    maxRate: values['max-rate'] ?? '12000',
    pool: values.pool ?? '16',
    manyTokens: values['many-tokens'] ?? '1000',
    manyFamilies: values['many-families'] ?? '20',
    connections: values.connections ?? '64',
    propagationTrials: values['propagation-trials'] ?? (q ? '20' : '50'),
    envoyConcurrency: values['envoy-concurrency'] ?? '1',
    foreignMaxCores: values['foreign-max-cores'] ?? '0.25',
    out: values.out ?? join(LOADTEST_DIR, 'results'),
    readme: values['no-readme'] !== true,
    profile: values.profile === true,
    generatorCost: values['generator-cost'] === true,
    generatorRates: values['generator-rates'] ?? '1000,3000',
    profileRate: values['profile-rate'] ?? '600',
    profileFullRate: values['profile-full-rate'] ?? '150',
    profileLowRate: values['profile-low-rate'] ?? '20',
    profileSec: values['profile-sec'] ?? '20',
    tracing,
  };
  const r = optsSchema.safeParse(raw);
  if (!r.success) {
    const i = r.error.issues[0];
    const key = String(i?.path[0] ?? 'options').replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
    throw new Error(`--${key}: ${i?.message ?? 'invalid'}`);
  }
  if (tracing && !r.data.profile) {
    const other = r.data.modes.filter((m) => !(TRACING_MODES as readonly string[]).includes(m));
    if (other.length > 0) throw new Error(`--modes: with --tracing only ${TRACING_MODES.join(' and ')} (the modes whose edge is traced), not ${other.join(', ')}`);
  }
  return r.data;
}

const say = (line: string): void => {
  process.stdout.write(`bench: ${line}\n`);
};

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

async function statusOf(url: string, token: string | null): Promise<number> {
  const res = await request(url, { headers: token ? { authorization: `Bearer ${token}` } : {}, signal: AbortSignal.timeout(10_000) });
  await res.body.dump();
  return res.statusCode;
}

function versionOf(pkg: string, from: string): string {
  try {
    const req = createRequire(join(from, 'package.json'));
    return (JSON.parse(readFileSync(req.resolve(`${pkg}/package.json`), 'utf8')) as { version: string }).version;
  } catch {
    return '?';
  }
}

/** Versions of everything on the measured path. */
export function collectVersions(): Record<string, string> {
  let envoy = '?';
  try {
    envoy = /(\d+\.\d+\.\d+)\//.exec(execFileSync(envoyBinary(), ['--version'], { encoding: 'utf8', timeout: 10_000 }))?.[1] ?? '?';
  } catch {
    // reported as '?'
  }
  return {
    node: process.version,
    envoy,
    '@grpc/grpc-js': versionOf('@grpc/grpc-js', join(REPO, 'authz-service')),
    fastify: versionOf('fastify', join(REPO, 'services', 'orders')),
    jose: versionOf('jose', join(REPO, 'packages', 'core')),
    ioredis: versionOf('ioredis', join(REPO, 'packages', 'core')),
    pino: versionOf('pino', join(REPO, 'authz-service')),
    undici: versionOf('undici', LOADTEST_DIR),
    'hdr-histogram-js': versionOf('hdr-histogram-js', LOADTEST_DIR),
    'jwt-mesh': (JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string }).version,
  };
}

/**
 * The latency and answer figures of one step, from the runner's result `r` at `rate` (req/s
 * offered): achieved rate (req/s), p50/p90/p99/max (ms, from the scheduled send), failures by
 * kind, the generator's lag p99 (ms), and `pass`: the runner's SLO verdict and at least 95 % of
 * the offered rate achieved.
 */
export function stepFigures(rate: number, r: Awaited<ReturnType<typeof runLoad>>): Omit<StepResult, 'cpuMsPerRequest' | 'attempts' | 'foreignCores'> {
  return {
    rate,
    achieved: r.achievedRate,
    p50: r.latency.p50,
    p90: r.latency.p90,
    p99: r.latency.p99,
    max: r.latency.max,
    failed: r.failed,
    nonOk: r.nonOk,
    errors: r.errors,
    dropped: r.dropped,
    lagP99: r.lag.p99,
    pass: r.pass && r.achievedRate >= 0.95 * rate,
  };
}

/**
 * The machine and run facts every bench result starts with ({@link RunMeta}): the date, the run's
 * wall time from `t0` (epoch ms) in seconds, the host, the load average before (`loadBefore`,
 * `os.loadavg()` at the start) and now, the raw RS256 rate (verifications/s on one core), `uptime`
 * before and after, package versions and the git commit.
 */
export function runMeta(input: { t0: number; loadBefore: number[]; rawRs256PerSec: number; uptimeBefore: string; uptimeAfter: string }): RunMeta & { rawRs256PerSec: number } {
  const c = cpus();
  return {
    date: new Date().toISOString(),
    durationSec: (Date.now() - input.t0) / 1000,
    host: { cores: c.length, cpuModel: c[0]?.model.trim() ?? '?', memGiB: Math.round(totalmem() / 2 ** 30), platform: `${platform()} ${release()}` },
    loadavgBefore: input.loadBefore.map((x) => Math.round(x * 100) / 100),
    loadavgAfter: loadavg().map((x) => Math.round(x * 100) / 100),
    rawRs256PerSec: input.rawRs256PerSec,
    uptimeBefore: input.uptimeBefore,
    uptimeAfter: input.uptimeAfter,
    versions: collectVersions(),
    git: gitInfo(),
  };
}

/** The commit measured, and whether the working tree had uncommitted changes. */
export function gitInfo(): { commit: string; dirty: boolean } {
  try {
    const commit = execFileSync('git', ['rev-parse', 'HEAD'], { cwd: REPO, encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], { cwd: REPO, encoding: 'utf8' }).trim() !== '';
    return { commit, dirty };
  } catch {
    return { commit: 'unknown', dirty: false };
  }
}

/** `uptime`'s line (load averages), or the load averages alone where there is no `uptime`. */
export function uptime(): string {
  try {
    return execFileSync('uptime', { encoding: 'utf8' }).trim();
  } catch {
    return `load average: ${loadavg().map((x) => x.toFixed(2)).join(', ')}`;
  }
}

/**
 * Replaces the block between `<!-- <marker>:start -->` and `<!-- <marker>:end -->` in
 * loadtest/README.md with `markdown` (`bench`: the results table; `bench-tracing`: the tracing one).
 * @returns false (and writes nothing) when the file or either marker is missing
 */
export function updateReadme(readmePath: string, markdown: string, marker = 'bench'): boolean {
  if (!existsSync(readmePath)) return false;
  const text = readFileSync(readmePath, 'utf8');
  const start = `<!-- ${marker}:start -->`;
  const end = `<!-- ${marker}:end -->`;
  const i = text.indexOf(start);
  const j = text.indexOf(end);
  if (i < 0 || j < i) return false;
  writeFileSync(readmePath, `${text.slice(0, i + start.length)}\n${markdown}\n${text.slice(j)}`);
  return true;
}

/** Everything a run starts, so it can all be stopped. */
interface Rig {
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
    // The default prefix on purpose: the services read no prefix setting (services/kit
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

async function runBench(opts: BenchOptions): Promise<number> {
  const t0 = Date.now();
  const uptimeBefore = uptime();
  const loadBefore = loadavg();
  say(`uptime before: ${uptimeBefore}`);
  if (loadBefore[0] !== undefined && loadBefore[0] > cpus().length * 0.5) {
    say(`WARNING: the 1-minute load average (${loadBefore[0].toFixed(2)}) is above half the core count: figures will be noisy`);
  }
  const rawRs256 = rawRs256PerSec();
  say(`raw RS256 (node:crypto verify, one core): ${rawRs256.toLocaleString('en-US')}/s`);
  const rig = await startRig({ ...opts, chainNoauth: opts.modes.includes('chain_noauth') });
  // Modes 3m and 4m: fresh distinct tokens at the start of each (access tokens live 300 s).
  let many: ManyTokens | null = null;
  const freshMany = async (): Promise<ManyTokens> => {
    const alice = DEMO_USERS.find((u) => u.username === 'alice') ?? (DEMO_USERS[0] as (typeof DEMO_USERS)[number]);
    const t = Date.now();
    many = await createManyTokens({ baseUrl: rig.stack.state.urls.auth, user: { username: alice.username, password: alice.password }, count: opts.manyTokens, families: opts.manyFamilies });
    say(`${many.tokens.length} distinct tokens from ${many.families} logins and their refreshes in ${((Date.now() - t) / 1000).toFixed(1)} s`);
    return many;
  };
  const tokensFor = (mode: BenchMode): TokenSource => (MANY_TOKEN_MODES.has(mode) && many ? many : rig.tokens);
  const modes: ModeResult[] = [];
  let propagation: BenchResult['propagation'] = null;
  let halfRate: number | null = null;
  const stepSec = opts.trialSec;
  try {
    // Is authentication enforced where it should be?
    const enforced: Record<BenchMode, { withToken: number; withoutToken: number }> = {} as never;
    for (const mode of opts.modes) {
      const url = `${rig.targets[mode]}/api/orders/ord-1001`;
      enforced[mode] = { withToken: await statusOf(url, rig.tokens.accessToken(0)), withoutToken: await statusOf(url, null) };
      if (mode === 'chain_noauth' && enforced[mode].withoutToken !== 200) throw new Error(`chain_noauth: a request without a token got ${enforced[mode].withoutToken}, expected 200 (authentication off at every hop)`);
      say(`${mode}: ${rig.targets[mode]} with a token -> ${enforced[mode].withToken}, without -> ${enforced[mode].withoutToken}`);
      if (enforced[mode].withToken !== 200) throw new Error(`${mode}: a valid token got ${enforced[mode].withToken}, expected 200 (see .run/bench/logs)`);
    }

    /**
     * One step, re-measured when its failure may not be the system's: on a shared machine another
     * process can take the cores for a while, or a single stall can put p99 over the SLO while the
     * rate was held. A failing step is measured again (at most twice more) when other processes
     * used more than `--foreign-max-cores` of CPU during it, or when only its tail failed (rate held,
     * nothing lost). The least disturbed failing attempt is kept unless a later one passes; the
     * report says how many attempts a step took and how much foreign CPU it saw.
     */
    const step = async (mode: BenchMode, rate: number, durationSec = stepSec): Promise<StepResult> => {
      let best = await stepOnce(mode, rate, durationSec);
      const first = best;
      for (let attempt = 2; attempt <= 3 && !best.pass; attempt++) {
        const disturbed = best.foreignCores > opts.foreignMaxCores;
        const tailOnly = best.failed === 0 && best.achieved >= 0.95 * rate;
        if (!disturbed && !(tailOnly && attempt === 2)) break;
        say(`${mode.padEnd(9)} ${String(rate).padStart(6)} req/s: ${disturbed ? `other processes used ${best.foreignCores} cores` : 'only the tail failed (rate held, nothing lost)'}; measuring it again`);
        await sleep(disturbed ? 3000 : 500);
        const next = await stepOnce(mode, rate, durationSec);
        best = next.pass || next.foreignCores <= best.foreignCores ? next : best;
        best = { ...best, attempts: attempt, firstAttempt: { p99: first.p99, failed: first.failed, achieved: first.achieved } };
      }
      return best;
    };
    const stepOnce = async (mode: BenchMode, rate: number, durationSec = stepSec): Promise<StepResult> => {
      const procs = pathProcesses(mode, rig.accounted);
      const ours = () => Object.values(cpuSnapshot(rig.accounted)).reduce((a, b) => a + b, 0);
      const m0 = { machine: machineBusyMs(), ours: ours(), at: Date.now() };
      const before = cpuSnapshot(procs);
      const r = await runLoad({
        baseUrl: rig.targets[mode],
        ratePerSec: rate,
        durationSec,
        tokens: tokensFor(mode),
        routes: [orderRoute(mode === 'full' || mode === 'full_many' || mode === 'chain_noauth')],
        connections: opts.connections,
        timeoutMs: 2000,
        chainCheckEvery: mode === 'full' || mode === 'full_many' || mode === 'chain_noauth' ? 50 : 0,
        sloP99Ms: 200,
      });
      const after = cpuSnapshot(procs);
      const foreign = foreignCores(m0, { machine: machineBusyMs(), ours: ours(), at: Date.now() });
      const s: StepResult = {
        ...stepFigures(rate, r),
        cpuMsPerRequest: cpuPerRequest(before, after, r.answered),
        attempts: 1,
        foreignCores: foreign,
      };
      say(`${mode.padEnd(9)} ${String(rate).padStart(6)} req/s -> ${s.achieved} achieved, p50 ${s.p50} ms, p99 ${s.p99} ms, failed ${s.failed}, lag p99 ${s.lagP99} ms, foreign CPU ${foreign} cores: ${s.pass ? 'pass' : 'FAIL'}`);
      await sleep(1000); // let queues drain and the next step start clean
      return s;
    };

    for (const mode of opts.modes) {
      const filters =
        mode === 'full' || mode === 'full_many'
          ? ['envoy.filters.http.header_mutation', 'envoy.filters.http.ext_authz', 'envoy.filters.http.router']
          : mode === 'chain_noauth'
            ? ['envoy.filters.http.header_mutation', 'envoy.filters.http.router']
            : filterNames(benchEdgeConfigFor(rig, mode === 'ext_authz_many' ? 'ext_authz' : mode));
      const min = Math.min(...opts.rates);
      if (MANY_TOKEN_MODES.has(mode)) await freshMany();
      if (opts.warmupSec > 0) {
        // The warm-up of a many-token mode uses the 16-token pool: every many token stays cold.
        await runLoad({ baseUrl: rig.targets[mode], ratePerSec: min, durationSec: opts.warmupSec, tokens: rig.tokens, routes: [orderRoute(false)], chainCheckEvery: 0, timeoutMs: 2000 });
        await sleep(500);
      }
      const steps: StepResult[] = [];
      for (const rate of [...opts.rates].sort((a, b) => a - b)) {
        if (rate > opts.maxRate) break;
        const s = await step(mode, rate);
        steps.push(s);
        if (!s.pass) break; // higher rates would only fail slower
      }
      const search: StepResult[] = [];
      const searchStart = Date.now();
      const cap = opts.searchBudgetSec > 0
        ? await findCapacity(
            async (rate) => {
              const s = await step(mode, rate);
              search.push(s);
              return { rate, pass: s.pass };
            },
            {
              known: steps.map((s) => ({ rate: s.rate, pass: s.pass })),
              maxRate: opts.maxRate,
              haveTime: () => Date.now() - searchStart + (stepSec + 4) * 1000 <= opts.searchBudgetSec * 1000,
            },
          )
        : (() => {
            const passes = steps.filter((s) => s.pass).map((s) => s.rate);
            const lo = passes.length ? Math.max(...passes) : 0;
            const fail = steps.find((s) => !s.pass && s.rate > lo)?.rate ?? null;
            return { capacity: lo, firstFail: fail, trials: [], converged: false };
          })();
      say(`${mode}: capacity at the SLO ${cap.capacity} req/s${cap.firstFail ? ` (fails at ${cap.firstFail})` : ''}`);
      modes.push({
        mode,
        label: MODE_LABELS[mode],
        filters,
        target: rig.targets[mode],
        enforced: enforced[mode],
        steps,
        search,
        capacity: { rate: cap.capacity, firstFail: cap.firstFail, converged: cap.converged },
        half: null,
      });
    }

    const none = modes.find((m) => m.mode === 'none');
    if (none && none.capacity.rate > 0) {
      halfRate = Math.max(1, Math.round(none.capacity.rate / 2));
      say(`half of mode 1's capacity: ${halfRate} req/s for every mode but 5 and 4m`);
      // Modes 5 and 4m have their own comparison (modes 5 and 4 at half of mode 5's capacity);
      // half of mode 1's capacity is far beyond what any chain holds.
      for (const m of modes.filter((x) => x.mode !== 'chain_noauth' && x.mode !== 'full_many')) {
        if (MANY_TOKEN_MODES.has(m.mode)) await freshMany();
        m.half = await step(m.mode, halfRate);
      }
    }
    const noauth = modes.find((m) => m.mode === 'chain_noauth');
    const full = modes.find((m) => m.mode === 'full');
    if (noauth && full && noauth.capacity.rate > 0) {
      const rate = Math.max(1, Math.round(noauth.capacity.rate / 2));
      say(`half of mode 5's capacity: ${rate} req/s for modes 5 and 4 (the cost of authentication in the chain)`);
      noauth.halfChain = await step('chain_noauth', rate);
      full.halfChain = await step('full', rate);
    }

    if (opts.propagationTrials > 0) propagation = await measurePropagation(rig, opts.propagationTrials);
  } finally {
    await stopRig(rig);
  }
  const uptimeAfter = uptime();
  say(`uptime after: ${uptimeAfter}`);
  const result: BenchResult = {
    meta: {
      ...runMeta({ t0, loadBefore, rawRs256PerSec: rawRs256, uptimeBefore, uptimeAfter }),
      settings: {
        rates: opts.rates,
        trialSec: opts.trialSec,
        warmupSec: opts.warmupSec,
        searchBudgetSec: opts.searchBudgetSec,
        pool: opts.pool,
        manyTokens: opts.manyTokens,
        manyFamilies: opts.manyFamilies,
        connections: opts.connections,
        envoyConcurrency: opts.envoyConcurrency,
        maxRate: opts.maxRate,
        foreignMaxCores: opts.foreignMaxCores,
      },
      notes: [
        'Everything (load generator, Envoys, authz replicas, services, auth service, Redis, PostgreSQL) shares this machine; the generator\'s own CPU is in the CPU columns as "generator".',
        'Tokens come from a small pool, so after the first request per token every verifier answers from its verified-token cache (as in production, where a token is reused for its whole lifetime); revocation is still looked up on every request (short in-process cache + Redis, invalidated by pub/sub).',
      ],
    },
    sloP99Ms: 200,
    modes,
    halfRate,
    propagation,
    aims: [],
  };
  result.aims = evaluateAims(result);
  mkdirSync(opts.out, { recursive: true });
  const md = renderMarkdown(result);
  writeFileSync(join(opts.out, 'bench-latest.json'), `${JSON.stringify(result, null, 2)}\n`);
  writeFileSync(join(opts.out, 'bench-latest.md'), md);
  if (opts.readme && updateReadme(join(LOADTEST_DIR, 'README.md'), md)) say('updated the results table in loadtest/README.md');
  process.stdout.write(`\n${md}\n`);
  say(`results: ${join(opts.out, 'bench-latest.json')} and bench-latest.md`);
  return 0;
}

/** The auth sidecar's inbound port: the bench edges reach the auth-service through it, as the stack's edge does. */
function authSidecarPort(st: Rig['stack']['state']): number {
  return Number(new URL(st.urls.services['auth']?.inbound ?? 'https://127.0.0.1:0').port);
}

function benchEdgeConfigFor(rig: Rig, mode: EnvoyMode): Record<string, unknown> {
  const st = rig.stack.state;
  return benchEdgeConfig(mode, {
    ports: { edge: { http: 0, https: 0, admin: 0 }, authz: st.urls.authzGrpc, services: { auth: { inbound: authSidecarPort(st) } } },
    certDir: st.certDir,
    upstreamPort: rig.upstream.port,
    issuer: st.jwt.issuer,
    audience: st.jwt.audience,
  });
}

/** The revocation-propagation figure over `trials` trials (see ./propagation.ts). */
async function measurePropagation(rig: Rig, trials: number): Promise<NonNullable<BenchResult['propagation']>> {
  const st = rig.stack.state;
  const certs = rig.stack.certs;
  const edge = certs.workloads['edge'];
  if (!edge) throw new Error('no edge certificate in the stack PKI');
  const tls = { ca: readFileSync(certs.ca.cert), cert: readFileSync(edge.cert), key: readFileSync(edge.key), serverName: k8sServiceHost('authz') };
  const verifiers: Verifier[] = [
    ...st.urls.authzGrpc.map((addr, i) => authzVerifier(`authz-${i + 1}`, addr, tls, { method: 'GET', path: '/api/orders/ord-1001' })),
  ];
  const svc = st.urls.services;
  if (svc.orders) verifiers.push(httpVerifier('orders', svc.orders.app, '/api/orders/ord-none', 404));
  if (svc.inventory) verifiers.push(httpVerifier('inventory', svc.inventory.app, '/api/inventory/sku-none', 404));
  if (svc.profile) verifiers.push(httpVerifier('profile', svc.profile.app, '/api/profile/me', 200));
  const alice = DEMO_USERS.find((u) => u.username === 'alice') ?? (DEMO_USERS[0] as (typeof DEMO_USERS)[number]);
  let session = await login(st.urls.auth, { username: alice.username, password: alice.password });
  const results: PropagationTrial[] = [];
  const timeoutMs = 3000;
  say(`revocation propagation: ${trials} trials over ${verifiers.map((v) => v.name).join(', ')}`);
  try {
    for (let i = 0; i < trials; i++) {
      session = await refreshTokens(st.urls.auth, session.refresh_token);
      const token = session.access_token;
      const revoke = async () => {
        const res = await request(`${st.urls.auth}/auth/revoke`, {
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
          body: new URLSearchParams({ token, token_type_hint: 'access_token' }).toString(),
          signal: AbortSignal.timeout(10_000),
        });
        await res.body.dump();
        if (res.statusCode !== 200) throw new Error(`POST /auth/revoke answered ${res.statusCode}`);
      };
      results.push(await propagationTrial(verifiers, token, revoke, timeoutMs));
      await sleep(50);
    }
  } finally {
    await Promise.all(verifiers.map((v) => v.close()));
  }
  const summary = summarisePropagation(results);
  say(`revocation propagation: every verifier p50 ${summary.all.p50} ms, p99 ${summary.all.p99} ms, max ${summary.all.max} ms`);
  return { ...summary, verifiers: verifiers.map((v) => v.name), timeoutMs };
}

/** Entry point. @returns the exit status. */
export async function main(argv: string[]): Promise<number> {
  let opts: BenchOptions | 'help';
  try {
    opts = parseBenchArgs(argv);
  } catch (e) {
    process.stderr.write(`bench: ${(e as Error).message}\n\n${HELP}`);
    return 2;
  }
  if (opts === 'help') {
    process.stdout.write(HELP);
    return 0;
  }
  if (opts.profile) return runProfile(opts);
  if (opts.generatorCost) return runGeneratorCost(opts, opts.generatorRates);
  if (opts.tracing) return runTracingCost(opts);
  return runBench(opts);
}

if (process.argv[1] && /[/\\]bench[/\\]main\.[tj]s$/.test(process.argv[1])) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (e: unknown) => {
      process.stderr.write(`bench: ${(e as Error).stack ?? String(e)}\n`);
      process.exitCode = 1;
    },
  );
}
