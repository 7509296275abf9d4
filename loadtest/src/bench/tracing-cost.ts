/**
 * `make bench BENCH_ARGS="--tracing off,10,100"`: what OpenTelemetry tracing costs on the hot
 * path. For each setting, in the order given, one rig (./rig.ts `startRig`): the stack started
 * with tracing off (no tracer in any Envoy, no OTLP endpoint: the Node SDK is never loaded), or
 * with `make up TRACING=on`'s wiring at that edge sampling percentage (every Envoy's
 * OpenTelemetry tracer, every Node process's SDK with `parentbased_always_off`, the stack's own
 * OTLP receiver taking the spans), and mode 3's bench edge rendered with the same tracer. Then,
 * per mode (`--modes`, default ext_authz and full): a warm-up, the fixed rates (`--rates`, default
 * 100 and 400 req/s), the capacity search at the SLO; each step's CPU per request by process over
 * the step plus a tail in which the step's last spans are exported, and the spans the receiver
 * accepted per request sent (0 off, ~N at 100 %, ~N/10 at 10 %). The receiver's CPU is reported
 * apart, never in the path (in production the collector runs elsewhere).
 *
 * Writes loadtest/results/tracing-latest.{json,md} and, unless `--no-readme`, the block between
 * `<!-- bench-tracing:start -->` and `<!-- bench-tracing:end -->` in loadtest/README.md.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
import type { ReceiverStats } from '@jwt-mesh/stack';
import type { BenchOptions } from './options.js';
import { cpuPerRequest, type Accounted } from './procstat.js';
import type { RunMeta } from './report.js';
import { beginRun, endRun, say, stepFigures, writeResults } from './results.js';
import { pathProcesses, startRig, stopRig, type Rig } from './rig.js';
import { loadStep, measureCapacity, remeasureFailing, warmUp } from './steps.js';
import { RECEIVER_PROCESS, renderTracingMarkdown, settingLabel, spansPerRequest, tracingPathCpu, type TracingMode, type TracingModeResult, type TracingResult, type TracingSetting, type TracingStep } from './tracing-report.js';

/**
 * CPU is still counted this long after a step's last answer, milliseconds: the proxies flush
 * their spans every second (`tracing.opentelemetry.flush_interval_ms` 1000, envoy/src/render.ts)
 * and the Node batch span processors export every second under the stack
 * (`OTEL_BSP_SCHEDULE_DELAY=1000`), so by then the step's last spans are on their way. The same
 * window with tracing off, so that both count the same idle time.
 */
export const TAIL_MS = 2500;

/** The receiver's running totals (`GET /api/stats` of tools/stack's OTLP receiver). @throws Error when it does not answer 200. */
async function receiverStats(base: string): Promise<ReceiverStats> {
  const res = await request(`${base}/api/stats`, { signal: AbortSignal.timeout(5000) });
  if (res.statusCode !== 200) {
    await res.body.dump();
    throw new Error(`trace receiver: GET /api/stats answered ${res.statusCode}`);
  }
  return (await res.body.json()) as ReceiverStats;
}

/**
 * Waits until the receiver has taken no span for `quietMs` (all exports of earlier work are in),
 * at most `maxMs`. @returns its totals then.
 */
async function whenQuiet(base: string, quietMs = 1500, maxMs = 15_000): Promise<ReceiverStats> {
  const start = Date.now();
  let last = await receiverStats(base);
  let since = Date.now();
  while (Date.now() - start < maxMs) {
    await sleep(250);
    const now = await receiverStats(base);
    if (now.spans !== last.spans || now.exports !== last.exports) {
      last = now;
      since = Date.now();
    } else if (Date.now() - since >= quietMs) return now;
  }
  return last;
}

/** Per service: `after - before` of export requests and spans. */
function serviceDelta(before: ReceiverStats, after: ReceiverStats): Record<string, { exports: number; spans: number }> {
  const out: Record<string, { exports: number; spans: number }> = {};
  for (const [name, v] of Object.entries(after.services)) {
    const b = before.services[name] ?? { exports: 0, spans: 0 };
    if (v.spans - b.spans > 0 || v.exports - b.exports > 0) out[name] = { exports: v.exports - b.exports, spans: v.spans - b.spans };
  }
  return out;
}

/** Runs the tracing comparison: every mode of `opts.modes` under each of `opts.tracing`, one rig per setting. @returns the exit status. */
export async function runTracingCost(opts: BenchOptions): Promise<number> {
  const settings = opts.tracing as TracingSetting[];
  const modes = opts.modes as TracingMode[];
  const start = beginRun();
  say(`tracing: ${settings.map(settingLabel).join(', ')}; modes ${modes.join(', ')}; rates ${opts.rates.join(', ')} req/s; one rig per setting`);
  const results: TracingModeResult[] = [];
  for (const setting of settings) results.push(...(await measureSetting(opts, setting, modes)));
  const result = tracingResult(opts, endRun(start), settings, results);
  writeResults(opts, 'tracing-latest', result, renderTracingMarkdown(result), { marker: 'bench-tracing', table: 'tracing table' });
  return 0;
}

/** One tracing setting's rig, and its OTLP receiver when tracing is on. */
interface TracedRig {
  opts: BenchOptions;
  setting: TracingSetting;
  rig: Rig;
  /** The receiver's base URL (`GET /api/stats`); null when tracing is off. */
  receiverUrl: string | null;
  /** The receiver's process, accounted apart from the path's; empty when tracing is off. */
  receiverProc: Accounted[];
}

/** One setting: a rig traced at it (or not at all), each mode checked with a valid token, then measured. */
async function measureSetting(opts: BenchOptions, setting: TracingSetting, modes: readonly TracingMode[]): Promise<TracingModeResult[]> {
  say(`--- tracing ${settingLabel(setting)}: starting a rig ---`);
  const rig = await startRig({ pool: opts.pool, envoyConcurrency: opts.envoyConcurrency, edgeSamplePercent: setting === 'off' ? null : setting });
  try {
    const traced = tracedRig(opts, setting, rig);
    await checkValidToken(traced, modes);
    const out: TracingModeResult[] = [];
    for (const mode of modes) out.push(await measureTracingMode(traced, mode));
    return out;
  } finally {
    await stopRig(rig);
  }
}

/** @throws Error when tracing is on but the stack started no OTLP receiver, or no process of that name */
function tracedRig(opts: BenchOptions, setting: TracingSetting, rig: Rig): TracedRig {
  const receiverUrl = rig.stack.state.tracing?.receiver ?? null;
  if (setting !== 'off' && !receiverUrl) throw new Error('tracing on, but the stack started no OTLP receiver');
  const receiverProc: Accounted[] = rig.accounted.filter((p) => p.name === RECEIVER_PROCESS);
  if (setting !== 'off' && receiverProc.length === 0) throw new Error(`tracing on, but no process named ${RECEIVER_PROCESS} in the stack`);
  return { opts, setting, rig, receiverUrl, receiverProc };
}

/** @throws Error when a valid token does not get 200 from a mode's target */
async function checkValidToken({ rig, setting }: TracedRig, modes: readonly TracingMode[]): Promise<void> {
  for (const mode of modes) {
    const url = `${rig.targets[mode]}/api/orders/ord-1001`;
    const check = await request(url, { headers: { authorization: `Bearer ${rig.tokens.accessToken(0)}` }, signal: AbortSignal.timeout(10_000) });
    await check.body.dump();
    if (check.statusCode !== 200) throw new Error(`${mode} (tracing ${settingLabel(setting)}): a valid token got ${check.statusCode}, expected 200 (see .run/bench/logs)`);
  }
}

/** One mode under one setting: the warm-up, the fixed rates and the capacity search. */
async function measureTracingMode(traced: TracedRig, mode: TracingMode): Promise<TracingModeResult> {
  const { opts, setting, rig } = traced;
  await warmUp(rig, mode, opts);
  const { steps, search, capacity } = await measureCapacity((rate) => tracingStep(traced, mode, rate), opts, opts.trialSec + TAIL_MS / 1000 + 3);
  say(`${mode} tracing ${settingLabel(setting)}: capacity at the SLO ${capacity.rate} req/s${capacity.firstFail ? ` (fails at ${capacity.firstFail})` : ''}`);
  return { setting, mode, steps, search, capacity };
}

/** A step, measured again when its failure may not be the system's, as in ./main.ts (see {@link remeasureFailing}). */
async function tracingStep(traced: TracedRig, mode: TracingMode, rate: number): Promise<TracingStep> {
  return remeasureFailing(rate, traced.opts.foreignMaxCores, () => tracingStepOnce(traced, mode, rate), {
    announce: (best, disturbed) => say(`${mode} ${rate} req/s: ${disturbed ? `other processes used ${best.foreignCores} cores` : 'only the tail failed'}; measuring it again`),
    keep: (kept, attempt) => ({ ...kept, attempts: attempt }),
  });
}

/**
 * One measurement of `mode` at `rate` req/s: once the receiver is quiet, the load for `--trial-sec`
 * and {@link TAIL_MS} after it; CPU ms per request of the path and the receiver over the step with
 * and without the tail, and the spans the receiver took for it (until it is quiet again).
 */
async function tracingStepOnce(traced: TracedRig, mode: TracingMode, rate: number): Promise<TracingStep> {
  const { opts, rig, receiverUrl, receiverProc } = traced;
  const start = receiverUrl ? await whenQuiet(receiverUrl) : null;
  const procs = [...pathProcesses(mode, rig.accounted), ...receiverProc];
  const { r, before, atEnd, after, foreign } = await loadStep(rig, mode, rate, opts, { tokens: rig.tokens, procs, tailMs: TAIL_MS });
  const atWindowEnd = receiverUrl ? await receiverStats(receiverUrl) : null;
  const end = receiverUrl ? await whenQuiet(receiverUrl) : null;
  const s: TracingStep = {
    ...stepFigures(rate, r),
    cpuMsPerRequest: cpuPerRequest(before, after, r.answered),
    cpuMsPerRequestInStep: cpuPerRequest(before, atEnd, r.answered),
    tailMs: TAIL_MS,
    attempts: 1,
    foreignCores: foreign,
    sent: r.sent,
    spans: start && end ? end.spans - start.spans : null,
    lateSpans: end && atWindowEnd ? end.spans - atWindowEnd.spans : null,
    byService: start && end ? serviceDelta(start, end) : {},
  };
  sayTracingStep(traced.setting, mode, rate, s);
  await sleep(1000);
  return s;
}

/** Prints one step's line: latency, failures, the path's CPU and spans per request, the receiver's CPU, the foreign CPU. */
function sayTracingStep(setting: TracingSetting, mode: TracingMode, rate: number, s: TracingStep): void {
  const spr = spansPerRequest(s);
  say(
    `${mode.padEnd(9)} tracing ${settingLabel(setting).padEnd(5)} ${String(rate).padStart(6)} req/s -> ${s.achieved} achieved, p50 ${s.p50} ms, p99 ${s.p99} ms, failed ${s.failed}, ` +
      `path CPU ${tracingPathCpu(s.cpuMsPerRequest)} ms/request, spans/request ${spr === null ? '-' : spr.toFixed(2)}${s.lateSpans ? ` (${s.lateSpans} late)` : ''}` +
      `${s.cpuMsPerRequest[RECEIVER_PROCESS] !== undefined ? `, receiver ${s.cpuMsPerRequest[RECEIVER_PROCESS]} ms/request` : ''}, foreign CPU ${s.foreignCores} cores: ${s.pass ? 'pass' : 'FAIL'}`,
  );
}

/** The document the tracing pass writes: the run's facts and settings, the settings in run order, the rates, every mode under every setting. */
function tracingResult(opts: BenchOptions, meta: RunMeta & { rawRs256PerSec: number }, settings: TracingSetting[], results: TracingModeResult[]): TracingResult {
  return {
    meta: {
      ...meta,
      settings: {
        trialSec: opts.trialSec,
        warmupSec: opts.warmupSec,
        searchBudgetSec: opts.searchBudgetSec,
        pool: opts.pool,
        connections: opts.connections,
        envoyConcurrency: opts.envoyConcurrency,
        maxRate: opts.maxRate,
        foreignMaxCores: opts.foreignMaxCores,
        tailMs: TAIL_MS,
      },
    },
    sloP99Ms: 200,
    settings,
    rates: [...opts.rates].sort((a, b) => a - b),
    results,
  };
}
