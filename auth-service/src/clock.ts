/** A clock, injected so tests can move time (CONTRIBUTING.md, "Tests"). */
export interface Clock {
  /** Current time, epoch milliseconds. */
  now(): number;
}

/** The real clock (`Date.now`). */
export const systemClock: Clock = Object.freeze({ now: () => Date.now() });

/** Epoch seconds (floored) of a clock's current time. */
export const nowSec = (clock: Clock): number => Math.floor(clock.now() / 1000);
