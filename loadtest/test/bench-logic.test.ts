/**
 * The benchmark's pure parts: the capacity search (with a simulated system whose capacity is
 * known), the report (aims, ratios, markdown), /proc parsing, and the CPU-profile summary.
 */
import t from 'tap';
import { findCapacity } from '../src/bench/capacity.js';
import { parseProcStat, cpuPerRequest, foreignCores, parseMachineStat } from '../src/bench/procstat.js';
import { categoryOf, summariseProfile, type CpuProfile } from '../src/bench/profile.js';
import { evaluateAims, ratio, renderMarkdown, type BenchResult, type ModeResult, type StepResult } from '../src/bench/report.js';
import { summarisePropagation } from '../src/bench/propagation.js';

const system = (capacity: number) => {
  const tried: number[] = [];
  return { tried, trial: async (rate: number) => (tried.push(rate), { rate, pass: rate <= capacity }) };
};

t.test('capacity: brackets a known capacity within 10 %', async (t) => {
  for (const cap of [37, 150, 1000, 2500, 7777]) {
    const s = system(cap);
    const r = await findCapacity(s.trial, { startRate: 100 });
    t.ok(r.converged, `${cap}: converged`);
    t.ok(r.capacity <= cap, `${cap}: found ${r.capacity} is a passing rate`);
    t.ok(r.firstFail !== null && r.firstFail > cap, `${cap}: first fail ${r.firstFail} is above`);
    t.ok((r.firstFail as number) / Math.max(r.capacity, 1) <= 1.1 + 1e-9 || r.capacity === 0, `${cap}: within 10 % (${r.capacity}..${r.firstFail})`);
    t.ok(r.trials.length <= 16, `${cap}: ${r.trials.length} trials`);
  }
});

t.test('capacity: starts from the grid and never repeats a known rate', async (t) => {
  const s = system(650);
  const known = [100, 200, 400].map((rate) => ({ rate, pass: true })).concat([{ rate: 800, pass: false }]);
  const r = await findCapacity(s.trial, { known });
  t.ok(s.tried.every((x) => x > 400 && x < 800), `only inside the bracket: ${s.tried.join(',')}`);
  t.ok(r.capacity >= 600 && r.capacity <= 650, `capacity ${r.capacity}`);
});

t.test('capacity: out of time reports what it has, unconverged', async (t) => {
  const s = system(5000);
  let budget = 2;
  const r = await findCapacity(s.trial, { startRate: 100, haveTime: () => budget-- > 0 });
  t.equal(r.trials.length, 2);
  t.equal(r.converged, false);
  t.equal(r.capacity, 200);
  t.equal(r.firstFail, null);
});

t.test('capacity: a system that fails at any rate has capacity 0; maxRate caps the climb', async (t) => {
  const dead = await findCapacity(system(0).trial, { startRate: 100, minRate: 10 });
  t.equal(dead.capacity, 0);
  t.ok(dead.converged);
  const fast = await findCapacity(system(1e9).trial, { startRate: 100, maxRate: 1000 });
  t.equal(fast.capacity, 1000);
  t.equal(fast.firstFail, null);
  t.ok(fast.converged);
});

const step = (rate: number, p99: number, failed = 0): StepResult => ({
  rate, achieved: rate, p50: p99 / 4, p90: p99 / 2, p99, max: p99 * 1.2, failed, nonOk: failed ? { '503': failed } : {}, errors: {}, dropped: 0, lagP99: 0.5, pass: failed === 0 && p99 < 200, cpuMsPerRequest: { generator: 0.3, 'bench-envoy-none': 0.2 }, attempts: 1, foreignCores: 0.1,
});
const mode = (m: ModeResult['mode'], cap: number, halfP99: number): ModeResult => ({
  mode: m, label: m, filters: ['envoy.filters.http.header_mutation', 'envoy.filters.http.router'], target: 'http://127.0.0.1:1', enforced: { withToken: 200, withoutToken: m === 'none' ? 200 : 401 },
  steps: [step(100, 5), step(cap * 2, 900, 7)], search: [step(cap, 150)], capacity: { rate: cap, firstFail: cap * 2, converged: true }, half: step(500, halfP99),
});

t.test('report: ratios, aims and markdown', async (t) => {
  const modes = [mode('none', 1000, 4), mode('jwt_authn', 900, 5), mode('ext_authz', 600, 8.5), mode('full', 200, 60)];
  t.equal(ratio(modes, 'ext_authz', 'jwt_authn'), 600 / 900);
  t.equal(ratio(modes, 'full', 'none'), 0.2);
  const propagation = { ...summarisePropagation([
    { seenMs: { 'authz-1': 3, orders: 5 }, lowerMs: { 'authz-1': 2, orders: 4 }, revokeMs: 6, allMs: 5 },
    { seenMs: { 'authz-1': 4, orders: 9 }, lowerMs: { 'authz-1': 3, orders: 8 }, revokeMs: 7, allMs: 9 },
  ]), verifiers: ['authz-1', 'orders'], timeoutMs: 3000 };
  const aims = evaluateAims({ modes, propagation, halfRate: 500 });
  // mode 3 ratio, mode 3 p99, mode 4 vs 5 capacity, mode 4 vs 5 p99 (no mode 5 here), mode 4 share of mode 1, propagation
  t.same(aims.map((a) => a.met), [true, true, null, null, true, true]);
  t.match(aims[1]?.figure, /8\.5 ms vs 4 ms \(\+4\.5 ms\)/);
  const slow = evaluateAims({ modes: [mode('none', 1000, 4), mode('jwt_authn', 900, 5), mode('ext_authz', 500, 10)], propagation: null, halfRate: 500 });
  t.same(slow.map((a) => a.met), [false, false, null, null, null, null]);
  const withChain = [
    ...modes.slice(0, 3),
    { ...mode('chain_noauth', 220, 50), halfChain: { ...step(110, 20) } },
    { ...mode('full', 200, 60), halfChain: { ...step(110, 24) } },
  ];
  const chainAims = evaluateAims({ modes: withChain, propagation: null, halfRate: 500 });
  t.equal(chainAims[2]?.met, true, '200 of 220 req/s is >= 90 %');
  t.match(chainAims[2]?.figure, /91 %/);
  t.equal(chainAims[3]?.met, true);
  t.match(chainAims[3]?.aim, /half of mode 5's capacity \(110 req\/s\)/);
  const slowChain = evaluateAims({ modes: [withChain[0]!, { ...withChain[3]!, capacity: { rate: 400, firstFail: 800, converged: true } }, { ...withChain[4]!, halfChain: { ...step(110, 40) } }], propagation: null, halfRate: 500 });
  t.same([slowChain[2]?.met, slowChain[3]?.met], [false, false]);
  t.match(renderMarkdown({ meta: { date: 'd', durationSec: 1, host: { cores: 2, cpuModel: 'c', memGiB: 1, platform: 'p' }, loadavgBefore: [0], loadavgAfter: [0], rawRs256PerSec: 12345, uptimeBefore: '', uptimeAfter: '', versions: {}, git: { commit: 'x', dirty: false }, settings: {}, notes: [] }, sloP99Ms: 200, modes: withChain, halfRate: null, propagation: null, aims: chainAims }), /Raw RS256 \(node:crypto verify, one core\): 12,345\/s[\s\S]*The cost of authentication in the chain: at half of mode 5's capacity \(110 req\/s\)/);

  const result: BenchResult = {
    meta: { date: '2025-01-01T00:00:00Z', durationSec: 300, host: { cores: 2, cpuModel: 'Test CPU', memGiB: 24, platform: 'linux' }, loadavgBefore: [0.2, 0.3, 0.4], loadavgAfter: [1, 1, 1], uptimeBefore: '', uptimeAfter: '', versions: { node: 'v20', envoy: '1.40.0' }, git: { commit: 'abcdef1234567', dirty: false }, settings: { trialSec: 6, warmupSec: 2, pool: 16, envoyConcurrency: 1 }, notes: ['a note'] },
    sloP99Ms: 200, modes, halfRate: 500, propagation, aims,
  };
  const md = renderMarkdown(result);
  t.match(md, /\| none \| — \| 200 \| 1000 \(fails at 2000\) \| 100 % \| 111 % \| 0\.2 \|/);
  t.match(md, /\| ext_authz \| — \| 401 \| 600 \(fails at 1200\) \| 60 % \| 67 % \| 0\.2 \|/);
  t.match(md, /\| none \| 1000 \| 1000 \| 37\.5 \/ 150 \/ 180 \| 0 \|/, 'search steps are in the per-rate table');
  t.match(md, /\| none \| 2000 \| 2000 \| .* \| 7 \(7x503\) \| 0\.5 \| 0\.1 \| FAIL \|/);
  const retried: BenchResult = { ...result, modes: [{ ...modes[0] as ModeResult, steps: [{ ...step(100, 5), attempts: 2, firstAttempt: { p99: 250, failed: 0, achieved: 100 } }], search: [] }] };
  t.match(renderMarkdown(retried), /\| none \| 100 \| 100 \| .* \| pass \(try 2; 1st: p99 250, failed 0\) \|/);
  t.match(md, /\| ext_authz \| 2\.13 \| 8\.5 \| \+4\.5 \| 0 \| generator 0\.3, bench-envoy-none 0\.2 \|/);
  t.match(md, /\| \*\*every verifier\*\* \(slowest per trial\) \| \*\*5\*\* \| \*\*9\*\* \| 9 \| \|/);
  t.match(md, /Load average before: 0\.2 0\.3 0\.4/);
  t.same(propagation.sinceRevokeAnswer, { p50: -1, p99: 2, max: 2 });
  t.match(md, /slowest verifier rejected at p50 -1 ms \/ p99 2 ms/);
  t.match(md, /- mode 3 capacity at the SLO >= 60 % of mode 2's: 67 % — met/);
});

t.test('/proc/<pid>/stat parsing (comm with spaces and parentheses)', async (t) => {
  const line = '4242 (node (tsx) x) S 1 4240 4240 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 11 0 1000 0 0';
  t.same(parseProcStat(line), { pgrp: 4240, cpuMs: 3250 });
  t.equal(parseProcStat('garbage'), null);
  t.same(cpuPerRequest({ a: 100, b: 50 }, { a: 300, b: 50, c: 10 }, 100), { a: 2, c: 0.1 });
  t.same(cpuPerRequest({ a: 1 }, { a: 2 }, 0), {});
  // /proc/stat: user nice system idle iowait irq softirq steal (ticks of 10 ms)
  t.equal(parseMachineStat('cpu  100 0 50 900 10 5 5 0 0 0\ncpu0 1 2 3'), 1600);
  t.equal(foreignCores({ machine: 0, ours: 0, at: 0 }, { machine: 3000, ours: 1000, at: 2000 }), 1, 'two busy seconds that were not ours over two seconds: one core');
  t.equal(foreignCores({ machine: 0, ours: 0, at: 0 }, { machine: 500, ours: 800, at: 1000 }), 0, 'never negative');
});

t.test('CPU profile summary: self time by frame and category, idle excluded', async (t) => {
  t.equal(categoryOf('file:///r/node_modules/@grpc/grpc-js/build/src/server.js', 'x'), 'grpc-js');
  t.equal(categoryOf('file:///r/node_modules/protobufjs/src/reader.js', 'x'), 'protobufjs');
  t.equal(categoryOf('file:///r/packages/core/src/verify.ts', 'verify'), 'jwt-mesh core (verify, policy, revocation)');
  t.equal(categoryOf('node:internal/http2/core', 'x'), 'Node http2 (gRPC transport)');
  t.equal(categoryOf('', 'writev'), 'native bindings (socket writes, crypto, ...)');
  t.equal(categoryOf('', '(garbage collector)'), 'GC');
  const profile: CpuProfile = {
    nodes: [
      { id: 1, callFrame: { functionName: '(root)', url: '', lineNumber: -1 } },
      { id: 2, callFrame: { functionName: '(idle)', url: '', lineNumber: -1 } },
      { id: 3, callFrame: { functionName: 'decode', url: 'file:///r/node_modules/protobufjs/src/reader.js', lineNumber: 9 }, children: [6] },
      { id: 4, callFrame: { functionName: 'decide', url: 'file:///r/packages/core/src/authenticate.ts', lineNumber: 99 } },
      { id: 5, callFrame: { functionName: '(garbage collector)', url: '', lineNumber: -1 } },
      { id: 6, callFrame: { functionName: 'writev', url: '', lineNumber: -1 } },
    ],
    startTime: 0,
    endTime: 1_000_000, // 1 s in µs
    samples: [2, 2, 2, 2, 3, 3, 3, 6, 4, 5],
  } as CpuProfile;
  const s = summariseProfile(profile, 'x.cpuprofile');
  t.equal(s.wallMs, 1000);
  t.equal(s.busyMs, 600);
  t.same(Object.fromEntries(s.categories.map((c) => [c.category, c.pct])), {
    protobufjs: 50,
    'native bindings (socket writes, crypto, ...)': 16.7,
    'jwt-mesh core (verify, policy, revocation)': 16.7,
    GC: 16.7,
  });
  t.same(Object.fromEntries(s.attributed.map((c) => [c.category, c.pct])), { protobufjs: 66.7, 'jwt-mesh core (verify, policy, revocation)': 16.7, GC: 16.7 }, 'the native write is charged to its protobufjs caller');
  t.equal(s.top[0]?.frame, 'decode protobufjs/src/reader.js:10');
  t.equal(s.top[0]?.selfMs, 300);
  t.equal(categoryOf('', 'CheckRequest$decode'), 'protobufjs');
  t.equal(categoryOf('file:///r/node_modules/@pinojs/redact/index.js', 'getValueIfExists'), 'logging (pino)');
});
