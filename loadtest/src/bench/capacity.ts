/**
 * Capacity at the SLO: the largest arrival rate a mode holds with p99 < 200 ms and no failed
 * request, found by stepping the rate up geometrically until a step fails, then bisecting
 * (geometric mean) between the last pass and the first fail, within a time budget.
 * The search is pure (the trial is injected), so it is tested without any timing.
 */

/** What the search needs from one trial. */
export interface TrialVerdict {
  rate: number;
  pass: boolean;
}

/** Options of {@link findCapacity}. Rates in requests per second. */
export interface CapacityOptions {
  /** Rates already measured (e.g. the fixed grid), used as the starting bracket. */
  known?: readonly TrialVerdict[];
  /** First rate to try when nothing is known. Default 100. */
  startRate?: number;
  /** Factor between steps while no failing rate is known. Default 2. */
  growth?: number;
  /** Never try above this (the generator's own ceiling). Default 20000. */
  maxRate?: number;
  /** Below this rate, give up (capacity 0). Default 10. */
  minRate?: number;
  /** Stop bisecting when fail / pass <= 1 + precision. Default 0.1 (10 %). */
  precision?: number;
  /** At most this many trials. Default 16. */
  maxTrials?: number;
  /** Whether another trial still fits in the time budget (checked before each trial). */
  haveTime?: () => boolean;
}

/** Result of {@link findCapacity}. */
export interface CapacityResult {
  /** Largest passing rate seen (0 when even `minRate` failed). */
  capacity: number;
  /** Smallest failing rate above it, or null when none failed (capacity >= maxRate, or out of time). */
  firstFail: number | null;
  /** The trials this search ran, in order. */
  trials: TrialVerdict[];
  /** True when the bracket is within `precision` (or capacity hit `maxRate`); false when time or trials ran out first. */
  converged: boolean;
}

/**
 * Runs the search. `trial(rate)` must run one measured step at `rate` and say whether it passed.
 * Rates are rounded to whole requests per second.
 */
export async function findCapacity(trial: (rate: number) => Promise<TrialVerdict>, opts: CapacityOptions = {}): Promise<CapacityResult> {
  const growth = opts.growth ?? 2;
  const maxRate = opts.maxRate ?? 20_000;
  const minRate = opts.minRate ?? 10;
  const precision = opts.precision ?? 0.1;
  const maxTrials = opts.maxTrials ?? 16;
  const haveTime = opts.haveTime ?? (() => true);
  const trials: TrialVerdict[] = [];
  const all = (): TrialVerdict[] => [...(opts.known ?? []), ...trials];
  const bracket = () => {
    const passes = all().filter((t) => t.pass).map((t) => t.rate);
    const lo = passes.length ? Math.max(...passes) : 0;
    const fails = all().filter((t) => !t.pass && t.rate > lo).map((t) => t.rate);
    return { lo, hi: fails.length ? Math.min(...fails) : null };
  };
  const run = async (rate: number): Promise<boolean> => {
    if (trials.length >= maxTrials || !haveTime()) return false;
    trials.push(await trial(Math.round(rate)));
    return true;
  };

  for (;;) {
    const { lo, hi } = bracket();
    let next: number;
    if (lo === 0 && hi === null) next = opts.startRate ?? 100;
    else if (lo === 0 && hi !== null) {
      if (hi <= minRate) return { capacity: 0, firstFail: hi, trials, converged: true };
      next = Math.max(minRate, hi / 2);
    } else if (hi === null) {
      if (lo >= maxRate) return { capacity: lo, firstFail: null, trials, converged: true };
      next = Math.min(maxRate, lo * growth);
    } else {
      if (hi / lo <= 1 + precision) return { capacity: lo, firstFail: hi, trials, converged: true };
      next = Math.sqrt(lo * hi);
    }
    if (Math.round(next) === lo || (hi !== null && Math.round(next) === hi)) return { capacity: lo, firstFail: hi, trials, converged: true };
    if (!(await run(next))) return { capacity: lo, firstFail: hi, trials, converged: false };
  }
}
