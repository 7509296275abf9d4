/**
 * How a pass of `make bench` measures one mode on a rig (./main.ts, and ./tracing-cost.ts once per
 * tracing setting): a warm-up, one step per fixed rate, lowest first, a failing step measured
 * again when its failure may not be the system's, then the capacity at the SLO (p99 < 200 ms, no
 * failed request) found by ./capacity.ts's search within a time budget.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { runLoad, type LoadResult, type TokenSource } from '../runner.js';
import { findCapacity } from './capacity.js';
import type { BenchOptions } from './options.js';
import { cpuSnapshot, foreignCores, machineBusyMs, type Accounted } from './procstat.js';
import type { BenchMode, StepResult } from './report.js';
import { orderRoute, type Rig } from './rig.js';

/** Whether `mode` sends through the chain orders -> inventory -> profile (modes 4, 4m and 5). */
export function isChainMode(mode: BenchMode): boolean {
  return mode === 'full' || mode === 'full_many' || mode === 'chain_noauth';
}

/**
 * Warms `mode`'s target up for `opts.warmupSec` seconds (nothing when 0) at the lowest of
 * `opts.rates` (requests per second), then waits 500 ms. The warm-up sends order ord-1001 without
 * the chain check, with the rig's token pool even in a many-token mode: every many token stays
 * cold.
 */
export async function warmUp(rig: Rig, mode: BenchMode, opts: Pick<BenchOptions, 'rates' | 'warmupSec'>): Promise<void> {
  if (opts.warmupSec <= 0) return;
  const min = Math.min(...opts.rates);
  await runLoad({ baseUrl: rig.targets[mode], ratePerSec: min, durationSec: opts.warmupSec, tokens: rig.tokens, routes: [orderRoute(false)], chainCheckEvery: 0, timeoutMs: 2000 });
  await sleep(500);
}

/** What {@link loadStep} measured: the runner's result and the CPU it cost. */
export interface LoadStep {
  r: LoadResult;
  /** CPU milliseconds of each process of `procs`, by name, before the first request. */
  before: Record<string, number>;
  /** The same when the last request was answered. */
  atEnd: Record<string, number>;
  /** The same at the end of the tail (`atEnd` when there is none). */
  after: Record<string, number>;
  /** Cores' worth of CPU that processes outside the rig used from the start to the end of the tail. */
  foreign: number;
}

/**
 * Sends order ord-1001 (through the chain, checked every 50th answer, in a chain mode) to `mode`'s
 * target at `rate` requests per second for `opts.trialSec` seconds over `opts.connections`
 * keep-alive connections (2 s timeout, SLO p99 < 200 ms), and snapshots the CPU of `procs` around
 * it; with `tailMs` > 0 (milliseconds), CPU and foreign CPU are counted that much longer after the
 * last answer.
 */
export async function loadStep(
  rig: Rig,
  mode: BenchMode,
  rate: number,
  opts: Pick<BenchOptions, 'trialSec' | 'connections'>,
  load: { tokens: TokenSource; procs: readonly Accounted[]; tailMs?: number },
): Promise<LoadStep> {
  const ours = () => Object.values(cpuSnapshot(rig.accounted)).reduce((a, b) => a + b, 0);
  const m0 = { machine: machineBusyMs(), ours: ours(), at: Date.now() };
  const before = cpuSnapshot(load.procs);
  const chain = isChainMode(mode);
  const r = await runLoad({
    baseUrl: rig.targets[mode],
    ratePerSec: rate,
    durationSec: opts.trialSec,
    tokens: load.tokens,
    routes: [orderRoute(chain)],
    connections: opts.connections,
    timeoutMs: 2000,
    chainCheckEvery: chain ? 50 : 0,
    sloP99Ms: 200,
  });
  const atEnd = cpuSnapshot(load.procs);
  let after = atEnd;
  if (load.tailMs) {
    await sleep(load.tailMs);
    after = cpuSnapshot(load.procs);
  }
  const foreign = foreignCores(m0, { machine: machineBusyMs(), ours: ours(), at: Date.now() });
  return { r, before, atEnd, after, foreign };
}

/**
 * One step, measured again when its failure may not be the system's: on a shared machine another
 * process can take the cores for a while, or a single stall can put p99 over the SLO while the
 * rate was held. A failing step is measured again (at most twice more) when other processes used
 * more than `foreignMaxCores` cores' worth of CPU during it (`--foreign-max-cores`), or once when
 * only its tail failed (rate held, nothing lost). The least disturbed failing attempt is kept
 * unless a later one passes.
 * @param rate the step's offered rate, requests per second
 * @param measureOnce measures the step once
 * @param hooks `announce(best, disturbed)` runs before each new attempt (to say why);
 *   `keep(kept, attempt, first)` returns the attempt kept after attempt number `attempt` (2 or 3),
 *   marked as the pass's report wants it (`first` is the first attempt)
 * @returns the attempt kept
 */
export async function remeasureFailing<S extends StepResult>(
  rate: number,
  foreignMaxCores: number,
  measureOnce: () => Promise<S>,
  hooks: { announce: (best: S, disturbed: boolean) => void; keep: (kept: S, attempt: number, first: S) => S },
): Promise<S> {
  let best = await measureOnce();
  const first = best;
  for (let attempt = 2; attempt <= 3 && !best.pass; attempt++) {
    const disturbed = best.foreignCores > foreignMaxCores;
    const tailOnly = best.failed === 0 && best.achieved >= 0.95 * rate;
    if (!disturbed && !(tailOnly && attempt === 2)) break;
    hooks.announce(best, disturbed);
    await sleep(disturbed ? 3000 : 500);
    const next = await measureOnce();
    best = hooks.keep(next.pass || next.foreignCores <= best.foreignCores ? next : best, attempt, first);
  }
  return best;
}

/** One mode's steps at the fixed rates, the capacity search's steps, and the capacity found (requests per second). */
export interface ModeCapacity<S> {
  steps: S[];
  search: S[];
  capacity: { rate: number; firstFail: number | null; converged: boolean };
}

/**
 * Runs `step` at each of `opts.rates`, lowest first, none above `opts.maxRate`, stopping after the
 * first failing step (higher rates would only fail slower). Then, when `opts.searchBudgetSec` > 0,
 * searches the capacity at the SLO from those verdicts ({@link findCapacity}) for as long as one
 * more step of `stepCostSec` seconds fits in the budget; without a budget, the capacity is the
 * highest passing fixed rate and the first failing rate above it.
 */
export async function measureCapacity<S extends StepResult>(
  step: (rate: number) => Promise<S>,
  opts: Pick<BenchOptions, 'rates' | 'maxRate' | 'searchBudgetSec'>,
  stepCostSec: number,
): Promise<ModeCapacity<S>> {
  const steps: S[] = [];
  for (const rate of [...opts.rates].sort((a, b) => a - b)) {
    if (rate > opts.maxRate) break;
    const s = await step(rate);
    steps.push(s);
    if (!s.pass) break; // higher rates would only fail slower
  }
  const search: S[] = [];
  const searchStart = Date.now();
  const cap = opts.searchBudgetSec > 0
    ? await findCapacity(
        async (rate) => {
          const s = await step(rate);
          search.push(s);
          return { rate, pass: s.pass };
        },
        {
          known: steps.map((s) => ({ rate: s.rate, pass: s.pass })),
          maxRate: opts.maxRate,
          haveTime: () => Date.now() - searchStart + stepCostSec * 1000 <= opts.searchBudgetSec * 1000,
        },
      )
    : (() => {
        const passes = steps.filter((s) => s.pass).map((s) => s.rate);
        const lo = passes.length ? Math.max(...passes) : 0;
        return { capacity: lo, firstFail: steps.find((s) => !s.pass && s.rate > lo)?.rate ?? null, converged: false };
      })();
  return { steps, search, capacity: { rate: cap.capacity, firstFail: cap.firstFail, converged: cap.converged } };
}
