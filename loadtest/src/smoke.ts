/**
 * `make loadtest-smoke` (CI): the Node load runner's short version. Starts a private stack on free
 * ports (the same `startStack` as `make up`; its own folder .run/loadtest-smoke), logs in through
 * the edge, warms up, drives the k6 route mix at `SMOKE_RATE` (default 20) requests per second for
 * `SMOKE_DURATION` (default 5) seconds with every chain answer checked, prints the figures, stops
 * the stack, and exits 0 only when p99 < 200 ms and no request failed (1 otherwise, 2 when the
 * stack did not start). With `BASE_URL` set it uses that (loopback) stack instead of starting one.
 */
import { join } from 'node:path';
import { DEMO_USERS, startStack, type Stack } from '@jwt-mesh/stack';
import { REPO_ROOT } from '@jwt-mesh/testkit';
import { z } from 'zod';
import { formatResult, runLoad } from './runner.js';
import { TokenPool } from './tokens.js';

const env = z
  .object({
    BASE_URL: z.string().url().optional(),
    SMOKE_RATE: z.coerce.number().min(1).max(1000).default(20),
    SMOKE_DURATION: z.coerce.number().min(1).max(120).default(5),
    SMOKE_WARMUP: z.coerce.number().min(0).max(60).default(3),
  })
  .parse(Object.fromEntries(Object.entries(process.env).filter(([k, v]) => ['BASE_URL', 'SMOKE_RATE', 'SMOKE_DURATION', 'SMOKE_WARMUP'].includes(k) && v !== '')));

async function smoke(): Promise<number> {
  let stack: Stack | null = null;
  let baseUrl = env.BASE_URL;
  if (!baseUrl) {
    const runDir = join(REPO_ROOT, '.run', 'loadtest-smoke');
    try {
      stack = await startStack({
        runDir,
        ports: 'free',
        stateFile: join(runDir, 'stack.json'),
        ...(process.env.DATABASE_URL ? { databaseUrl: process.env.DATABASE_URL } : {}),
        ...(process.env.REDIS_URL ? { redisUrl: process.env.REDIS_URL } : {}),
        onProgress: (line) => process.stdout.write(`loadtest-smoke: ${line}\n`),
      });
    } catch (err) {
      process.stderr.write(`loadtest-smoke: the stack did not start: ${(err as Error).message}\n`);
      return 2;
    }
    baseUrl = stack.state.urls.edge;
  }
  const users = DEMO_USERS.filter((u) => u.username === 'alice' || u.username === 'admin').map((u) => ({ username: u.username, password: u.password }));
  let tokens: TokenPool | null = null;
  try {
    tokens = await TokenPool.create({ baseUrl, users, size: 2 });
    const common = { baseUrl, ratePerSec: env.SMOKE_RATE, tokens, timeoutMs: 5000 };
    process.stdout.write(`loadtest-smoke: ${baseUrl}: warm-up ${env.SMOKE_WARMUP} s, then ${env.SMOKE_RATE} req/s for ${env.SMOKE_DURATION} s (open model, route mix of loadtest/k6/lib/scenario.ts)\n`);
    if (env.SMOKE_WARMUP > 0) await runLoad({ ...common, durationSec: env.SMOKE_WARMUP, chainCheckEvery: 0 });
    const r = await runLoad({ ...common, durationSec: env.SMOKE_DURATION, chainCheckEvery: 1 });
    process.stdout.write(`${formatResult(r, { refreshFailures: tokens.stats.refreshFailures })}\n`);
    return r.pass && tokens.stats.refreshFailures === 0 ? 0 : 1;
  } catch (err) {
    process.stderr.write(`loadtest-smoke: ${(err as Error).message}\n`);
    return 1;
  } finally {
    tokens?.close();
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
