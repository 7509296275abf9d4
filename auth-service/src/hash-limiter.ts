/**
 * Admission control for password hashing (login, register, the password grant, the dummy check
 * for unknown users). scrypt is memory-hard and runs on libuv's threadpool, so a burst of logins
 * past what the CPUs can hash would otherwise queue without bound: every login slows down until
 * clients time out (issue seen: 493 of 585 logins at k6's 10 s timeout), while refreshes wait for
 * the same threadpool to sign their tokens.
 *
 * The limiter runs at most `concurrency` checks at once, lets at most `maxQueue` wait, and sheds
 * the rest at once with `503 temporarily_unavailable` + `Retry-After` (RFC 6749 §4.1.2.1 code,
 * RFC 9110 §10.2.3 header). A request that waited `maxWaitMs` without starting is shed too. The
 * decision depends only on how many checks run and wait, never on the username, so a shed answer
 * says nothing about whether the user exists (the caller takes the slot before the user lookup).
 *
 * The queue is p-queue (https://github.com/sindresorhus/p-queue); its `AbortSignal` removes a
 * waiting task. The signal is disarmed when the task starts: p-queue would otherwise release the
 * slot of an aborted running task while its hash still runs.
 */
import PQueue from 'p-queue';
import { OAuthError } from './errors.js';

/** Why a request was shed. */
export type ShedReason = 'queue_full' | 'wait_timeout';

/** Sizing of a {@link HashLimiter}. */
export interface HashLimiterOptions {
  /** Most password checks running at once (>= 1). */
  readonly concurrency: number;
  /** Most requests waiting for a slot (>= 0); one more is shed at once. */
  readonly maxQueue: number;
  /** Longest wait for a slot, milliseconds (>= 1); a request still waiting then is shed. */
  readonly maxWaitMs: number;
  /** Called once per shed request (metrics). */
  readonly onShed?: (reason: ShedReason) => void;
}

/** A bounded, shedding queue in front of password hashing. */
export interface HashLimiter {
  /**
   * Runs `task` when a slot is free.
   * @returns what `task` returns (its rejection passes through unchanged)
   * @throws OAuthError `temporarily_unavailable` (503) with `retryAfterSec` when the queue is full
   *   or the wait exceeded `maxWaitMs`; `task` has not run then
   */
  run<T>(task: () => Promise<T>): Promise<T>;
  /** Checks running now. */
  readonly inFlight: number;
  /** Requests waiting for a slot now. */
  readonly queued: number;
  readonly options: Readonly<HashLimiterOptions>;
}

/**
 * Seconds a shed client is told to wait (`Retry-After`): the longest a queued request may wait,
 * rounded up, at least 1. A client retrying sooner would meet the same queue.
 */
export function shedRetryAfterSec(maxWaitMs: number): number {
  return Math.max(1, Math.ceil(maxWaitMs / 1000));
}

/**
 * Creates a limiter.
 * @throws RangeError for a concurrency < 1, a negative queue or a wait < 1 ms (config validates
 *   the environment before this)
 */
export function createHashLimiter(options: HashLimiterOptions): HashLimiter {
  const { concurrency, maxQueue, maxWaitMs } = options;
  if (!Number.isInteger(concurrency) || concurrency < 1) throw new RangeError('concurrency must be a whole number >= 1');
  if (!Number.isInteger(maxQueue) || maxQueue < 0) throw new RangeError('maxQueue must be a whole number >= 0');
  if (!Number.isInteger(maxWaitMs) || maxWaitMs < 1) throw new RangeError('maxWaitMs must be a whole number >= 1');
  const queue = new PQueue({ concurrency });
  const retryAfterSec = shedRetryAfterSec(maxWaitMs);
  const shed = (reason: ShedReason, cause?: unknown): OAuthError => {
    options.onShed?.(reason);
    return new OAuthError('temporarily_unavailable', `too many password checks in progress; retry in ${retryAfterSec} seconds`, {
      retryAfterSec,
      ...(cause === undefined ? {} : { cause }),
    });
  };

  return {
    options: Object.freeze({ ...options }),
    get inFlight() {
      return queue.pending;
    },
    get queued() {
      return queue.size;
    },
    async run<T>(task: () => Promise<T>): Promise<T> {
      if (queue.pending >= concurrency && queue.size >= maxQueue) throw shed('queue_full');
      const waiting = new AbortController();
      const timer = setTimeout(() => waiting.abort(), maxWaitMs);
      let started = false;
      try {
        return await queue.add(
          () => {
            started = true;
            clearTimeout(timer); // from here the hash owns its slot until it ends
            return task();
          },
          { signal: waiting.signal },
        );
      } catch (err) {
        if (!started && waiting.signal.aborted) throw shed('wait_timeout', err);
        throw err;
      } finally {
        clearTimeout(timer);
      }
    },
  };
}
