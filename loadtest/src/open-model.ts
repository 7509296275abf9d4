/**
 * An open-model load scheduler: request `i` is due at `start + i / rate`, whatever happened to
 * the requests before it. A slow answer therefore cannot delay the next arrival (the "closed
 * model" flaw of tools that keep N connections busy, e.g. autocannon or wrk, which send the next
 * request only when a connection is free and so under-report latency when the server queues:
 * coordinated omission, see Gil Tene's "How NOT to measure latency" and wrk2's README).
 *
 * Latency is measured from the request's *scheduled* time, so a stall in the server, the network
 * or this process shows up in full. The time actually spent on the wire ("service time") and how
 * late each request left the scheduler ("lag") are recorded too, so a saturated generator is
 * visible instead of being mistaken for a slow server.
 *
 * Bounded: at most `ratePerSec * durationSec` (and `maxRequests`) arrivals; at most `maxInFlight`
 * outstanding (an arrival beyond it is not sent and counts as `dropped`, a failure); after the
 * last arrival, in-flight requests get `drainTimeoutMs` and are then aborted.
 */
import { performance } from 'node:perf_hooks';
import { LatencyRecorder, type LatencySummary } from './stats.js';

/** What one request came to: an HTTP status, or an error code when there was no answer. */
export type Outcome = { status: number; error?: undefined; detail?: string } | { status?: undefined; error: string; detail?: string };

/** Options of {@link runOpenModel}. */
export interface OpenModelOptions {
  /** Arrivals per second (> 0). */
  ratePerSec: number;
  /** Length of the arrival window, seconds (> 0). */
  durationSec: number;
  /** Upper bound on arrivals, whatever rate x duration says. */
  maxRequests?: number;
  /** Upper bound on outstanding requests; arrivals beyond it are dropped (and counted). */
  maxInFlight: number;
  /** After the last arrival, how long in-flight requests may still take before they are aborted, ms. */
  drainTimeoutMs: number;
  /**
   * Sends request number `seq` (0-based). Must settle; should honour `signal` (aborted at the end
   * of the drain). A rejection counts as error `exception`.
   */
  send(seq: number, signal: AbortSignal): Promise<Outcome>;
  /**
   * Whether an outcome counts as a success. Default: a status in 200..299. A status outside it is
   * counted under `nonOk` by status; an error under `errors` by code.
   */
  isOk?(outcome: Outcome, seq: number): boolean;
  /** Monotonic clock in milliseconds (default `performance.now`). */
  clock?: () => number;
}

/** Counts and distributions of one run. Rates in requests per second, times in milliseconds. */
export interface OpenModelResult {
  /** Arrivals the schedule held (rate x duration, capped by maxRequests). */
  planned: number;
  /** Arrivals actually sent. */
  sent: number;
  /** Requests that got an HTTP answer (any status). */
  answered: number;
  /** Answers that {@link OpenModelOptions.isOk} accepted. */
  ok: number;
  /** Answers it rejected, by status (e.g. `{"401": 3}`). */
  nonOk: Record<string, number>;
  /** Requests without an answer, by error code (e.g. `{"ECONNREFUSED": 2, "timeout": 1}`). */
  errors: Record<string, number>;
  /** Arrivals not sent because `maxInFlight` requests were outstanding. */
  dropped: number;
  /** The offered (scheduled) arrival rate. */
  offeredRate: number;
  /** Answers per second, over the time from the first arrival to the last settled request. */
  achievedRate: number;
  /** Seconds from the first arrival to the last settled request. */
  elapsedSec: number;
  /** From the scheduled send time to the end of the answer (the figure the SLO is checked on). */
  latency: LatencySummary;
  /** From the actual send to the end of the answer. */
  serviceTime: LatencySummary;
  /** How late requests left the scheduler (actual minus scheduled send time). */
  lag: LatencySummary;
  /** sent - ok + dropped: every request that did not end in an accepted answer. */
  failed: number;
}

const defaultIsOk = (o: Outcome): boolean => o.status !== undefined && o.status >= 200 && o.status < 300;

/**
 * Runs the schedule and resolves when every sent request has settled (or been aborted after the
 * drain timeout). Never rejects because of a request; rejects only on invalid options.
 * @throws RangeError when ratePerSec, durationSec or maxInFlight is not positive.
 */
export async function runOpenModel(opts: OpenModelOptions): Promise<OpenModelResult> {
  if (!(opts.ratePerSec > 0) || !Number.isFinite(opts.ratePerSec)) throw new RangeError('ratePerSec must be a positive number');
  if (!(opts.durationSec > 0) || !Number.isFinite(opts.durationSec)) throw new RangeError('durationSec must be a positive number');
  if (!(opts.maxInFlight >= 1)) throw new RangeError('maxInFlight must be >= 1');
  const clock = opts.clock ?? (() => performance.now());
  const isOk = opts.isOk ?? defaultIsOk;
  const planned = Math.max(1, Math.min(Math.floor(opts.ratePerSec * opts.durationSec), opts.maxRequests ?? Number.MAX_SAFE_INTEGER));
  const intervalMs = 1000 / opts.ratePerSec;

  const latency = new LatencyRecorder();
  const serviceTime = new LatencyRecorder();
  const lag = new LatencyRecorder();
  const nonOk: Record<string, number> = {};
  const errors: Record<string, number> = {};
  let sent = 0;
  let answered = 0;
  let ok = 0;
  let dropped = 0;
  let inFlight = 0;
  let lastSettled = 0;
  const abort = new AbortController();
  let onIdle: (() => void) | null = null;

  const start = clock();
  const fire = (seq: number, due: number): void => {
    if (inFlight >= opts.maxInFlight) {
      dropped += 1;
      return;
    }
    inFlight += 1;
    sent += 1;
    const sentAt = clock();
    lag.record(sentAt - due);
    let p: Promise<Outcome>;
    try {
      p = opts.send(seq, abort.signal);
    } catch (err) {
      p = Promise.reject(err);
    }
    p.then(
      (o) => o,
      (err: unknown): Outcome => ({ error: 'exception', detail: (err as Error)?.message }),
    ).then((o) => {
      const end = clock();
      lastSettled = end;
      latency.record(end - due);
      serviceTime.record(end - sentAt);
      if (o.status !== undefined) answered += 1;
      if (isOk(o, seq)) ok += 1;
      else if (o.status !== undefined) nonOk[String(o.status)] = (nonOk[String(o.status)] ?? 0) + 1;
      else errors[o.error] = (errors[o.error] ?? 0) + 1;
      inFlight -= 1;
      if (inFlight === 0 && onIdle) onIdle();
    });
  };

  // The scheduler: on each wake-up, send every arrival that is due, then sleep until the next.
  await new Promise<void>((resolveSending) => {
    let next = 0;
    const pump = (): void => {
      const now = clock();
      while (next < planned && start + next * intervalMs <= now) {
        fire(next, start + next * intervalMs);
        next += 1;
      }
      if (next >= planned) {
        resolveSending();
        return;
      }
      setTimeout(pump, Math.max(0, start + next * intervalMs - clock()));
    };
    pump();
  });

  if (inFlight > 0) {
    await new Promise<void>((resolveDrain) => {
      const timer = setTimeout(() => {
        abort.abort(new Error('drain timeout'));
        // Aborted requests settle through their own promise chains; wait for them.
      }, opts.drainTimeoutMs);
      onIdle = () => {
        clearTimeout(timer);
        resolveDrain();
      };
    });
  }

  const elapsedMs = Math.max(lastSettled - start, start + (planned - 1) * intervalMs - start, 1);
  const result: OpenModelResult = {
    planned,
    sent,
    answered,
    ok,
    nonOk,
    errors,
    dropped,
    offeredRate: round2(opts.ratePerSec),
    achievedRate: round2(answered / (elapsedMs / 1000)),
    elapsedSec: round2(elapsedMs / 1000),
    latency: latency.summary(),
    serviceTime: serviceTime.summary(),
    lag: lag.summary(),
    failed: sent - ok + dropped,
  };
  latency.destroy();
  serviceTime.destroy();
  lag.destroy();
  return result;
}

function round2(x: number): number {
  return Math.round(x * 100) / 100;
}
