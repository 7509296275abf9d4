/**
 * The benchmark's result document (JSON) and its markdown rendering. Pure: the tests render a
 * hand-made result.
 */
import type { LatencySummary } from '../stats.js';
import type { PropagationSummary } from './propagation.js';

/**
 * The modes, in run and report order: the four of the side-by-side comparison, the chain without
 * authentication (the floor of mode 4), and modes 3 and 4 with many distinct tokens.
 */
export const MODES = ['none', 'jwt_authn', 'ext_authz', 'ext_authz_many', 'chain_noauth', 'full', 'full_many'] as const;
export type BenchMode = (typeof MODES)[number];

/** Modes that send tokens from the many-token source (`--many-tokens`) instead of the pool. */
export const MANY_TOKEN_MODES: ReadonlySet<BenchMode> = new Set(['ext_authz_many', 'full_many']);

/** Human labels of the modes. */
export const MODE_LABELS: Record<BenchMode, string> = {
  none: '1. no authentication (floor)',
  jwt_authn: '2. Envoy jwt_authn (native)',
  ext_authz: '3. jwt-mesh ext_authz',
  ext_authz_many: '3m. jwt-mesh ext_authz, many distinct tokens',
  chain_noauth: '5. chain without authentication (edge without ext_authz, services verify nothing)',
  full: '4. full path (ext_authz + 3 services verifying)',
  full_many: '4m. full path, many distinct tokens',
};

/** One measured step: one mode at one offered rate. Times in ms, rates in req/s. */
export interface StepResult {
  rate: number;
  achieved: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  /** Requests that did not end in the expected status (non-2xx + errors + dropped). */
  failed: number;
  nonOk: Record<string, number>;
  errors: Record<string, number>;
  dropped: number;
  /** p99 of the generator's lateness (actual minus scheduled send). */
  lagP99: number;
  /** p99 < SLO, no failure, achieved >= 95 % of offered. */
  pass: boolean;
  /** CPU milliseconds per answered request, per process (generator = the load runner itself). */
  cpuMsPerRequest: Record<string, number>;
  /** How many times the step was measured (a failing step is repeated when disturbed or tail-only). */
  attempts: number;
  /** Cores' worth of CPU that processes outside the benchmark used during the (kept) measurement. */
  foreignCores: number;
  /** The failed first measurement, when `attempts` is 2. */
  firstAttempt?: { p99: number; failed: number; achieved: number };
}

/** CPU ms per request of the path's processes, without the load generator. */
export function pathCpu(s: StepResult): number {
  return Math.round(Object.entries(s.cpuMsPerRequest).filter(([k]) => k !== 'generator').reduce((a, [, v]) => a + v, 0) * 1000) / 1000;
}

/** The passing step at the mode's capacity (grid or search), if any. */
export function capacityStep(m: ModeResult): StepResult | undefined {
  return [...m.steps, ...m.search].find((s) => s.pass && s.rate === m.capacity.rate);
}

/** Everything measured for one mode. */
export interface ModeResult {
  mode: BenchMode;
  label: string;
  /** The HTTP filters of the Envoy that serves this mode (the edge's for `full`). */
  filters: string[];
  target: string;
  /** Statuses of one request with a valid token and one without (is authentication enforced?). */
  enforced: { withToken: number; withoutToken: number };
  /** The fixed grid of rates (stops after the first failing rate). */
  steps: StepResult[];
  /** Trials of the capacity search (beyond the grid). */
  search: StepResult[];
  capacity: { rate: number; firstFail: number | null; converged: boolean };
  /** The step at half of mode 1's capacity. */
  half: StepResult | null;
  /** Modes 4 and 5 only: the step at half of mode 5's capacity (the cost of authentication in the chain). */
  halfChain?: StepResult | null;
}

/** What every bench run records about the machine and the run (`runMeta` in ./results.ts). */
export interface RunMeta {
  /** ISO 8601 time the document was written. */
  date: string;
  /** Wall time of the whole run, seconds. */
  durationSec: number;
  host: { cores: number; cpuModel: string; memGiB: number; platform: string };
  /** os.loadavg() before the run and after it (1, 5, 15 minutes). */
  loadavgBefore: number[];
  loadavgAfter: number[];
  /** The machine's raw RS256 rate: node:crypto verifications per second on one core (./machine.ts). */
  rawRs256PerSec?: number;
  /** `uptime` output before and after. */
  uptimeBefore: string;
  uptimeAfter: string;
  versions: Record<string, string>;
  git: { commit: string; dirty: boolean };
}

/** The whole result document written to loadtest/results/bench-latest.json. */
export interface BenchResult {
  meta: RunMeta & {
    settings: Record<string, unknown>;
    notes: string[];
  };
  sloP99Ms: number;
  modes: ModeResult[];
  halfRate: number | null;
  propagation: (PropagationSummary & { verifiers: string[]; timeoutMs: number }) | null;
  aims: Array<{ aim: string; figure: string; met: boolean | null }>;
}

const f1 = (x: number): string => (Number.isFinite(x) ? (Math.round(x * 10) / 10).toString() : '-');
const f2 = (x: number): string => (Number.isFinite(x) ? (Math.round(x * 100) / 100).toString() : '-');
const pct = (x: number | null): string => (x === null || !Number.isFinite(x) ? '-' : `${Math.round(x * 100)} %`);
const failText = (s: StepResult): string => {
  if (s.failed === 0) return '0';
  const parts = [...Object.entries(s.nonOk).map(([k, v]) => `${v}x${k}`), ...Object.entries(s.errors).map(([k, v]) => `${v}x${k}`)];
  if (s.dropped) parts.push(`${s.dropped} dropped`);
  return `${s.failed} (${parts.join(', ')})`;
};
const lat = (l: LatencySummary): string => `${f2(l.p50)} / ${f2(l.p99)} / ${f2(l.max)}`;

/** Capacity of `mode` divided by capacity of `base`, or null when either is unknown or 0. */
export function ratio(modes: readonly ModeResult[], mode: BenchMode, base: BenchMode): number | null {
  const a = modes.find((m) => m.mode === mode)?.capacity.rate;
  const b = modes.find((m) => m.mode === base)?.capacity.rate;
  return a !== undefined && b !== undefined && b > 0 ? a / b : null;
}

/**
 * The aim "`mode` p99 <= `floor` p99 + 5 ms at half of `floor`'s capacity", from the two steps
 * measured at that one rate (req/s); not measured (`met: null`) when either step is missing.
 */
function p99Aim(mode: string, floor: string, withAuth: StepResult | null | undefined, base: StepResult | null | undefined, rate: number | null): BenchResult['aims'][number] {
  const aim = `${mode} p99 <= ${floor} p99 + 5 ms at half of ${floor}'s capacity`;
  if (!withAuth || !base) return { aim, figure: '-', met: null };
  const d = withAuth.p99 - base.p99;
  return { aim: `${aim} (${rate} req/s)`, figure: `${f2(withAuth.p99)} ms vs ${f2(base.p99)} ms (${d >= 0 ? '+' : ''}${f2(d)} ms)`, met: d <= 5 && withAuth.failed === 0 };
}

/** Evaluates the issues' aims (figures reported, not asserted). */
export function evaluateAims(r: Pick<BenchResult, 'modes' | 'propagation' | 'halfRate'>): BenchResult['aims'] {
  const aims: BenchResult['aims'] = [];
  const r32 = ratio(r.modes, 'ext_authz', 'jwt_authn');
  aims.push({ aim: "mode 3 capacity at the SLO >= 60 % of mode 2's", figure: pct(r32), met: r32 === null ? null : r32 >= 0.6 });
  const half = (mode: BenchMode) => r.modes.find((m) => m.mode === mode)?.half;
  aims.push(p99Aim('mode 3', 'mode 1', half('ext_authz'), half('none'), r.halfRate));
  const r45 = ratio(r.modes, 'full', 'chain_noauth');
  aims.push({ aim: "mode 4 capacity at the SLO >= 90 % of mode 5's (the chain without authentication)", figure: pct(r45), met: r45 === null ? null : r45 >= 0.9 });
  const c5 = r.modes.find((m) => m.mode === 'chain_noauth')?.halfChain;
  aims.push(p99Aim('mode 4', 'mode 5', r.modes.find((m) => m.mode === 'full')?.halfChain, c5, c5?.rate ?? null));
  const r41 = ratio(r.modes, 'full', 'none');
  aims.push({ aim: 'mode 4 capacity as a share of mode 1 >= 2x the 6.9 % before issue 12 (>= 13.8 %)', figure: pct(r41), met: r41 === null ? null : r41 >= 0.138 });
  if (r.propagation) {
    const p = r.propagation;
    aims.push({
      aim: 'revocation seen by every verifier within 100 ms p99',
      figure: `${p.all.count > 0 ? `p99 ${f2(p.all.p99)} ms` : 'no trial saw every verifier reject'} over ${p.trials} trials${p.notSeen ? `, ${p.notSeen} not seen within ${p.timeoutMs} ms` : ''}`,
      met: p.notSeen === 0 && p.all.count > 0 && p.all.p99 <= 100,
    });
  } else {
    aims.push({ aim: 'revocation seen by every verifier within 100 ms p99', figure: '-', met: null });
  }
  return aims;
}

/** Renders the markdown report. */
export function renderMarkdown(r: BenchResult): string {
  const m = r.meta;
  const L: string[] = [];
  L.push(`### \`make bench\` — ${m.date}`);
  L.push('');
  L.push(
    `Machine: ${m.host.cores} cores (${m.host.cpuModel}), ${m.host.memGiB} GiB, ${m.host.platform}. ` +
      `Load average before: ${m.loadavgBefore.map(f2).join(' ')}; after: ${m.loadavgAfter.map(f2).join(' ')}. Run took ${Math.round(m.durationSec)} s. ` +
      `Raw RS256 (node:crypto verify, one core): ${m.rawRs256PerSec !== undefined ? `${m.rawRs256PerSec.toLocaleString('en-US')}/s` : 'not measured'}.`,
  );
  L.push('');
  L.push(`Versions: ${Object.entries(m.versions).map(([k, v]) => `${k} ${v}`).join(', ')}; commit ${m.git.commit.slice(0, 10)}${m.git.dirty ? ' (+ uncommitted changes)' : ''}.`);
  L.push('');
  const s = m.settings;
  L.push(
    `Open model (fixed arrival rate), ${String(s.trialSec)} s per step after ${String(s.warmupSec)} s warm-up, latency from the scheduled send time, ` +
      `GET /api/orders/ord-1001 with a Bearer token from a pool of ${String(s.pool)} sessions (modes 3m and 4m: ${String(s.manyTokens ?? '-')} distinct tokens from ${String(s.manyFamilies ?? '-')} logins and their refreshes, so the first request of each token is verified cold and each request misses the 1 s revocation cache); SLO p99 < ${r.sloP99Ms} ms with no failed request ` +
      `(and at least 95 % of the offered rate achieved). Every Envoy runs with --concurrency ${String(s.envoyConcurrency)}; modes 1-3 share one plain upstream. ` +
      `A failing step is measured again (up to 3 tries) when processes outside the benchmark used more than ${String(s.foreignMaxCores)} cores during it, or when only its tail failed.`,
  );
  L.push('');
  L.push('**Capacity at the SLO**');
  L.push('');
  L.push('| mode | HTTP filters | no token → | capacity (req/s) | vs mode 1 | vs mode 2 | path CPU ms / request at capacity |');
  L.push('|---|---|---|---:|---:|---:|---:|');
  for (const mode of r.modes) {
    const cap = mode.capacity;
    const capText = `${cap.rate}${cap.firstFail ? ` (fails at ${cap.firstFail})` : ' (no failing rate found)'}${cap.converged ? '' : ' *'}`;
    const filters = mode.filters.filter((x) => !/router|header_mutation/.test(x)).map((x) => x.replace('envoy.filters.http.', '')).join(', ') || '—';
    const cs = capacityStep(mode);
    L.push(`| ${mode.label} | ${filters} | ${mode.enforced.withoutToken} | ${capText} | ${pct(ratio(r.modes, mode.mode, 'none'))} | ${pct(ratio(r.modes, mode.mode, 'jwt_authn'))} | ${cs ? f2(pathCpu(cs)) : '-'} |`);
  }
  if (r.modes.some((x) => !x.capacity.converged)) L.push('', '\\* the search stopped on its time budget before bracketing the capacity within 10 %.');
  L.push('');
  L.push('**Per arrival rate** (p50 / p99 / max in ms; failed = non-2xx + errors + dropped)');
  L.push('');
  L.push('| mode | offered | achieved | p50 / p99 / max | failed | generator lag p99 | foreign CPU (cores) | SLO |');
  L.push('|---|---:|---:|---|---|---:|---:|---|');
  for (const mode of r.modes) {
    const steps = [...mode.steps, ...mode.search].sort((a, b) => a.rate - b.rate);
    for (const st of steps) {
      const verdict = st.pass
        ? st.attempts > 1
          ? `pass (try ${st.attempts}; 1st: p99 ${f2(st.firstAttempt?.p99 ?? NaN)}, failed ${st.firstAttempt?.failed ?? '-'})`
          : 'pass'
        : st.attempts > 1
          ? `FAIL (${st.attempts} tries)`
          : 'FAIL';
      L.push(`| ${mode.label} | ${st.rate} | ${f1(st.achieved)} | ${lat({ count: 0, min: 0, mean: 0, p50: st.p50, p90: st.p90, p99: st.p99, p999: 0, max: st.max })} | ${failText(st)} | ${f2(st.lagP99)} | ${f2(st.foreignCores)} | ${verdict} |`);
    }
  }
  if (r.halfRate !== null) {
    L.push('');
    L.push(`**At half of mode 1's capacity (${r.halfRate} req/s)**`);
    L.push('');
    L.push('| mode | p50 ms | p99 ms | p99 − mode 1 | failed | CPU ms / request (by process) |');
    L.push('|---|---:|---:|---:|---|---|');
    const base = r.modes.find((x) => x.mode === 'none')?.half;
    for (const mode of r.modes) {
      const h = mode.half;
      if (!h) continue;
      const cpu = Object.entries(h.cpuMsPerRequest)
        .filter(([, v]) => v >= 0.005)
        .sort((a, b) => b[1] - a[1])
        .map(([k, v]) => `${k} ${f2(v)}`)
        .join(', ');
      L.push(`| ${mode.label} | ${f2(h.p50)} | ${f2(h.p99)} | ${base ? `${h.p99 - base.p99 >= 0 ? '+' : ''}${f2(h.p99 - base.p99)}` : '-'} | ${failText(h)} | ${cpu} |`);
    }
  }
  const chainHalf = r.modes.filter((x) => x.halfChain);
  if (chainHalf.length > 0) {
    L.push('');
    L.push(`**The cost of authentication in the chain: at half of mode 5's capacity (${chainHalf[0]?.halfChain?.rate} req/s)**`);
    L.push('');
    L.push('| mode | p50 ms | p99 ms | failed | path CPU ms / request | CPU ms / request (by process) |');
    L.push('|---|---:|---:|---|---:|---|');
    for (const mode of chainHalf) {
      const h = mode.halfChain as StepResult;
      const cpu = Object.entries(h.cpuMsPerRequest).filter(([, v]) => v >= 0.005).sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${f2(v)}`).join(', ');
      L.push(`| ${mode.label} | ${f2(h.p50)} | ${f2(h.p99)} | ${failText(h)} | ${f2(pathCpu(h))} | ${cpu} |`);
    }
  }
  if (r.propagation) {
    const p = r.propagation;
    L.push('');
    L.push(`**Revocation propagation** (${p.trials} trials: POST /auth/revoke sent → first rejection at each verifier, ms; probes back to back, timeout ${p.timeoutMs} ms)`);
    L.push('');
    L.push('| verifier | p50 | p99 | max | probe resolution (p50 of the preceding probe\'s send) |');
    L.push('|---|---:|---:|---:|---:|');
    for (const v of p.verifiers) {
      const s1 = p.perVerifier[v];
      const lo = p.perVerifierLower[v];
      if (s1 && s1.count > 0) L.push(`| ${v} | ${f2(s1.p50)} | ${f2(s1.p99)} | ${f2(s1.max)} | ${lo && lo.count > 0 ? f2(lo.p50) : '-'} |`);
      else L.push(`| ${v} | not seen | not seen | - | - |`);
    }
    L.push(p.all.count > 0 ? `| **every verifier** (slowest per trial) | **${f2(p.all.p50)}** | **${f2(p.all.p99)}** | ${f2(p.all.max)} | |` : '| **every verifier** | not seen | not seen | - | |');
    L.push('');
    L.push(`The revoke call itself (database write, then the Redis publish) answered in p50 ${f2(p.revoke.p50)} ms / p99 ${f2(p.revoke.p99)} ms; measured from that answer, the slowest verifier rejected at p50 ${f2(p.sinceRevokeAnswer.p50)} ms / p99 ${f2(p.sinceRevokeAnswer.p99)} ms / max ${f2(p.sinceRevokeAnswer.max)} ms (negative: before the answer reached the client).${p.notSeen ? ` ${p.notSeen} trial(s) had a verifier that still accepted the token after ${p.timeoutMs} ms.` : ''}`);
  }
  const full = r.modes.find((x) => x.mode === 'full');
  const fullStep = full ? capacityStep(full) : undefined;
  if (fullStep) {
    const cpu = pathCpu(fullStep);
    L.push('');
    L.push(
      `**Sizing from the bench.** The full path (mode 4) spent ${f2(cpu)} ms of CPU per request over all its processes ` +
        `(edge, authz replicas, three services, three sidecars, Redis) at ${fullStep.rate} req/s. The ~5,000 req/s of 10,000 k6 users ` +
        `would need about ${Math.ceil((5000 * cpu) / 1000)} cores of this machine's kind for the mesh alone, before headroom (aim for ~60 % utilisation: ` +
        `${Math.ceil((5000 * cpu) / 1000 / 0.6)} cores), plus the auth service's logins and the load generator.`,
    );
  }
  L.push('');
  L.push('**Aims of issues 5 and 12** (reported, not asserted)');
  L.push('');
  for (const a of r.aims) L.push(`- ${a.aim}: ${a.figure} — ${a.met === null ? 'not measured' : a.met ? 'met' : 'NOT met'}`);
  if (m.notes.length) {
    L.push('');
    for (const n of m.notes) L.push(`> ${n}`);
  }
  L.push('');
  return L.join('\n');
}
