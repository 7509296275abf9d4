import t from 'tap';
import { LatencyRecorder } from '../src/stats.js';
import { verdict } from '../src/runner.js';

/** Within HdrHistogram's 3-significant-digit precision (0.1 %), plus rounding to 1 µs. */
const near = (t_: { ok(v: boolean, m: string): unknown }, actual: number, expected: number, what: string) =>
  t_.ok(Math.abs(actual - expected) <= expected * 0.001 + 0.001, `${what}: ${actual} ≈ ${expected}`);

t.test('percentiles of 1..1000 ms (nearest rank)', async (t) => {
  const r = new LatencyRecorder();
  // Shuffled, so the order of arrival cannot matter.
  const values = Array.from({ length: 1000 }, (_, i) => i + 1).sort((a, b) => ((a * 7919) % 1000) - ((b * 7919) % 1000));
  for (const v of values) r.record(v);
  const s = r.summary();
  t.equal(s.count, 1000);
  near(t, s.min, 1, 'min');
  near(t, s.p50, 500, 'p50');
  near(t, s.p90, 900, 'p90');
  near(t, s.p99, 990, 'p99');
  near(t, s.p999, 999, 'p99.9');
  near(t, s.max, 1000, 'max');
  near(t, s.mean, 500.5, 'mean');
});

t.test('a tail the mean hides: 990 fast, 10 slow', async (t) => {
  const r = new LatencyRecorder();
  for (let i = 0; i < 990; i++) r.record(2);
  for (let i = 0; i < 10; i++) r.record(250);
  const s = r.summary();
  near(t, s.p50, 2, 'p50');
  near(t, s.p90, 2, 'p90');
  near(t, s.p99, 2, 'p99 is still the 990th value');
  near(t, s.p999, 250, 'p99.9 sees the tail');
  near(t, s.max, 250, 'max');
  t.ok(s.mean < 5, `mean ${s.mean} stays small`);
});

t.test('sub-millisecond values keep microsecond resolution', async (t) => {
  const r = new LatencyRecorder();
  for (const v of [0.25, 0.5, 0.75, 1.0]) r.record(v);
  near(t, r.percentile(50), 0.5, 'p50');
  near(t, r.percentile(100), 1.0, 'p100');
  t.equal(r.summary().min, 0.25);
});

t.test('negative and huge values are clamped, empty recorder is zeros', async (t) => {
  const empty = new LatencyRecorder();
  t.same(empty.summary(), { count: 0, min: 0, mean: 0, p50: 0, p90: 0, p99: 0, p999: 0, max: 0 });
  const r = new LatencyRecorder();
  r.record(-5);
  r.record(10 * 60 * 1000 * 10);
  t.equal(r.summary().min, 0.001);
  near(t, r.summary().max, 600_000, 'max clamped to 10 minutes');
});

t.test('verdict: p99 at the SLO fails, failures fail, clean passes', async (t) => {
  const base = { failed: 0, nonOk: {}, errors: {}, dropped: 0, answered: 100 };
  const lat = (p99: number) => ({ count: 100, min: 1, mean: 1, p50: 1, p90: 1, p99, p999: p99, max: p99 });
  t.same(verdict({ ...base, latency: lat(199.999) }, 200), []);
  t.match(verdict({ ...base, latency: lat(200) }, 200), [/p99 200 ms >= 200 ms/]);
  t.match(verdict({ ...base, failed: 3, nonOk: { '500': 2 }, errors: { ECONNRESET: 1 }, latency: lat(5) }, 200), [
    /3 failed request\(s\): 2 x status 500, 1 x ECONNRESET/,
  ]);
  t.match(verdict({ ...base, failed: 4, dropped: 4, latency: lat(5) }, 200), [/4 dropped/]);
  t.match(verdict({ ...base, answered: 0, latency: lat(0) }, 200), [/no request was answered/]);
});
