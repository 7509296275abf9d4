import { Writable } from 'node:stream';
import t from 'tap';
import { main } from '../src/cli.js';
import { runOpenModel, type Outcome } from '../src/open-model.js';
import { runLoad } from '../src/runner.js';
import { startFakeEdge } from './helpers/fake-edge.js';

const sink = () => {
  let text = '';
  const stream = new Writable({ write(chunk, _enc, cb) { text += String(chunk); cb(); } });
  return { stream, text: () => text };
};
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

t.test('CLI exit status: 1 when requests fail, 0 when clean, 2 on a refused target or bad login', async (t) => {
  const failing = await startFakeEdge({ failEvery: 5 });
  t.teardown(failing.close);
  const clean = await startFakeEdge();
  t.teardown(clean.close);
  const common = ['--rate', '100', '--duration', '0.3', '--warmup', '0', '--users', 'alice:alice-password', '--pool', '2', '--slo-p99-ms', '60000'];

  const o1 = sink();
  t.equal(await main(['--url', failing.url, ...common], o1.stream, o1.stream), 1, 'failing server: exit 1');
  t.match(o1.text(), /verdict {7}FAIL: \d+ failed request\(s\): \d+ x status 500/);
  t.equal(failing.counts.logins, 2, 'the pool logged in twice');

  const o0 = sink();
  t.equal(await main(['--url', clean.url, ...common], o0.stream, o0.stream), 0, 'clean server: exit 0');
  t.match(o0.text(), /achieved {6}[\d.]+ req\/s/);
  t.match(o0.text(), /latency {7}p50 [\d.]+ ms {2}p90 [\d.]+ ms {2}p99 [\d.]+ ms {2}max [\d.]+ ms/);
  t.match(o0.text(), /verdict {7}PASS/);

  const o2 = sink();
  t.equal(await main(['--url', 'http://192.168.7.7:10000', ...common], o2.stream, o2.stream), 2, 'non-loopback: exit 2');
  t.match(o2.text(), /refusing target/);
  t.equal(clean.counts.api + failing.counts.api > 0, true);

  const o3 = sink();
  t.equal(await main(['--url', clean.url, ...common.slice(0, -6), '--users', 'alice:wrong', '--slo-p99-ms', '60000'], o3.stream, o3.stream), 2, 'bad password: exit 2');
  t.match(o3.text(), /login as alice .* failed: status 401/);

  const o4 = sink();
  t.equal(await main(['--rate=-3'], o4.stream, o4.stream), 2, 'bad option: exit 2');
  t.match(o4.text(), /--rate: /);

  const o5 = sink();
  t.equal(await main(['--help'], o5.stream, o5.stream), 0);
  t.match(o5.text(), /open model/);
});
