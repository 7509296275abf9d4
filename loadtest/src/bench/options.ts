/**
 * `make bench`'s command line: the help text, the options every pass reads ({@link BenchOptions}:
 * the side-by-side run, `--profile`, `--generator-cost`, `--tracing`) with their defaults, parsed
 * and validated once ({@link parseBenchArgs}); and where the benchmark lives on disk.
 */
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { MODES } from './report.js';
import { parseTracingSettings, TRACING_MODES, type TracingSetting } from './tracing-report.js';

const here = dirname(fileURLToPath(import.meta.url));
/** The loadtest workspace's folder (absolute path): results/ and README.md are under it. */
export const LOADTEST_DIR = resolve(here, '..', '..');
/** The repository's root folder (absolute path): `.run/bench`, package.json and the workspaces are under it. */
export const REPO = resolve(LOADTEST_DIR, '..');

/** What `make bench BENCH_ARGS=--help` prints: every mode, and every option with its default and unit. */
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
/**
 * The validated options of one `make bench` run: rates in requests per second, `*Sec` in seconds,
 * `tracing` null unless `--tracing` was given (then one setting per rig: 'off' or the edge's
 * sampling percentage, 0..100).
 */
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
