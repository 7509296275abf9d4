/**
 * What every pass of `make bench` records and prints: its progress lines (`bench: ...`), the
 * machine and run facts a result starts with (date, load average, raw RS256 rate, `uptime`,
 * package versions, git commit), each step's latency figures from the runner, and the block of
 * loadtest/README.md a result replaces.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { cpus, loadavg, platform, release, totalmem } from 'node:os';
import { join } from 'node:path';
import { envoyBinary } from '@jwt-mesh/testkit';
import type { runLoad } from '../runner.js';
import { rawRs256PerSec } from './machine.js';
import { LOADTEST_DIR, REPO, type BenchOptions } from './options.js';
import type { RunMeta, StepResult } from './report.js';

/** Prints one progress line, `bench: <line>`, on stdout. */
export const say = (line: string): void => {
  process.stdout.write(`bench: ${line}\n`);
};

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

/** The facts of a run taken at its start (see {@link beginRun}). */
export interface RunStart {
  /** When the run started, epoch milliseconds. */
  t0: number;
  /** `uptime`'s line. */
  uptimeBefore: string;
  /** `os.loadavg()`: the 1, 5 and 15-minute load averages. */
  loadBefore: number[];
  /** The machine's raw RS256 rate, verifications per second on one core (./machine.ts). */
  rawRs256PerSec: number;
}

/**
 * Starts a run's record: prints `uptime`, a warning when the 1-minute load average is above half
 * the core count (the figures will be noisy), and the machine's raw RS256 rate, which it measures
 * (about a second). @returns those facts, for {@link endRun}
 */
export function beginRun(): RunStart {
  const t0 = Date.now();
  const uptimeBefore = uptime();
  const loadBefore = loadavg();
  say(`uptime before: ${uptimeBefore}`);
  if (loadBefore[0] !== undefined && loadBefore[0] > cpus().length * 0.5) {
    say(`WARNING: the 1-minute load average (${loadBefore[0].toFixed(2)}) is above half the core count: figures will be noisy`);
  }
  const rawRs256 = rawRs256PerSec();
  say(`raw RS256 (node:crypto verify, one core): ${rawRs256.toLocaleString('en-US')}/s`);
  return { t0, uptimeBefore, loadBefore, rawRs256PerSec: rawRs256 };
}

/** Ends a run's record: prints `uptime` again. @returns the run's facts ({@link runMeta}) from `start` to now. */
export function endRun(start: RunStart): RunMeta & { rawRs256PerSec: number } {
  const uptimeAfter = uptime();
  say(`uptime after: ${uptimeAfter}`);
  return runMeta({ ...start, uptimeAfter });
}

/**
 * Writes a pass's result: `<opts.out>/<name>.json` (`result`, indented JSON) and `<name>.md`
 * (`markdown`); unless `opts.readme` is false, the block `readme.marker` of loadtest/README.md
 * (see {@link updateReadme}; `readme.table` names it in the line printed); then prints the
 * markdown and where the files are.
 */
export function writeResults(opts: Pick<BenchOptions, 'out' | 'readme'>, name: string, result: unknown, markdown: string, readme: { marker: string; table: string }): void {
  mkdirSync(opts.out, { recursive: true });
  writeFileSync(join(opts.out, `${name}.json`), `${JSON.stringify(result, null, 2)}\n`);
  writeFileSync(join(opts.out, `${name}.md`), markdown);
  if (opts.readme && updateReadme(join(LOADTEST_DIR, 'README.md'), markdown, readme.marker)) say(`updated the ${readme.table} in loadtest/README.md`);
  process.stdout.write(`\n${markdown}\n`);
  say(`results: ${join(opts.out, `${name}.json`)} and ${name}.md`);
}
