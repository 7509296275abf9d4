/**
 * `make bench --tracing`: the option (parsed and validated with a clear message, defaults, and
 * `make bench` without it exactly as before), the path CPU that leaves the receiver and the
 * generator out, the markdown table (spans per request, capacity, latency and CPU against
 * tracing off, the receiver apart) and the README block it replaces.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { parseBenchArgs, type BenchOptions } from '../src/bench/options.js';
import { updateReadme } from '../src/bench/results.js';
import { categoryOf } from '../src/bench/profile.js';
import { MODES } from '../src/bench/report.js';
import {
  parseTracingSettings,
  renderTracingMarkdown,
  spansPerRequest,
  stepAt,
  tracingPathCpu,
  type TracingModeResult,
  type TracingResult,
  type TracingStep,
} from '../src/bench/tracing-report.js';

const opts = (argv: string[]): BenchOptions => {
  const o = parseBenchArgs(argv);
  if (o === 'help') throw new Error('help');
  return o;
};

t.test('--tracing: a list of off and sampling percentages, in the order given', async (t) => {
  t.same(parseTracingSettings('off,10,100'), ['off', 10, 100]);
  t.same(parseTracingSettings(' 100 , OFF ,0.5,0'), [100, 'off', 0.5, 0], 'spaces, case, decimals and 0 (on, nothing sampled)');
  t.same(parseTracingSettings('10%,off'), [10, 'off'], 'a percent sign is allowed');
  for (const bad of ['101', '-1', '1e2', 'foo', '', 'off,,10', '10,abc', 'NaN', '50.']) {
    t.throws(() => parseTracingSettings(bad), /^--tracing: ".*" is not a setting: use off or a sampling percentage from 0 to 100/, `${JSON.stringify(bad)} refused`);
  }
  t.throws(() => parseTracingSettings('off,10,off'), /--tracing: off is listed twice/);
  t.throws(() => parseTracingSettings('10,10.0'), /--tracing: 10 % is listed twice/);
});

t.test('--tracing on the command line: defaults, limits, and make bench without it unchanged', async (t) => {
  const o = opts(['--tracing', 'off,10,100']);
  t.same(o.tracing, ['off', 10, 100]);
  t.same(o.modes, ['ext_authz', 'full'], 'default modes: 3 and 4');
  t.same(o.rates, [100, 400], 'default rates: 100 and 400 req/s');
  t.equal(o.searchBudgetSec, 70, 'the capacity search as usual');
  const chosen = opts(['--tracing', 'off,100', '--modes', 'full', '--rates', '50,200', '--search-budget-sec', '0']);
  t.same([chosen.modes, chosen.rates, chosen.searchBudgetSec], [['full'], [50, 200], 0]);
  t.throws(() => parseBenchArgs(['--tracing', 'off,150']), /--tracing: "150" is not a setting/);
  t.throws(() => parseBenchArgs(['--tracing', 'off', '--modes', 'none,full']), /--modes: with --tracing only ext_authz and full .* not none/);
  t.throws(() => parseBenchArgs(['--tracing', '10', '--generator-cost']), /--tracing: not with --generator-cost/);
  const prof = opts(['--profile', '--tracing', '100']);
  t.same([prof.profile, prof.tracing], [true, [100]], '--profile with one percentage: the profile pass, traced');
  t.same(opts(['--profile', '--tracing', '100', '--modes', 'none']).modes, ['none'], 'the profile pass ignores --modes');
  for (const list of ['off', 'off,100', '10,100']) {
    t.throws(() => parseBenchArgs(['--profile', '--tracing', list]), /--tracing: with --profile, one sampling percentage/, `--profile --tracing ${list} refused`);
  }
  t.throws(() => parseBenchArgs(['--tracing']), /argument missing/i, 'a value is required');

  const plain = opts([]);
  t.equal(plain.tracing, null, 'no --tracing: the side-by-side bench');
  t.same(plain.modes, [...MODES], 'every mode, as before');
  t.same(plain.rates, [100, 200, 400, 800, 1600], 'the usual grid, as before');
  t.same(opts(['--quick']).rates, [100, 400, 1600]);
  t.same(opts(['--modes', 'none,ext_authz', '--rates', '200,800', '--search-budget-sec', '0', '--propagation-trials', '0']).modes, ['none', 'ext_authz']);
  t.equal(parseBenchArgs(['--help']), 'help');
});

const step = (rate: number, cpu: Record<string, number>, extra: Partial<TracingStep> = {}): TracingStep => ({
  rate,
  achieved: rate,
  p50: 5,
  p90: 8,
  p99: 20,
  max: 30,
  failed: 0,
  nonOk: {},
  errors: {},
  dropped: 0,
  lagP99: 0.3,
  pass: true,
  cpuMsPerRequest: cpu,
  cpuMsPerRequestInStep: Object.fromEntries(Object.entries(cpu).map(([k, v]) => [k, v * 0.9])),
  tailMs: 2500,
  attempts: 1,
  foreignCores: 0.05,
  sent: rate * 6,
  spans: null,
  lateSpans: null,
  byService: {},
  ...extra,
});

t.test('the profile pass names the OpenTelemetry SDK and its OTLP exporter', async (t) => {
  t.equal(categoryOf('file:///r/node_modules/@opentelemetry/sdk-trace-base/build/src/Span.js', 'setAttribute'), 'OpenTelemetry SDK and API (spans, context, sampler)');
  t.equal(categoryOf('file:///r/node_modules/@opentelemetry/api/build/src/api/context.js', 'with'), 'OpenTelemetry SDK and API (spans, context, sampler)');
  t.equal(categoryOf('file:///r/node_modules/@opentelemetry/otlp-transformer/build/src/trace/internal.js', 'toOtlpSpan'), 'OpenTelemetry OTLP exporter (serialise, send)');
  t.equal(categoryOf('file:///r/node_modules/@opentelemetry/exporter-trace-otlp-proto/build/src/platform/node/OTLPTraceExporter.js', 'x'), 'OpenTelemetry OTLP exporter (serialise, send)');
  t.equal(categoryOf('file:///r/node_modules/@opentelemetry/otlp-exporter-base/build/src/x.js', 'send'), 'OpenTelemetry OTLP exporter (serialise, send)');
});

t.test('path CPU leaves out the generator and the receiver; spans per request over requests sent', async (t) => {
  t.equal(tracingPathCpu({ edge: 1, orders: 2.5, generator: 9, traces: 4 }), 3.5);
  t.equal(spansPerRequest({ spans: 290, sent: 10 }), 29);
  t.equal(spansPerRequest({ spans: null, sent: 10 }), null, 'off: no figure');
  t.equal(spansPerRequest({ spans: 0, sent: 0 }), null, 'nothing sent: no figure');
});

t.test('the report: one row per mode and setting, against tracing off, the receiver apart', async (t) => {
  const offCpu = { edge: 0.7, 'authz-1': 0.65, 'authz-2': 0.65, orders: 1.4, inventory: 1.75, profile: 1.07, 'sidecar-orders': 0.6, redis: 0.05, generator: 0.4 };
  const onCpu = { edge: 0.9, 'authz-1': 0.8, 'authz-2': 0.8, orders: 1.9, inventory: 2.3, profile: 1.3, 'sidecar-orders': 0.75, redis: 0.05, generator: 0.4, traces: 1.2 };
  const full = (setting: TracingModeResult['setting'], cpu: Record<string, number>, spansPerReq: number | null, cap: number): TracingModeResult => ({
    setting,
    mode: 'full',
    steps: [100, 400].map((rate) =>
      step(rate, cpu, spansPerReq === null ? {} : { spans: spansPerReq * rate * 6, lateSpans: 0, byService: { edge: { exports: (rate * 6) / 2.5, spans: 2 * rate * 6 }, orders: { exports: 6, spans: (spansPerReq - 2) * rate * 6 } } }),
    ),
    search: [step(cap, cpu, { spans: spansPerReq === null ? null : spansPerReq * cap * 6 }), step(Math.round(cap * 1.08), cpu, { pass: false, p99: 400, failed: 3 })],
    capacity: { rate: cap, firstFail: Math.round(cap * 1.08), converged: true },
  });
  const result: TracingResult = {
    meta: {
      date: '2026-12-06T07:00:00.000Z',
      durationSec: 600,
      host: { cores: 2, cpuModel: 'Test CPU', memGiB: 24, platform: 'linux' },
      loadavgBefore: [0.8, 1, 1.2],
      loadavgAfter: [1.5, 1.4, 1.3],
      rawRs256PerSec: 43210,
      uptimeBefore: '',
      uptimeAfter: '',
      versions: { envoy: '1.40.0', node: 'v20.20.2' },
      git: { commit: 'abcdef1234567', dirty: false },
      settings: { trialSec: 6, warmupSec: 2, pool: 16, tailMs: 2500 },
    },
    sloP99Ms: 200,
    settings: ['off', 100],
    rates: [100, 400],
    results: [full('off', offCpu, null, 800), full(100, onCpu, 29, 500)],
  };
  t.equal(stepAt(result.results[1] as TracingModeResult, 500)?.rate, 500, 'a search step is found by its rate');
  const md = renderTracingMarkdown(result);
  t.match(md, /Raw RS256 \(node:crypto verify, one core\): 43,210\/s/);
  t.match(md, /Load average before: 0\.8 1 1\.2; after: 1\.5 1\.4 1\.3/);
  // off: path 0.7+0.65+0.65+1.4+1.75+1.07+0.6+0.05 = 6.87; on: 0.9+0.8+0.8+1.9+2.3+1.3+0.75+0.05 = 8.8 (+1.93, +28 %)
  t.match(md, /\| 4\. full path \| off \| 0 \(off\) \| 800 \(fails at 864\) \| 5 \/ 20 \| 5 \/ 20 \| 6\.87 \| 6\.87 \| — \|/);
  t.match(md, /\| 4\. full path \| 100 % \| 29 \| 500 \(fails at 540\) \| 5 \/ 20 \| 5 \/ 20 \| 8\.8 \(\+1\.93, \+28 %\) \| 8\.8 \(\+1\.93, \+28 %\) \| 1\.2 \/ 1\.2 \|/);
  t.notMatch(md, /\| traces \|/, 'the receiver is not a row of the path');
  t.match(md, /\| \*\*the path\*\* \| \*\*6\.87\*\* \| \*\*8\.8\*\* \|/);
  t.match(md, /\| the path, the step alone \(no tail\) \| 6\.183 \| 7\.92 \|/);
  t.match(md, /\| receiver \(not in the path\) \| — \| 1\.2 \|/, 'no receiver with tracing off');
  t.match(md, /\| receiver CPU ms \/ request at 100 \/ 400 req\/s \(not in the path\) \|/);
  t.match(md, /\| generator \(not in the path\) \| 0\.4 \| 0\.4 \|/);
  t.match(md, /\| inventory \| 1\.75 \| 2\.3 \|/);
  t.match(md, /\| edge \| 2 \/ 0\.4 \|/, 'spans / export requests per request for the edge');
  t.match(md, /\| orders \| 27 \/ 0\.01 \|/);
  t.match(md, /\| \*\*all\*\* \| \*\*29 \/ 0\.41\*\* \|/);
  t.match(md, /\| 4\. full path \| 100 % \| 540 \| 540 \| 5 \/ 400 \/ 30 \| 3 \| — \| — \| 8\.8 \| 0\.05 \| FAIL \|/, 'a failed search step, spans not counted');
  t.match(md, /\| 4\. full path \| 100 % \| 500 \| 500 \| .* \| 0 \| 29 \| — \|/);
  const mixed = renderTracingMarkdown({ ...result, results: [result.results[0] as TracingModeResult, { ...(result.results[0] as TracingModeResult), mode: 'ext_authz' }, result.results[1] as TracingModeResult] });
  const at = (re: RegExp) => mixed.search(re);
  t.ok(at(/\| 3\. ext_authz \| off \| 0 \(off\)/) < at(/\| 4\. full path \| off \| 0 \(off\)/) && at(/\| 4\. full path \| off \| 0 \(off\)/) < at(/\| 4\. full path \| 100 % \| 29/), 'rows grouped by mode, settings in run order');
  const unconverged = renderTracingMarkdown({ ...result, results: [{ ...(result.results[0] as TracingModeResult), capacity: { rate: 800, firstFail: null, converged: false } }] });
  t.match(unconverged, /\| 800 \* \|/);
  t.match(unconverged, /the search stopped on its time budget/);
});

t.test('the README block between the bench-tracing markers is replaced, the results table left alone', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'bench-tracing-readme-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'README.md');
  const text = '# x\n<!-- bench:start -->\nold results\n<!-- bench:end -->\n\n## tracing\n<!-- bench-tracing:start -->\nold tracing\n<!-- bench-tracing:end -->\nafter\n';
  writeFileSync(file, text);
  t.equal(updateReadme(file, 'new tracing', 'bench-tracing'), true);
  t.equal(readFileSync(file, 'utf8'), text.replace('old tracing', 'new tracing'));
  t.equal(updateReadme(file, 'new results'), true, 'the default marker is the results table');
  t.match(readFileSync(file, 'utf8'), /<!-- bench:start -->\nnew results\n<!-- bench:end -->[\s\S]*new tracing/);
  t.equal(updateReadme(file, 'x', 'nope'), false, 'no such markers: nothing written');
  t.equal(updateReadme(join(dir, 'missing.md'), 'x', 'bench-tracing'), false);
});
