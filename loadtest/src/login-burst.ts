/**
 * `make loadtest-login-burst`: logins under overload are shed instead of hanging, shown with k6.
 *
 * 1. Validates every knob (a bad one stops the run, naming it).
 * 2. Starts a private stack on free ports (tools/stack `startStack`, as `make loadtest-smoke`;
 *    folder `RUN_DIR`) with the login rate limits raised for one client address
 *    (`LOGIN_RATE_LIMIT_PER_MIN=100000`, `LOGIN_USERNAME_RATE_LIMIT_PER_MIN=1000`), so that what
 *    sheds is the auth-service's hash limiter, not its rate limits; or, with `STACK_STATE`, uses
 *    a running stack (`make up`'s `.run/stack.json`), which must have been started with them.
 * 3. Seeds `BURST` users at the production KDF cost (`npm run seed-users -w @jwt-mesh/auth-service
 *    -- --count BURST --prefix burst- --out USERS_FILE`: idempotent, only missing users are hashed)
 *    into the stack's database.
 * 4. Reads the raw RS256 rate of one core, the load average, the CPU of every stack process
 *    (/proc) and the auth-service's `/metrics`; runs `k6 run loadtest/k6/login-burst.ts`, sampling
 *    the auth-service's CPU every 200 ms (the report reads it over the burst alone, from the
 *    burst's start time k6 records); reads them again.
 * 5. Writes `summary.json` (k6), `run.json` and `report.md` (src/login-burst-report.ts) in
 *    `RUN_DIR`, prints the report, stops the stack it started, and exits with k6's code (0 every
 *    threshold held, 99 one was crossed); 2 on a bad knob, no k6, a stack that did not start, or a
 *    failed seeding.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { readState, startStack, type Stack, type StackState } from '@jwt-mesh/stack';
import { REPO_ROOT } from '@jwt-mesh/testkit';
import { z } from 'zod';
import { rawRs256PerSec } from './bench/machine.js';
import { cpuMsOfPid } from './bench/procstat.js';
import { readEnv } from './env.js';
import { assertLoopbackTarget } from './guard.js';
import { finishK6Report, k6Binary, runK6 } from './k6.js';
import { CPU_SAMPLE_MS, renderBurstReport, type BurstRecord } from './login-burst-report.js';
import { cpuMs, sampleProcesses, scrapeMetrics, type Watched } from './mesh-probe.js';

/** The auth-service's login limits the private stack runs with (one client address: k6 on this host). */
export const BURST_AUTH_ENV: Readonly<Record<string, string>> = Object.freeze({
  LOGIN_RATE_LIMIT_PER_MIN: '100000',
  LOGIN_USERNAME_RATE_LIMIT_PER_MIN: '1000',
});

/** The text of `make loadtest-login-burst LOADTEST_ARGS=--help`. */
export const HELP = `make loadtest-login-burst [BURST=60] [API_RATE=50] [API_DURATION=40] [BURST_START=10] ...

A login burst several times over what the auth-service's hash limiter admits, with API traffic
through the whole chain at a fixed rate meanwhile: k6 run loadtest/k6/login-burst.ts against a
private stack on free ports (or STACK_STATE's), then a report (loadtest/README.md "Login burst").

Variables (environment or make variables; a bad value stops the run naming it):
  BURST             burst logins, each its own user at the production KDF cost, 1..5000 (default 60;
                    the limiter admits 2 running + 8 waiting on 2 cores)
  BURST_START       seconds of API traffic before the burst, 5..300 (default 10)
  BURST_SPREAD_SEC  spread of the burst's first attempts, seconds, 0..60 (default 0: all at once)
  API_RATE          API requests per second through the chain, 1..5000 (default 50)
  API_DURATION      seconds of API traffic, 20..600, at least BURST_START + 10 (default 40)
  SHED_P99_MS       bound on the p99 of the 503 answers, ms (default: the script's, 1500: the
                    queue's 1 s wait timeout plus transit)
  USERS_FILE        the burst users' file (default RUN_DIR/users.json), seeded when short
  STACK_STATE       use this running stack (e.g. .run/stack.json of make up) instead of starting one;
                    it must run with the raised limits:
                      LOGIN_RATE_LIMIT_PER_MIN=100000 LOGIN_USERNAME_RATE_LIMIT_PER_MIN=1000 make up
  RUN_DIR           where summary.json, run.json, report.md go (default .run/loadtest-login-burst)
  DATABASE_URL, REDIS_URL   the private stack's (unset: embedded PGlite in RUN_DIR, its own redis-server)
  P99_MS, MAX_FAILED_RATE, PASSWORD_HASH_*: reach k6 / the private stack's auth-service as they are.
Exit status: k6's (0 every threshold held, 99 one was crossed); 2 bad variable, no k6, no stack,
failed seeding. Bounded: API_RATE x API_DURATION API requests, BURST x 31 logins, about
API_DURATION + 1 min of load, plus the stack's start (~30 s) and the seeding (~0.1 s of CPU a user).
`;

const envSchema = z.object({
  BURST: z.coerce.number().int().min(1).max(5000).default(60),
  BURST_START: z.coerce.number().int().min(5).max(300).default(10),
  BURST_SPREAD_SEC: z.coerce.number().min(0).max(60).default(0),
  API_RATE: z.coerce.number().min(1).max(5000).default(50),
  API_DURATION: z.coerce.number().int().min(20).max(600).default(40),
  SHED_P99_MS: z.coerce.number().min(1).max(60_000).optional(),
  USERS_FILE: z.string().min(1).optional(),
  STACK_STATE: z.string().min(1).optional(),
  RUN_DIR: z.string().min(1).default(join(REPO_ROOT, '.run', 'loadtest-login-burst')),
});
/** The runner's knobs, parsed. */
export type BurstKnobs = z.infer<typeof envSchema>;

/**
 * Reads and checks the knobs (empty = unset).
 * @throws Error naming the variable: out of range, not a number, or API_DURATION shorter than
 *   BURST_START + 10 s (the API traffic must run during the burst).
 */
export function readBurstKnobs(env: NodeJS.ProcessEnv): BurstKnobs {
  const knobs = readEnv(envSchema, env);
  if (knobs.API_DURATION < knobs.BURST_START + 10) {
    throw new Error(`API_DURATION (${knobs.API_DURATION} s) must be at least BURST_START + 10 s (${knobs.BURST_START + 10} s): the API traffic has to run during the burst`);
  }
  return knobs;
}

const say = (line: string) => process.stdout.write(`loadtest-login-burst: ${line}\n`);

async function run(env: NodeJS.ProcessEnv): Promise<number> {
  let knobs: BurstKnobs;
  let k6: string;
  try {
    knobs = readBurstKnobs(env);
    k6 = k6Binary(env);
  } catch (err) {
    process.stderr.write(`loadtest-login-burst: ${(err as Error).message}\n`);
    return 2;
  }
  const runDir = resolve(knobs.RUN_DIR);
  mkdirSync(runDir, { recursive: true });
  const usersFile = resolve(knobs.USERS_FILE ?? join(runDir, 'users.json'));

  let stack: Stack | null = null;
  try {
    // ---- the stack ----------------------------------------------------------------------------
    let state: StackState;
    if (knobs.STACK_STATE) {
      const found = readState(resolve(knobs.STACK_STATE));
      if (!found || !found.ready) {
        process.stderr.write(`loadtest-login-burst: no running stack in ${knobs.STACK_STATE}\n`);
        return 2;
      }
      state = found;
    } else {
      try {
        stack = await startStack({
          runDir,
          ports: 'free',
          stateFile: join(runDir, 'stack.json'),
          ...(env.DATABASE_URL ? { databaseUrl: env.DATABASE_URL } : {}),
          ...(env.REDIS_URL ? { redisUrl: env.REDIS_URL } : {}),
          env: { auth: { ...BURST_AUTH_ENV } },
          onProgress: (line) => say(line),
        });
      } catch (err) {
        process.stderr.write(`loadtest-login-burst: the stack did not start: ${(err as Error).message}\n`);
        return 2;
      }
      state = stack.state;
    }
    const baseUrl = state.urls.edge.replace(/\/+$/, '');
    try {
      await assertLoopbackTarget(baseUrl);
    } catch (err) {
      process.stderr.write(`loadtest-login-burst: ${(err as Error).message}\n`);
      return 2;
    }

    // ---- the users, at the production KDF cost ---------------------------------------------------
    const args = ['run', 'seed-users', '--silent', '-w', '@jwt-mesh/auth-service', '--', '--count', String(knobs.BURST), '--prefix', 'burst-', '--password-cost', 'production', '--out', usersFile];
    say(`users: npm ${args.join(' ')}`);
    try {
      execFileSync('npm', args, { cwd: REPO_ROOT, stdio: 'inherit', env: { ...env, DATABASE_URL: state.database.url } });
    } catch (err) {
      process.stderr.write(`loadtest-login-burst: seeding failed (${(err as Error).message.split('\n')[0]})\n`);
      return 2;
    }

    // ---- the run ---------------------------------------------------------------------------------
    const procs: Watched[] = state.processes.map((p) => ({ name: p.name, pid: p.pid }));
    const authPid = state.processes.find((p) => p.name === 'auth')?.pid;
    if (authPid === undefined) {
      process.stderr.write('loadtest-login-burst: the stack has no auth process\n');
      return 2;
    }
    const authMetricsUrl = `${state.urls.auth}/metrics`;
    const rs256 = rawRs256PerSec();
    const loadavgBefore = loadavg().map((x) => Math.round(x * 100) / 100);
    const authMetricsBefore = await scrapeMetrics(authMetricsUrl);
    const cpuMsBefore = cpuMs(procs);
    const startedAt = new Date().toISOString();
    say(
      `k6 run loadtest/k6/login-burst.ts against ${baseUrl}: API ${knobs.API_RATE}/s for ${knobs.API_DURATION} s, ${knobs.BURST} logins at ${knobs.BURST_START} s ` +
        `(raw RS256 ${rs256}/s on one core, load average ${loadavgBefore.join(' ')})`,
    );
    let k6Pid = 0;
    const sampler = sampleProcesses(() => (k6Pid ? [...procs, { name: 'k6', pid: k6Pid }] : procs), 1000);
    // The auth-service's CPU as a time series, so the report can read it over the burst alone.
    const authCpuSeries: Array<[number, number]> = [[Date.now(), cpuMsOfPid(authPid)]];
    const authSampler = setInterval(() => authCpuSeries.push([Date.now(), cpuMsOfPid(authPid)]), CPU_SAMPLE_MS);
    const t0 = Date.now();
    const result = await runK6({
      k6,
      script: 'login-burst.ts',
      vars: {
        BASE_URL: baseUrl,
        USERS_FILE: usersFile,
        BURST: String(knobs.BURST),
        BURST_START: `${knobs.BURST_START}s`,
        BURST_SPREAD_SEC: String(knobs.BURST_SPREAD_SEC),
        API_RATE: String(knobs.API_RATE),
        API_DURATION: `${knobs.API_DURATION}s`,
        ...(knobs.SHED_P99_MS === undefined ? {} : { SHED_P99_MS: String(knobs.SHED_P99_MS) }),
      },
      summaryFile: join(runDir, 'summary.json'),
      args: ['--no-color', '--quiet'],
      // setup (warm-up, pool logins) + the API scenario + the burst's bound and graceful stop.
      timeoutMs: (knobs.API_DURATION + knobs.BURST_START + 420) * 1000,
      env,
      onSpawn: (pid) => {
        k6Pid = pid;
      },
    });
    const runSec = (Date.now() - t0) / 1000;
    clearInterval(authSampler);
    authCpuSeries.push([Date.now(), cpuMsOfPid(authPid)]);
    const { lastCpuMs } = sampler.stop();
    const cpuMsAfter = { ...cpuMs(procs), k6: lastCpuMs['k6'] ?? 0 };
    const authMetricsAfter = await scrapeMetrics(authMetricsUrl);
    const record: BurstRecord = {
      command: `make loadtest-login-burst BURST=${knobs.BURST} API_RATE=${knobs.API_RATE} API_DURATION=${knobs.API_DURATION} BURST_START=${knobs.BURST_START}${knobs.BURST_SPREAD_SEC ? ` BURST_SPREAD_SEC=${knobs.BURST_SPREAD_SEC}` : ''}`,
      startedAt,
      runSec,
      burst: knobs.BURST,
      apiRate: knobs.API_RATE,
      apiDurationSec: knobs.API_DURATION,
      burstStartSec: knobs.BURST_START,
      burstSpreadSec: knobs.BURST_SPREAD_SEC,
      stack: knobs.STACK_STATE ? `the stack of ${knobs.STACK_STATE}` : 'a private stack on free ports',
      hashLimiter: knobs.STACK_STATE
        ? { concurrency: 'as that stack runs', queueMax: 'as that stack runs', queueTimeoutMs: 'as that stack runs' }
        : {
            concurrency: env.PASSWORD_HASH_CONCURRENCY || 'auto',
            queueMax: env.PASSWORD_HASH_QUEUE_MAX || 'auto',
            queueTimeoutMs: env.PASSWORD_HASH_QUEUE_TIMEOUT_MS || '1000',
          },
      machine: `${cpus().length} cores (${cpus()[0]?.model.trim() ?? 'unknown'}), ${Math.round(totalmem() / 2 ** 30)} GiB`,
      cores: cpus().length,
      rawRs256PerSec: rs256,
      loadavgBefore,
      loadavgAfter: loadavg().map((x) => Math.round(x * 100) / 100),
      k6ExitCode: result.code,
      cpuMsBefore: { ...cpuMsBefore, k6: 0 },
      cpuMsAfter,
      authCpuSeries,
      authMetricsBefore,
      authMetricsAfter,
    };
    writeFileSync(join(runDir, 'run.json'), `${JSON.stringify(record, null, 1)}\n`);
    return finishK6Report('loadtest-login-burst', result, runDir, (summary) => renderBurstReport(summary, record), say);
  } finally {
    await stack?.stop();
  }
}

const invokedDirectly = process.argv[1] !== undefined && /[/\\]login-burst\.[tj]s$/.test(process.argv[1]);
if (invokedDirectly && (process.argv.includes('--help') || process.argv.includes('-h'))) {
  process.stdout.write(HELP);
} else if (invokedDirectly) {
  run(process.env).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      process.stderr.write(`loadtest-login-burst: ${(err as Error).stack ?? String(err)}\n`);
      process.exitCode = 2;
    },
  );
}
