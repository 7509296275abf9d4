/**
 * `make bench --tracing`: what OpenTelemetry tracing costs on the hot path. The pure parts: the
 * `--tracing` list, the result document (JSON) and its markdown table. The run itself is in
 * ./tracing-cost.ts; the tests render a hand-made result.
 */
import type { RunMeta, StepResult } from './report.js';

/**
 * One tracing setting of a run: `'off'` (no tracer rendered in any Envoy, no OTLP endpoint for
 * any Node process: the SDK is not even loaded), or the percentage (0..100) of requests without
 * a `traceparent` that the edge samples (W3C Trace Context; every sidecar and Node process
 * follows the edge's decision).
 */
export type TracingSetting = 'off' | number;

/** The modes a tracing run can drive: the ones whose edge carries the tracer (mode 3's bench edge, mode 4's stack edge). */
export const TRACING_MODES = ['ext_authz', 'full'] as const;
export type TracingMode = (typeof TRACING_MODES)[number];

/** Human labels of {@link TRACING_MODES}. */
export const TRACING_MODE_LABELS: Record<TracingMode, string> = {
  ext_authz: '3. ext_authz',
  full: '4. full path',
};

/** The name of the stack's OTLP receiver process (tools/stack TRACES_PART): its CPU is shown apart, never in the path. */
export const RECEIVER_PROCESS = 'traces';

/**
 * Parses the value of `--tracing`: a comma-separated list of `off` and sampling percentages
 * (0..100, decimals allowed, e.g. `off,10,100` or `off,0.5,100`), each at most once.
 * @returns the settings in the order given (the order they run in)
 * @throws Error whose message starts with `--tracing:` and names the bad item
 */
export function parseTracingSettings(list: string): TracingSetting[] {
  const items = list.split(',').map((x) => x.trim());
  const out: TracingSetting[] = [];
  const usage = 'use off or a sampling percentage from 0 to 100, comma-separated (e.g. --tracing off,10,100)';
  for (const item of items) {
    let setting: TracingSetting;
    if (item.toLowerCase() === 'off') setting = 'off';
    else {
      const n = /^\d+(\.\d+)?%?$/.test(item) ? Number(item.replace('%', '')) : NaN;
      if (!Number.isFinite(n) || n < 0 || n > 100) throw new Error(`--tracing: ${JSON.stringify(item)} is not a setting: ${usage}`);
      setting = n;
    }
    if (out.includes(setting)) throw new Error(`--tracing: ${settingLabel(setting)} is listed twice`);
    out.push(setting);
  }
  return out;
}

/** `off` or `10 %`. */
export function settingLabel(s: TracingSetting): string {
  return s === 'off' ? 'off' : `${s} %`;
}

/** One measured step of a tracing run: a {@link StepResult} plus what the tracing side did. */
export interface TracingStep extends StepResult {
  /**
   * CPU milliseconds per request per process over the step **and its tail** (the seconds after the
   * last request in which the proxies and the Node batch processors export the step's last spans),
   * `generator` and the receiver ({@link RECEIVER_PROCESS}) included. `cpuMsPerRequest` holds the
   * same over this window; {@link cpuMsPerRequestInStep} the step alone.
   */
  cpuMsPerRequestInStep: Record<string, number>;
  /** The tail after the last answer over which CPU is still counted, milliseconds. */
  tailMs: number;
  /** Requests sent (the denominator of the span figures). */
  sent: number;
  /** Spans the receiver accepted for this step (until it went quiet); null when tracing is off. */
  spans: number | null;
  /** Spans that arrived after the CPU window closed (their export work was not counted). */
  lateSpans: number | null;
  /** Per `service.name`: export requests and spans the receiver accepted for this step. */
  byService: Record<string, { exports: number; spans: number }>;
}

/** One mode under one tracing setting. */
export interface TracingModeResult {
  setting: TracingSetting;
  mode: TracingMode;
  /** The fixed rates (stops after the first failing one). */
  steps: TracingStep[];
  /** Trials of the capacity search beyond the grid. */
  search: TracingStep[];
  capacity: { rate: number; firstFail: number | null; converged: boolean };
}

/** The document written to loadtest/results/tracing-latest.json. */
export interface TracingResult {
  meta: RunMeta & {
    /** node:crypto RS256 verifications per second on one core (./machine.ts); always measured here. */
    rawRs256PerSec: number;
    /** trialSec, warmupSec, searchBudgetSec, pool, connections, envoyConcurrency, tailMs, ... */
    settings: Record<string, unknown>;
  };
  sloP99Ms: number;
  /** The settings in run order (one rig each). */
  settings: TracingSetting[];
  /** The fixed rates every mode was measured at, req/s. */
  rates: number[];
  results: TracingModeResult[];
}

const f2 = (x: number): string => (Number.isFinite(x) ? (Math.round(x * 100) / 100).toString() : '-');
const f3 = (x: number): string => (Number.isFinite(x) ? (Math.round(x * 1000) / 1000).toString() : '-');

/** Path CPU ms per request of a step: every process but the generator and the receiver. */
export function tracingPathCpu(cpu: Record<string, number>): number {
  return Math.round(Object.entries(cpu).filter(([k]) => k !== 'generator' && k !== RECEIVER_PROCESS).reduce((a, [, v]) => a + v, 0) * 1000) / 1000;
}

/** Spans received per request sent, or null (tracing off, or nothing sent). */
export function spansPerRequest(s: Pick<TracingStep, 'spans' | 'sent'>): number | null {
  return s.spans === null || s.sent <= 0 ? null : s.spans / s.sent;
}

/** The step of `r` at `rate` (grid first, then search), if measured. */
export function stepAt(r: TracingModeResult, rate: number): TracingStep | undefined {
  return r.steps.find((s) => s.rate === rate) ?? r.search.find((s) => s.rate === rate);
}

/** `+1.23 (+15 %)` against the same mode with tracing off at the same rate; '' when there is no such figure. */
function versusOff(value: number, off: number | undefined): string {
  if (off === undefined || !Number.isFinite(off) || off <= 0) return '';
  const d = value - off;
  return ` (${d >= 0 ? '+' : '−'}${f2(Math.abs(d))}, ${d >= 0 ? '+' : '−'}${Math.round((Math.abs(d) / off) * 100)} %)`;
}

/**
 * Renders the run as markdown: the summary table (one row per mode and setting: spans per
 * request, capacity at the SLO, p50/p99 and path CPU per request at each fixed rate against
 * tracing off, the receiver's CPU apart), CPU per request by process at each fixed rate, spans
 * and export requests per request by service, and every step.
 */
export function renderTracingMarkdown(r: TracingResult): string {
  const m = r.meta;
  const L: string[] = [];
  const s = m.settings;
  L.push(`#### \`make bench\` with tracing ${r.settings.map(settingLabel).join(', ')} — ${m.date}`);
  L.push('');
  L.push(
    `Machine: ${m.host.cores} cores (${m.host.cpuModel}), ${m.host.memGiB} GiB, ${m.host.platform}. ` +
      `Load average before: ${m.loadavgBefore.map(f2).join(' ')}; after: ${m.loadavgAfter.map(f2).join(' ')}. Run took ${Math.round(m.durationSec)} s. ` +
      `Raw RS256 (node:crypto verify, one core): ${m.rawRs256PerSec.toLocaleString('en-US')}/s. ` +
      `Commit ${m.git.commit.slice(0, 10)}${m.git.dirty ? ' (+ uncommitted changes)' : ''}; Envoy ${m.versions['envoy'] ?? '?'}, Node ${m.versions['node'] ?? '?'}.`,
  );
  L.push('');
  L.push(
    `One rig (stack, bench Envoys) per setting, in the order listed; ${String(s['trialSec'])} s per step after ${String(s['warmupSec'])} s warm-up, open model, ` +
      `GET /api/orders/ord-1001 with a Bearer token from a pool of ${String(s['pool'])} sessions and no \`traceparent\` (the edge decides); SLO p99 < ${r.sloP99Ms} ms, no failed request, ≥ 95 % of the offered rate. ` +
      `CPU is counted over each step plus a ${String(s['tailMs'])} ms tail in which the proxies and the Node batch span processors export the step's last spans (the same window with tracing off). ` +
      `Spans are those the stack's OTLP receiver (part \`${RECEIVER_PROCESS}\`) accepted for the step; its CPU is shown apart and not counted in the path.`,
  );
  L.push('');
  const rates = r.rates;
  const off = (mode: TracingMode) => r.results.find((x) => x.mode === mode && x.setting === 'off');
  L.push(
    `| mode | tracing | spans / request | capacity at the SLO (req/s) | ${rates.map((x) => `p50 / p99 at ${x} req/s (ms)`).join(' | ')} | ${rates.map((x) => `path CPU ms / request at ${x} req/s (vs off)`).join(' | ')} | receiver CPU ms / request at ${rates.join(' / ')} req/s (not in the path) |`,
  );
  L.push(`|---|---|---:|---:|${rates.map(() => '---').join('|')}|${rates.map(() => '---:').join('|')}|---:|`);
  // Grouped by mode, each in the settings' run order.
  const byMode = TRACING_MODES.flatMap((mode) => r.results.filter((x) => x.mode === mode));
  for (const x of byMode) {
    const base = off(x.mode);
    const measured = [...x.steps, ...x.search];
    const spans = measured.filter((st) => st.spans !== null);
    const totalSpans = spans.reduce((a, st) => a + (st.spans ?? 0), 0);
    const totalSent = spans.reduce((a, st) => a + st.sent, 0);
    const spanText = x.setting === 'off' ? '0 (off)' : totalSent > 0 ? f2(totalSpans / totalSent) : '-';
    const cap = `${x.capacity.rate}${x.capacity.firstFail ? ` (fails at ${x.capacity.firstFail})` : ''}${x.capacity.converged ? '' : ' *'}`;
    const lat = rates.map((rate) => {
      const st = stepAt(x, rate);
      return st ? `${f2(st.p50)} / ${f2(st.p99)}${st.pass ? '' : ' FAIL'}` : '-';
    });
    const cpu = rates.map((rate) => {
      const st = stepAt(x, rate);
      if (!st) return '-';
      const b = base && x.setting !== 'off' ? stepAt(base, rate) : undefined;
      const v = tracingPathCpu(st.cpuMsPerRequest);
      return `${f2(v)}${b ? versusOff(v, tracingPathCpu(b.cpuMsPerRequest)) : ''}`;
    });
    const recv = rates
      .map((rate) => stepAt(x, rate)?.cpuMsPerRequest[RECEIVER_PROCESS])
      .filter((v): v is number => v !== undefined);
    L.push(`| ${TRACING_MODE_LABELS[x.mode]} | ${settingLabel(x.setting)} | ${spanText} | ${cap} | ${lat.join(' | ')} | ${cpu.join(' | ')} | ${x.setting === 'off' ? '—' : recv.length ? recv.map(f2).join(' / ') : '-'} |`);
  }
  if (r.results.some((x) => !x.capacity.converged)) L.push('', '\\* the search stopped on its time budget before bracketing the capacity within 10 %.');

  for (const mode of TRACING_MODES) {
    const rows = r.results.filter((x) => x.mode === mode);
    if (rows.length === 0) continue;
    for (const rate of rates) {
      const steps = rows.map((x) => stepAt(x, rate));
      if (steps.every((st) => !st)) continue;
      const names = new Set<string>();
      for (const st of steps) for (const k of Object.keys(st?.cpuMsPerRequest ?? {})) if (k !== 'generator' && k !== RECEIVER_PROCESS) names.add(k);
      L.push('');
      L.push(`**${TRACING_MODE_LABELS[mode]} at ${rate} req/s: CPU ms per request by process**`);
      L.push('');
      L.push(`| process | ${rows.map((x) => settingLabel(x.setting)).join(' | ')} |`);
      L.push(`|---|${rows.map(() => '---:').join('|')}|`);
      for (const name of [...names].sort()) L.push(`| ${name} | ${steps.map((st) => (st ? f3(st.cpuMsPerRequest[name] ?? 0) : '-')).join(' | ')} |`);
      L.push(`| **the path** | ${steps.map((st) => (st ? `**${f3(tracingPathCpu(st.cpuMsPerRequest))}**` : '-')).join(' | ')} |`);
      L.push(`| the path, the step alone (no tail) | ${steps.map((st) => (st ? f3(tracingPathCpu(st.cpuMsPerRequestInStep)) : '-')).join(' | ')} |`);
      L.push(`| receiver (not in the path) | ${steps.map((st, i) => (!st ? '-' : rows[i]?.setting === 'off' ? '—' : f3(st.cpuMsPerRequest[RECEIVER_PROCESS] ?? 0))).join(' | ')} |`);
      L.push(`| generator (not in the path) | ${steps.map((st) => (st ? f3(st.cpuMsPerRequest['generator'] ?? 0) : '-')).join(' | ')} |`);
      L.push(`| p50 / p99 ms | ${steps.map((st) => (st ? `${f2(st.p50)} / ${f2(st.p99)}` : '-')).join(' | ')} |`);
      const traced = rows.map((x, i) => ({ x, st: steps[i] })).filter((y) => y.x.setting !== 'off' && y.st && y.st.spans !== null);
      if (traced.length > 0) {
        const services = new Set<string>();
        for (const y of traced) for (const k of Object.keys(y.st?.byService ?? {})) services.add(k);
        L.push('');
        L.push(`Spans and OTLP export requests per request by service (${TRACING_MODE_LABELS[mode]}, ${rate} req/s): spans / exports`);
        L.push('');
        L.push(`| service.name | ${traced.map((y) => settingLabel(y.x.setting)).join(' | ')} |`);
        L.push(`|---|${traced.map(() => '---:').join('|')}|`);
        for (const svc of [...services].sort()) {
          L.push(`| ${svc} | ${traced.map((y) => {
            const b = y.st?.byService[svc];
            const sent = y.st?.sent ?? 0;
            return b && sent > 0 ? `${f3(b.spans / sent)} / ${f3(b.exports / sent)}` : '0 / 0';
          }).join(' | ')} |`);
        }
        L.push(`| **all** | ${traced.map((y) => {
          const sent = y.st?.sent ?? 0;
          const ex = Object.values(y.st?.byService ?? {}).reduce((a, b) => a + b.exports, 0);
          return sent > 0 ? `**${f3((y.st?.spans ?? 0) / sent)} / ${f3(ex / sent)}**` : '-';
        }).join(' | ')} |`);
      }
    }
  }

  L.push('');
  L.push('**Every step** (p50 / p99 / max in ms; failed = non-2xx + errors + dropped)');
  L.push('');
  L.push('| mode | tracing | offered | achieved | p50 / p99 / max | failed | spans / request | late spans | path CPU ms / request | foreign CPU (cores) | SLO |');
  L.push('|---|---|---:|---:|---|---:|---:|---:|---:|---:|---|');
  for (const x of byMode) {
    for (const st of [...x.steps, ...x.search].sort((a, b) => a.rate - b.rate)) {
      const spr = spansPerRequest(st);
      L.push(
        `| ${TRACING_MODE_LABELS[x.mode]} | ${settingLabel(x.setting)} | ${st.rate} | ${f2(st.achieved)} | ${f2(st.p50)} / ${f2(st.p99)} / ${f2(st.max)} | ${st.failed} | ${spr === null ? '—' : f2(spr)} | ${st.lateSpans ?? '—'} | ${f2(tracingPathCpu(st.cpuMsPerRequest))} | ${f2(st.foreignCores)} | ${st.pass ? (st.attempts > 1 ? `pass (try ${st.attempts})` : 'pass') : st.attempts > 1 ? `FAIL (${st.attempts} tries)` : 'FAIL'} |`,
      );
    }
  }
  L.push('');
  return L.join('\n');
}
