// The hash limiter on its own: slots, a bounded queue shed at once, a bounded wait, and a slot
// held by a running task until the task ends (never released by the wait timer).
import t from 'tap';
import { OAuthError } from '../src/errors.js';
import { createHashLimiter, shedRetryAfterSec, type ShedReason } from '../src/hash-limiter.js';

/** A task the test finishes by hand. */
function gate<T>(value: T) {
  let open!: () => void;
  let started = false;
  const opened = new Promise<void>((resolve) => (open = resolve));
  return {
    task: async () => {
      started = true;
      await opened;
      return value;
    },
    open: () => open(),
    get started() {
      return started;
    },
  };
}

t.test('full slots and a full queue: the next request is shed at once with 503 and Retry-After', async (t) => {
  const shed: ShedReason[] = [];
  const limiter = createHashLimiter({ concurrency: 1, maxQueue: 1, maxWaitMs: 2500, onShed: (r) => shed.push(r) });
  const a = gate('a');
  const b = gate('b');
  const c = gate('c');
  const ra = limiter.run(a.task);
  const rb = limiter.run(b.task);
  t.equal(limiter.inFlight, 1, 'one running');
  t.equal(limiter.queued, 1, 'one waiting');
  const err = await limiter.run(c.task).catch((e: unknown) => e);
  t.ok(err instanceof OAuthError, 'an OAuthError');
  t.match(err, { code: 'temporarily_unavailable', status: 503, retryAfterSec: 3 }, 'Retry-After = the wait bound rounded up');
  t.notOk(c.started, 'the shed task never ran');
  t.same(shed, ['queue_full']);
  t.notOk(b.started, 'the queued task waits for the slot');
  a.open();
  t.equal(await ra, 'a');
  await new Promise((r) => setImmediate(r));
  t.ok(b.started, 'the queued task starts when the slot frees');
  b.open();
  t.equal(await rb, 'b');
  t.equal(limiter.inFlight, 0);
  t.equal(limiter.queued, 0);
});

t.test('a request that waits longer than maxWaitMs is shed and its task never runs', async (t) => {
  const shed: ShedReason[] = [];
  const limiter = createHashLimiter({ concurrency: 1, maxQueue: 10, maxWaitMs: 20, onShed: (r) => shed.push(r) });
  const a = gate('a');
  const b = gate('b');
  const ra = limiter.run(a.task);
  const err = await limiter.run(b.task).catch((e: unknown) => e);
  t.match(err, { code: 'temporarily_unavailable', retryAfterSec: 1 });
  t.notOk(b.started, 'never started');
  t.equal(limiter.queued, 0, 'removed from the queue');
  t.same(shed, ['wait_timeout']);
  t.equal(limiter.inFlight, 1, 'the running task still holds its slot past maxWaitMs');
  a.open();
  t.equal(await ra, 'a', 'and ends normally, not shed');
});

t.test('a running task keeps its slot past maxWaitMs; a failing task frees it and its error passes through', async (t) => {
  const limiter = createHashLimiter({ concurrency: 1, maxQueue: 0, maxWaitMs: 5 });
  const a = gate('a');
  const ra = limiter.run(a.task);
  await new Promise((r) => setTimeout(r, 30));
  const err = await limiter.run(async () => 'x').catch((e: unknown) => e);
  t.match(err, { code: 'temporarily_unavailable' }, 'still full: queue 0, slot held');
  a.open();
  t.equal(await ra, 'a');
  const boom = new Error('database down');
  t.equal(await limiter.run(() => Promise.reject(boom)).catch((e: unknown) => e), boom, 'the task error, unchanged');
  t.equal(await limiter.run(async () => 'next'), 'next', 'slot freed after a failure');
});

t.test('sizes are checked', async (t) => {
  t.throws(() => createHashLimiter({ concurrency: 0, maxQueue: 1, maxWaitMs: 1 }), RangeError);
  t.throws(() => createHashLimiter({ concurrency: 1, maxQueue: -1, maxWaitMs: 1 }), RangeError);
  t.throws(() => createHashLimiter({ concurrency: 1, maxQueue: 1, maxWaitMs: 0 }), RangeError);
  t.equal(shedRetryAfterSec(1), 1);
  t.equal(shedRetryAfterSec(1000), 1);
  t.equal(shedRetryAfterSec(1001), 2);
});
