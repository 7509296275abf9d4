/**
 * The report of a login burst (`make loadtest-login-burst`, k6 `loadtest/k6/login-burst.ts`):
 * reads k6's JSON summary (`--summary-export`: the burst's own counters and trends, the API's
 * latency) and what the runner read from the mesh (`run.json`: CPU per process from /proc, the
 * auth-service's `/metrics` before and after) and renders Markdown for loadtest/README.md.
 * Never reads k6's text output.
 *
 * Logins per CPU-second is the auth-service's successful password logins during the run (its own
 * `auth_login_total{outcome="success"}`) over the CPU time of its process (utime + stime); it is
 * the figure to set beside Keycloak's published sizing, "for each 15 password-based user logins
 * per second, allocate 1 vCPU" (https://www.keycloak.org/high-availability/concepts-memory-and-cpu-sizing).
 */
import { crossedThresholds, stat, type K6Summary } from './k6.js';
import { metricSum } from './mesh-probe.js';

/** How often the runner samples the auth-service's CPU, milliseconds. */
export const CPU_SAMPLE_MS = 200;

/** Seconds of API traffic alone, before the burst, over which the auth-service's background CPU is read. */
export const BACKGROUND_WINDOW_SEC = 5;

/** Keycloak's published sizing: password-based logins per second per vCPU (its default PBKDF2 cost). */
export const KEYCLOAK_LOGINS_PER_VCPU_SEC = 15;

/** What src/login-burst.ts records beside k6's summary (`run.json`). */
export interface BurstRecord {
  /** The command that ran, for the report's header. */
  readonly command: string;
  /** ISO time the k6 run started. */
  readonly startedAt: string;
  /** Wall time of the k6 run (setup included), seconds. */
  readonly runSec: number;
  /** The knobs the k6 script ran with. */
  readonly burst: number;
  /** API arrivals per second. */
  readonly apiRate: number;
  /** Seconds. */
  readonly apiDurationSec: number;
  /** Seconds from the scenarios' start to the burst. */
  readonly burstStartSec: number;
  /** Seconds over which the burst's first attempts are spread (0: all at once). */
  readonly burstSpreadSec: number;
  /** `private stack on free ports` or the state file of the stack used. */
  readonly stack: string;
  /** The hash limiter as configured in the auth-service's environment (`auto` when unset). */
  readonly hashLimiter: { readonly concurrency: string; readonly queueMax: string; readonly queueTimeoutMs: string };
  /** `N cores (model), M GiB`. */
  readonly machine: string;
  readonly cores: number;
  /** node:crypto RS256 verifications per second on one core, measured before the run (bench/machine.ts). */
  readonly rawRs256PerSec: number;
  /** 1, 5 and 15 minute load averages. */
  readonly loadavgBefore: readonly number[];
  readonly loadavgAfter: readonly number[];
  readonly k6ExitCode: number | null;
  /** CPU milliseconds per process (the stack's parts, and k6) before and after the run. */
  readonly cpuMsBefore: Record<string, number>;
  readonly cpuMsAfter: Record<string, number>;
  /**
   * The auth-service's CPU during the run, sampled from /proc every {@link CPU_SAMPLE_MS}: pairs of
   * [epoch milliseconds, CPU milliseconds used so far] (read over the burst's own window).
   */
  readonly authCpuSeries: ReadonlyArray<readonly [number, number]>;
  /** The auth-service's `/metrics` text before and after (null: it did not answer). */
  readonly authMetricsBefore: string | null;
  readonly authMetricsAfter: string | null;
}

/** The figures of one burst, computed from the summary and the record. */
export interface BurstFigures {
  /** Burst login requests sent, first tries and retries (`burst_login_attempts`). */
  readonly attempts: number;
  /** Burst logins that got their tokens (`burst_logins_ok`). */
  readonly ok: number;
  /** Burst logins that ended without tokens (`burst_logins_failed`). */
  readonly failed: number;
  /** 503 answers to burst logins (`burst_shed`). */
  readonly shed: number;
  /** 429 answers to burst logins (`burst_rate_limited`). */
  readonly rateLimited: number;
  /** Burst login requests that got no answer: timeout or connection lost (`burst_no_answer`). */
  readonly noAnswer: number;
  /** Seconds from the burst's start to its last successful login (undefined: none succeeded). */
  readonly servedInSec: number | undefined;
  /** Successful burst logins per second of wall time, over {@link servedInSec}. */
  readonly loginsPerSec: number | undefined;
  /** The auth-service's CPU from the burst's start to its last success, seconds (undefined: not sampled). */
  readonly burstCpuSec: number | undefined;
  /** That CPU per successful burst login, milliseconds (shed answers and the API's share of the window included). */
  readonly burstCpuMsPerLogin: number | undefined;
  /** Successful burst logins per CPU-second of the auth-service over the burst: the headline figure. */
  readonly burstLoginsPerCpuSec: number | undefined;
  /** The auth-service's CPU per second of wall time with API traffic alone, just before the burst, milliseconds. */
  readonly backgroundCpuMsPerSec: number | undefined;
  /** The auth-service's CPU during the run, seconds. */
  readonly authCpuSec: number;
  /** Successful logins the auth-service counted during the run (setup's included). */
  readonly serverLogins: number | undefined;
  /** Requests the hash limiter shed during the run, by reason. */
  readonly serverShed: Readonly<Record<string, number>>;
  /** Mean scrypt time per password check during the run, milliseconds. */
  readonly meanHashMs: number | undefined;
  /** The auth-service's CPU per successful login, milliseconds (shed answers and API traffic included). */
  readonly authCpuMsPerLogin: number | undefined;
  /** Successful logins per CPU-second of the auth-service. */
  readonly loginsPerCpuSec: number | undefined;
}

/** Difference of a metric between two scrapes (undefined when the later one lacks it). */
function delta(before: string | null, after: string | null, name: string, labels: Readonly<Record<string, string>> = {}): number | undefined {
  if (after === null) return undefined;
  const a = metricSum(after, name, labels);
  if (a === undefined) return undefined;
  return a - (before === null ? 0 : (metricSum(before, name, labels) ?? 0));
}

/**
 * CPU milliseconds used by `at` (epoch ms), linearly interpolated between the two samples around
 * it. @returns undefined when `at` is outside the series.
 */
export function cpuAt(series: ReadonlyArray<readonly [number, number]>, at: number): number | undefined {
  for (let i = 1; i < series.length; i++) {
    const [t0, c0] = series[i - 1] as readonly [number, number];
    const [t1, c1] = series[i] as readonly [number, number];
    if (at >= t0 && at <= t1) return t1 === t0 ? c1 : c0 + ((c1 - c0) * (at - t0)) / (t1 - t0);
  }
  return undefined;
}

/** Computes the figures of {@link renderBurstReport} (exported for the tests). */
export function burstFigures(summary: K6Summary, run: BurstRecord): BurstFigures {
  const count = (metric: string) => stat(summary, metric, 'count') ?? 0;
  const ok = count('burst_logins_ok');
  const doneMs = ok > 0 ? stat(summary, 'burst_done_after', 'max') : undefined;
  const servedInSec = doneMs === undefined ? undefined : doneMs / 1000;
  const authCpuSec = ((run.cpuMsAfter['auth'] ?? 0) - (run.cpuMsBefore['auth'] ?? 0)) / 1000;
  const b = run.authMetricsBefore;
  const a = run.authMetricsAfter;
  const serverLogins = delta(b, a, 'auth_login_total', { outcome: 'success' });
  const serverShed: Record<string, number> = {};
  for (const reason of ['queue_full', 'wait_timeout']) {
    const n = delta(b, a, 'auth_password_hash_shed_total', { reason });
    if (n !== undefined) serverShed[reason] = n;
  }
  const burstStart = stat(summary, 'burst_started_at', 'value');
  const cpuFrom = burstStart === undefined ? undefined : cpuAt(run.authCpuSeries, burstStart);
  const cpuTo = burstStart === undefined || doneMs === undefined ? undefined : cpuAt(run.authCpuSeries, burstStart + doneMs);
  const burstCpuSec = cpuFrom === undefined || cpuTo === undefined ? undefined : (cpuTo - cpuFrom) / 1000;
  const bgFrom = burstStart === undefined ? undefined : cpuAt(run.authCpuSeries, burstStart - BACKGROUND_WINDOW_SEC * 1000);
  const backgroundCpuMsPerSec = bgFrom === undefined || cpuFrom === undefined ? undefined : (cpuFrom - bgFrom) / BACKGROUND_WINDOW_SEC;
  const hashSum = delta(b, a, 'auth_password_hash_duration_seconds_sum');
  const hashCount = delta(b, a, 'auth_password_hash_duration_seconds_count');
  return {
    attempts: count('burst_login_attempts'),
    ok,
    failed: count('burst_logins_failed'),
    shed: count('burst_shed'),
    rateLimited: count('burst_rate_limited'),
    noAnswer: count('burst_no_answer'),
    servedInSec,
    loginsPerSec: servedInSec && servedInSec > 0 ? ok / servedInSec : undefined,
    burstCpuSec,
    burstCpuMsPerLogin: burstCpuSec !== undefined && ok > 0 ? (burstCpuSec * 1000) / ok : undefined,
    burstLoginsPerCpuSec: burstCpuSec !== undefined && burstCpuSec > 0 ? ok / burstCpuSec : undefined,
    backgroundCpuMsPerSec,
    authCpuSec,
    serverLogins,
    serverShed,
    meanHashMs: hashSum !== undefined && hashCount ? (hashSum * 1000) / hashCount : undefined,
    authCpuMsPerLogin: serverLogins ? (authCpuSec * 1000) / serverLogins : undefined,
    loginsPerCpuSec: serverLogins !== undefined && authCpuSec > 0 ? serverLogins / authCpuSec : undefined,
  };
}

const num = (n: number | undefined, digits = 1): string => (n === undefined ? '-' : n.toFixed(digits));

/**
 * Renders the report (Markdown) of one login burst.
 * @param summary k6's summary export of login-burst.ts; `run` what the runner recorded.
 */
export function renderBurstReport(summary: K6Summary, run: BurstRecord): string {
  const m = (metric: string, key: string) => stat(summary, metric, key);
  const f = burstFigures(summary, run);
  const crossed = crossedThresholds(summary);
  const api = 'http_req_duration{kind:api}';
  const trend = (metric: string) => `${num(m(metric, 'med'))} / ${num(m(metric, 'p(99)'))} / ${num(m(metric, 'max'))} ms`;
  const lines: string[] = [];
  lines.push(`#### Login burst of ${run.burst} — ${run.startedAt}`);
  lines.push('');
  lines.push(
    `\`${run.command}\` on ${run.machine} (${run.stack}); raw RS256 ${run.rawRs256PerSec.toLocaleString('en-US')}/s on one core. ` +
      `Load average before: ${run.loadavgBefore.join(' ')}; after: ${run.loadavgAfter.join(' ')}. ` +
      `API ${run.apiRate}/s for ${run.apiDurationSec} s; ${run.burst} logins at ${run.burstStartSec} s${run.burstSpreadSec > 0 ? `, spread over ${run.burstSpreadSec} s` : ', all at once'}, ` +
      `each its own user at the production KDF cost (scrypt N=2^15, r=8, p=1). Hash limiter: concurrency ${run.hashLimiter.concurrency}, queue ${run.hashLimiter.queueMax}, wait ${run.hashLimiter.queueTimeoutMs} ms. ` +
      `k6 ran ${run.runSec.toFixed(0)} s and exited ${run.k6ExitCode ?? 'without a code'}: ${crossed.length === 0 ? 'every threshold held' : `crossed ${crossed.join('; ')}`}.`,
  );
  lines.push('');
  lines.push('| figure | value |');
  lines.push('|---|---|');
  lines.push(`| burst logins succeeded / of / failed after retries | ${f.ok} / ${run.burst} / ${f.failed} |`);
  lines.push(`| login requests sent (first tries and retries) | ${f.attempts} (${num(m('burst_attempts_per_login', 'avg'), 2)} per login on average, at most ${num(m('burst_attempts_per_login', 'max'), 0)}) |`);
  lines.push(`| 503 + Retry-After answers (shed) | ${f.shed} (the auth-service counted ${Object.entries(f.serverShed).map(([r, n]) => `${r} ${n}`).join(', ') || '-'}) |`);
  lines.push(`| 503 latency p50 / p99 / max | ${trend('burst_shed_duration')} |`);
  lines.push(`| admitted login latency (its own request) p50 / p99 / max | ${trend('burst_login_duration')} |`);
  lines.push(`| every burst request, p50 / p99 / max | ${trend('http_req_duration{kind:burst}')} |`);
  lines.push(`| no answer (timeout, k6 status 0) / 429 | ${f.noAnswer} / ${f.rateLimited} |`);
  lines.push(`| burst served in (its start to the last success) | ${num(f.servedInSec, 2)} s: ${num(f.loginsPerSec)} logins/s, ${num(f.loginsPerSec === undefined ? undefined : f.loginsPerSec / run.cores)} per core of the machine |`);
  lines.push(`| API p50 / p99 / max (${m(api, 'count') ?? 0} requests) | ${trend(api)} |`);
  const failedApi = m('http_req_failed{kind:api}', 'value');
  lines.push(`| API failed / checks failed / dropped arrivals | ${num(failedApi === undefined ? undefined : failedApi * 100, 3)} % / ${m('checks{kind:api}', 'fails') ?? 0} / ${m('dropped_iterations', 'count') ?? 0} |`);
  lines.push(
    `| **auth-service over the burst (its start to the last success): CPU, per login, logins per CPU-second** | **${num(f.burstCpuSec, 2)} s, ${num(f.burstCpuMsPerLogin)} ms, ${num(f.burstLoginsPerCpuSec)}/s** (Keycloak's sizing: ${KEYCLOAK_LOGINS_PER_VCPU_SEC}/s per vCPU) |`,
  );
  lines.push(`| auth-service with API traffic alone (the ${BACKGROUND_WINDOW_SEC} s before the burst) | ${num(f.backgroundCpuMsPerSec)} ms of CPU per second |`);
  lines.push(
    `| auth-service over the whole run: successful logins (setup's included), CPU, per login, logins per CPU-second | ${f.serverLogins ?? '-'}, ${f.authCpuSec.toFixed(2)} s, ${num(f.authCpuMsPerLogin)} ms, ${num(f.loginsPerCpuSec)}/s |`,
  );
  lines.push(`| mean scrypt time per check (wall, from its /metrics) | ${num(f.meanHashMs)} ms |`);
  lines.push('');
  const names = Object.keys(run.cpuMsAfter).sort();
  const wall = run.runSec;
  let total = 0;
  const cells: string[] = [];
  for (const name of names) {
    const cpu = ((run.cpuMsAfter[name] ?? 0) - (run.cpuMsBefore[name] ?? 0)) / 1000;
    if (cpu <= 0) continue; // a process that ended before the run (the migrations)
    total += cpu;
    cells.push(`${name} ${cpu.toFixed(1)}`);
  }
  lines.push(
    `CPU seconds during the run (${wall.toFixed(0)} s of wall time, ${run.cores} cores = ${(wall * run.cores).toFixed(0)} CPU-seconds available): ${cells.join(', ')}; ${total.toFixed(1)} in all. ` +
      'The CPU per login charges all the auth-service\'s CPU of the window to its successful logins: shed answers, the API mix\'s issuer-metadata requests and idle timers are included.',
  );
  return `${lines.join('\n')}\n`;
}
