/**
 * `make loadtest-smoke` (CI): the k6 smoke test (`loadtest/k6/smoke.ts`) against a stack of its
 * own. Starts a private stack on free ports (the same `startStack` as `make up`; folder
 * `.run/loadtest-smoke`), runs `k6 run` with its thresholds (API p99 < 200 ms, failed < 0.1 %,
 * checks; logins and refreshes on their own bounds), prints the figures read from k6's JSON
 * summary (`.run/loadtest-smoke/summary.json`), stops the stack, and exits with k6's code: 0 pass,
 * 99 a threshold was crossed, other k6 codes as k6 gives them; 2 when the stack did not start or
 * there is no k6. With `BASE_URL` set it uses that (loopback) stack instead of starting one.
 *
 * Environment: `BASE_URL`, `SMOKE_DURATION` (k6 duration, default 10s, at most 2m),
 * `SMOKE_VUS` (2), `DATABASE_URL` / `REDIS_URL` (the stack's; unset: embedded PGlite and a
 * local redis-server); every variable of the k6 script (`P99_MS`, `LOGIN_P99_MS`, ...) reaches k6.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { startStack, type Stack } from '@jwt-mesh/stack';
import { REPO_ROOT } from '@jwt-mesh/testkit';
import { z } from 'zod';
import { readEnv } from './env.js';
import { assertLoopbackTarget } from './guard.js';
import { formatSummary, K6NotFoundError, k6Binary, runK6 } from './k6.js';

const envSchema = z.object({
  BASE_URL: z.string().url().optional(),
  SMOKE_DURATION: z.string().regex(/^([1-9]\d?s|1m|2m|[1-9]\d?)$/, 'must be a k6 duration from 1s to 2m (e.g. 10s)').default('10s'),
  SMOKE_VUS: z.coerce.number().int().min(1).max(2).default(2),
});

/** Reads the smoke's variables (empty = unset). @throws Error naming the variable. */
function readSmokeEnv(env: NodeJS.ProcessEnv): z.infer<typeof envSchema> {
  return readEnv(envSchema, env);
}

async function smoke(): Promise<number> {
  const say = (line: string) => process.stdout.write(`loadtest-smoke: ${line}\n`);
  let env: z.infer<typeof envSchema>;
  let k6: string;
  try {
    env = readSmokeEnv(process.env);
    if (env.BASE_URL) await assertLoopbackTarget(env.BASE_URL);
    k6 = k6Binary();
  } catch (err) {
    process.stderr.write(`loadtest-smoke: ${(err as Error).message}\n`);
    return 2;
  }
  const runDir = join(REPO_ROOT, '.run', 'loadtest-smoke');
  mkdirSync(runDir, { recursive: true });
  let stack: Stack | null = null;
  let baseUrl = env.BASE_URL;
  try {
    if (!baseUrl) {
      try {
        stack = await startStack({
          runDir,
          ports: 'free',
          stateFile: join(runDir, 'stack.json'),
          ...(process.env.DATABASE_URL ? { databaseUrl: process.env.DATABASE_URL } : {}),
          ...(process.env.REDIS_URL ? { redisUrl: process.env.REDIS_URL } : {}),
          onProgress: (line) => say(line),
        });
      } catch (err) {
        process.stderr.write(`loadtest-smoke: the stack did not start: ${(err as Error).message}\n`);
        return 2;
      }
      baseUrl = stack.state.urls.edge;
    }
    say(`k6 run loadtest/k6/smoke.ts against ${baseUrl}: ${env.SMOKE_VUS} users for ${env.SMOKE_DURATION}`);
    const run = await runK6({
      k6,
      script: 'smoke.ts',
      vars: { BASE_URL: baseUrl, DURATION: env.SMOKE_DURATION, VUS: String(env.SMOKE_VUS) },
      summaryFile: join(runDir, 'summary.json'),
      args: ['--no-color'],
      timeoutMs: 5 * 60_000,
    });
    if (run.summary) say(`figures from ${run.summaryFile}:\n${formatSummary(run.summary)}`);
    say(`k6 exited with ${run.code ?? run.signal}`);
    return run.code ?? 2;
  } catch (err) {
    process.stderr.write(`loadtest-smoke: ${err instanceof K6NotFoundError ? err.message : ((err as Error).stack ?? String(err))}\n`);
    return 2;
  } finally {
    await stack?.stop();
  }
}

smoke().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`loadtest-smoke: ${(err as Error).stack ?? String(err)}\n`);
    process.exitCode = 2;
  },
);
