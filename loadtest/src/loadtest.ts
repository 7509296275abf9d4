/**
 * `make loadtest` / `npm start -w @jwt-mesh/loadtest -- [--help]`: k6 at a fixed arrival rate
 * (`loadtest/k6/rate.ts`, open model) against the running stack. Validates the knobs, refuses a
 * target that is not loopback (names resolved, as the benchmark does), runs `k6 run` with its
 * JSON summary exported, prints the figures read from that JSON, and exits with k6's code.
 */
import { mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { z } from 'zod';
import { readEnv } from './env.js';
import { DEFAULT_BASE_URL } from '../k6/lib/scenario.js';
import { assertLoopbackTarget } from './guard.js';
import { formatSummary, k6Binary, LOADTEST_DIR, runK6 } from './k6.js';

export const HELP = `make loadtest [RATE=100] [DURATION=30] [BASE_URL=${DEFAULT_BASE_URL}] [VUS=16] [SUMMARY_JSON=...]

k6 run loadtest/k6/rate.ts against the running stack (make up): the route mix of
loadtest/k6/lib/scenario.ts at a fixed arrival rate (open model: k6's constant-arrival-rate), one
session per VU logged in by setup() and refreshed by its VU. Loopback targets only.

Variables (environment or make variables):
  BASE_URL       the edge, loopback only (default ${DEFAULT_BASE_URL})
  RATE           arrivals per second, 1..20000 (default 100)
  DURATION       seconds, 1..600 (default 30); at most RATE x DURATION requests
  VUS            VUs = sessions logged in by setup(), 1..1000 (default 16: below make up's login
                 rate limits, 20/min per address and 10/min per user); more VUs need those raised
  SUMMARY_JSON   where k6 writes its JSON summary (default .run/loadtest/summary.json)
  USERS          name:password,... to log in as (default: the demo users alice and admin)
  P99_MS, LOGIN_P99_MS, REFRESH_P99_MS, MAX_FAILED_RATE, ABORT_ON_FAIL: thresholds (loadtest/README.md)

Exit status: k6's. 0 every threshold held; 99 one was crossed (API p99 >= 200 ms, failed API or
auth requests >= 0.1 %, failed checks, a dropped arrival, a refresh answered invalid_grant, ...);
2 a bad variable, a refused target or no k6; other codes as k6 gives them (107 script error).
`;

const envSchema = z.object({
  BASE_URL: z.string().default(DEFAULT_BASE_URL),
  RATE: z.coerce.number().min(1).max(20_000).default(100),
  DURATION: z.coerce.number().int().min(1).max(600).default(30),
  VUS: z.coerce.number().int().min(1).max(1000).default(16),
  SUMMARY_JSON: z.string().min(1).default(resolve(LOADTEST_DIR, '..', '.run', 'loadtest', 'summary.json')),
});

/**
 * Reads the variables (empty = unset) over the defaults.
 * @throws Error naming the variable on a bad value.
 */
export function readLoadtestEnv(env: NodeJS.ProcessEnv): z.infer<typeof envSchema> {
  return readEnv(envSchema, env);
}

/** Runs `make loadtest`. @returns the exit status (k6's, or 2 on a usage error). */
export async function main(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(HELP);
    return 0;
  }
  if (argv.length > 0) {
    process.stderr.write(`loadtest: unknown argument ${argv[0]} (the knobs are variables: see --help)\n`);
    return 2;
  }
  let opts: z.infer<typeof envSchema>;
  let k6: string;
  try {
    opts = readLoadtestEnv(env);
    await assertLoopbackTarget(opts.BASE_URL);
    k6 = k6Binary(env);
  } catch (err) {
    process.stderr.write(`loadtest: ${(err as Error).message}\n`);
    return 2;
  }
  const summaryFile = resolve(opts.SUMMARY_JSON);
  mkdirSync(dirname(summaryFile), { recursive: true });
  process.stdout.write(`loadtest: k6 run loadtest/k6/rate.ts: ${opts.BASE_URL}, ${opts.RATE} req/s for ${opts.DURATION} s, ${opts.VUS} VUs/sessions\n`);
  const run = await runK6({
    k6,
    script: 'rate.ts',
    vars: { BASE_URL: opts.BASE_URL.replace(/\/+$/, ''), RATE: String(opts.RATE), DURATION: `${opts.DURATION}s`, VUS: String(opts.VUS) },
    summaryFile,
    timeoutMs: (opts.DURATION + 360) * 1000,
    env,
  });
  if (run.summary) process.stdout.write(`\nloadtest: figures from ${summaryFile}:\n${formatSummary(run.summary)}\n`);
  return run.code ?? 2;
}

const invokedDirectly = process.argv[1] !== undefined && /[/\\]loadtest\.[tj]s$/.test(process.argv[1]);
if (invokedDirectly) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (e: unknown) => {
      process.stderr.write(`loadtest: ${(e as Error).stack ?? String(e)}\n`);
      process.exitCode = 2;
    },
  );
}
