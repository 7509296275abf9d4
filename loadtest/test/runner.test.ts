import t from 'tap';
import { runOpenModel, type Outcome } from '../src/open-model.js';
import { runLoad } from '../src/runner.js';
import { startFakeEdge } from './helpers/fake-edge.js';

const fixedToken = { accessToken: () => 'aaa.bbb.ccc' };

t.test('open model: every planned arrival is sent and counted by outcome', async (t) => {
  let n = 0;
  const r = await runOpenModel({
    ratePerSec: 200,
    durationSec: 0.25,
    maxInFlight: 100,
    drainTimeoutMs: 1000,
    send: async (seq): Promise<Outcome> => {
      n += 1;
      if (seq % 10 === 3) return { status: 503 };
      if (seq % 10 === 7) return { error: 'ECONNRESET' };
      if (seq === 12) throw new Error('boom');
      return { status: 204 };
    },
  });
  t.equal(r.planned, 50);
  t.equal(r.sent, 50);
  t.equal(n, 50);
  t.same(r.nonOk, { '503': 5 });
  t.same(r.errors, { ECONNRESET: 5, exception: 1 });
  t.equal(r.ok, 39);
  t.equal(r.failed, 11);
  t.equal(r.latency.count, 50);
});

t.test('open model: maxRequests caps the arrivals', async (t) => {
  const r = await runOpenModel({ ratePerSec: 1000, durationSec: 10, maxRequests: 7, maxInFlight: 10, drainTimeoutMs: 100, send: async () => ({ status: 200 }) });
  t.equal(r.planned, 7);
  t.equal(r.ok, 7);
});

t.test('open model: arrivals beyond maxInFlight are dropped, hung requests are aborted after the drain', async (t) => {
  const r = await runOpenModel({
    ratePerSec: 400,
    durationSec: 0.05,
    maxInFlight: 2,
    drainTimeoutMs: 50,
    send: (_seq, signal) =>
      new Promise<Outcome>((resolve) => signal.addEventListener('abort', () => resolve({ error: 'aborted' }), { once: true })),
  });
  t.equal(r.planned, 20);
  t.equal(r.sent, 2, 'only maxInFlight were sent');
  t.equal(r.dropped, 18);
  t.same(r.errors, { aborted: 2 });
  t.equal(r.failed, 20);
});

t.test('open model: bad options are refused', async (t) => {
  const send = async (): Promise<Outcome> => ({ status: 200 });
  await t.rejects(runOpenModel({ ratePerSec: 0, durationSec: 1, maxInFlight: 1, drainTimeoutMs: 1, send }), RangeError);
  await t.rejects(runOpenModel({ ratePerSec: 1, durationSec: -1, maxInFlight: 1, drainTimeoutMs: 1, send }), RangeError);
  await t.rejects(runOpenModel({ ratePerSec: 1, durationSec: 1, maxInFlight: 0, drainTimeoutMs: 1, send }), RangeError);
});

t.test('runLoad against a server that fails every 10th request', async (t) => {
  const edge = await startFakeEdge({ failEvery: 10 });
  t.teardown(edge.close);
  const r = await runLoad({ baseUrl: edge.url, ratePerSec: 200, durationSec: 0.5, tokens: fixedToken, sloP99Ms: 60_000 });
  t.equal(r.sent, 100);
  t.equal(r.nonOk['500'], 10);
  t.equal(r.failed, 10);
  t.equal(r.pass, false);
  t.match(r.reasons, [/10 failed request\(s\): 10 x status 500/]);
  t.equal(Object.values(r.byRoute).reduce((a, b) => a + b, 0), 100, 'per-route counts add up');
  t.ok(edge.counts.authorized >= 80, 'the chain routes carried the Bearer token');
});

t.test('runLoad counts a chain whose hops disagree as a failure', async (t) => {
  const edge = await startFakeEdge({ inconsistentEvery: 1 });
  t.teardown(edge.close);
  const r = await runLoad({ baseUrl: edge.url, ratePerSec: 100, durationSec: 0.3, tokens: fixedToken, routes: undefined, chainCheckEvery: 1, sloP99Ms: 60_000 });
  t.ok(r.chainInconsistent > 0);
  t.equal(r.errors.chain_inconsistent, r.chainInconsistent);
  t.equal(r.pass, false);
});

t.test('runLoad passes a clean run (SLO set out of reach of timing)', async (t) => {
  const edge = await startFakeEdge();
  t.teardown(edge.close);
  const r = await runLoad({ baseUrl: edge.url, ratePerSec: 100, durationSec: 0.3, tokens: fixedToken, chainCheckEvery: 1, sloP99Ms: 60_000 });
  t.equal(r.failed, 0);
  t.equal(r.pass, true);
  t.same(r.reasons, []);
});
