/**
 * `make loadtest-login-burst`'s runner: its knobs are refused by name, and its report computes the
 * burst's figures from k6's summary export (the fixture has the keys k6 1.1's `--summary-export`
 * writes for login-burst.ts) and from the auth-service's /metrics and /proc CPU before and after.
 */
import t from 'tap';
import type { K6Summary } from '../src/k6.js';
import { readBurstKnobs } from '../src/login-burst.js';
import { burstFigures, cpuAt, renderBurstReport, type BurstRecord } from '../src/login-burst-report.js';

/** When the burst started (epoch ms) in the fixture. */
const T = 1_796_457_600_000;

const trend = (med: number, p99: number, max: number, count: number) => ({ avg: med, min: 1, med, 'p(90)': p99 * 0.9, 'p(95)': p99 * 0.95, 'p(99)': p99, max, count });
const summary: K6Summary = {
  metrics: {
    'http_req_duration{kind:api}': { ...trend(12, 80, 140, 2000), thresholds: { 'p(99)<200': false } },
    'http_req_failed{kind:api}': { passes: 0, fails: 2000, value: 0, thresholds: { 'rate<0.001': false } },
    'checks{kind:api}': { passes: 3800, fails: 0, value: 1, thresholds: { 'rate>0.999': false } },
    'http_req_duration{kind:burst}': { ...trend(30, 900, 1100, 200), thresholds: { 'max<10000': false } },
    dropped_iterations: { count: 0, rate: 0, thresholds: { 'count==0': false } },
    burst_login_attempts: { count: 200, rate: 4 },
    burst_logins_ok: { count: 60, rate: 1, thresholds: { 'count>=60': false } },
    burst_logins_failed: { count: 0, rate: 0, thresholds: { 'count==0': false } },
    burst_shed: { count: 140, rate: 3, thresholds: { 'count>0': false } },
    burst_rate_limited: { count: 0, rate: 0, thresholds: { 'count==0': false } },
    burst_no_answer: { count: 0, rate: 0, thresholds: { 'count==0': false } },
    burst_shed_duration: { ...trend(8, 40, 55, 140), thresholds: { 'p(99)<500': false } },
    burst_login_duration: trend(400, 950, 1100, 60),
    burst_attempts_per_login: { avg: 3.33, min: 1, med: 3, 'p(90)': 5, 'p(95)': 6, 'p(99)': 7, max: 7, count: 60 },
    burst_done_after: trend(3000, 5900, 6000, 60),
    burst_started_at: { value: T, min: T, max: T },
  },
};

const authMetrics = (logins: number, queueFull: number, waitTimeout: number, hashSec: number, hashes: number) =>
  [
    '# TYPE auth_login_total counter',
    `auth_login_total{outcome="success"} ${logins}`,
    'auth_login_total{outcome="invalid_credentials"} 3',
    '# TYPE auth_password_hash_shed_total counter',
    `auth_password_hash_shed_total{reason="queue_full"} ${queueFull}`,
    `auth_password_hash_shed_total{reason="wait_timeout"} ${waitTimeout}`,
    '# TYPE auth_password_hash_duration_seconds histogram',
    `auth_password_hash_duration_seconds_bucket{le="+Inf"} ${hashes}`,
    `auth_password_hash_duration_seconds_sum ${hashSec}`,
    `auth_password_hash_duration_seconds_count ${hashes}`,
    '',
  ].join('\n');

const record: BurstRecord = {
  command: 'make loadtest-login-burst BURST=60 API_RATE=50 API_DURATION=40 BURST_START=10',
  startedAt: '2026-12-05T07:00:00.000Z',
  runSec: 48,
  burst: 60,
  apiRate: 50,
  apiDurationSec: 40,
  burstStartSec: 10,
  burstSpreadSec: 0,
  stack: 'a private stack on free ports',
  hashLimiter: { concurrency: 'auto', queueMax: 'auto', queueTimeoutMs: '1000' },
  machine: '2 cores (AMD EPYC), 24 GiB',
  cores: 2,
  rawRs256PerSec: 43_000,
  loadavgBefore: [0.5, 0.4, 0.3],
  loadavgAfter: [1.9, 0.8, 0.4],
  k6ExitCode: 0,
  cpuMsBefore: { auth: 10_000, edge: 2000, migrate: 0, k6: 0 },
  cpuMsAfter: { auth: 16_000, edge: 3000, migrate: 0, k6: 4000 },
  // Samples around the burst's start (T) and its last success (T + 6 s), and 5 s before it.
  authCpuSeries: [
    [T - 6000, 10_400],
    [T - 4000, 10_600],
    [T - 1000, 10_900],
    [T + 1000, 11_100],
    [T + 5000, 15_000],
    [T + 7000, 16_600],
  ],
  authMetricsBefore: authMetrics(10, 1, 0, 0.5, 10),
  authMetricsAfter: authMetrics(85, 131, 10, 5.0, 85),
};

t.test('the figures: burst counts from k6, CPU per login from /proc and the auth-service\'s own counters', async (t) => {
  const f = burstFigures(summary, record);
  t.equal(f.ok, 60);
  t.equal(f.attempts, 200);
  t.equal(f.shed, 140);
  t.equal(f.failed, 0);
  t.equal(f.servedInSec, 6, 'the last success came 6 s after the burst started');
  t.equal(f.loginsPerSec, 10, '60 logins in 6 s');
  t.equal(f.burstCpuSec, 4.8, 'auth CPU from the burst start (11,000 ms, interpolated) to its last success (15,800 ms)');
  t.equal(f.burstCpuMsPerLogin, 80, '4.8 s / 60 burst logins');
  t.equal(f.burstLoginsPerCpuSec, 12.5, '60 logins / 4.8 CPU-seconds');
  t.equal(f.backgroundCpuMsPerSec, 100, 'API alone: 500 ms of CPU in the 5 s before the burst');
  t.equal(f.authCpuSec, 6, 'auth CPU: 16 s - 10 s');
  t.equal(f.serverLogins, 75, 'successful logins the server counted during the run (85 - 10)');
  t.same(f.serverShed, { queue_full: 130, wait_timeout: 10 }, 'shed answers by reason, during the run');
  t.equal(f.meanHashMs, 60, '4.5 s of scrypt over 75 checks');
  t.equal(f.authCpuMsPerLogin, 80, '6 s of CPU / 75 logins');
  t.equal(f.loginsPerCpuSec, 12.5, '75 logins / 6 CPU-seconds');
});

t.test('a run where nothing succeeded has no rate rather than a made-up one', async (t) => {
  const none: K6Summary = { metrics: { ...summary.metrics, burst_logins_ok: { count: 0, rate: 0 }, burst_done_after: trend(0, 0, 0, 0) } };
  const f = burstFigures(none, { ...record, authMetricsAfter: null });
  t.equal(f.servedInSec, undefined);
  t.equal(f.loginsPerSec, undefined);
  t.equal(f.serverLogins, undefined, 'no /metrics answer: unknown, not 0');
  t.equal(f.loginsPerCpuSec, undefined);
  t.equal(f.burstCpuSec, undefined, 'no burst window, no CPU over it');
  t.equal(f.burstLoginsPerCpuSec, undefined);
});

t.test('cpuAt interpolates between the samples around a time, and knows nothing outside them', async (t) => {
  const series: Array<[number, number]> = [
    [1000, 50],
    [1200, 90],
    [1400, 90],
  ];
  t.equal(cpuAt(series, 1100), 70);
  t.equal(cpuAt(series, 1200), 90);
  t.equal(cpuAt(series, 1300), 90, 'idle between two samples');
  t.equal(cpuAt(series, 999), undefined);
  t.equal(cpuAt(series, 1401), undefined);
  t.equal(cpuAt([], 1000), undefined);
});

t.test('the report names the command, the machine and every figure the issue asks for', async (t) => {
  const text = renderBurstReport(summary, record);
  t.match(text, /#### Login burst of 60 — 2026-12-05T07:00:00\.000Z/);
  t.match(text, /`make loadtest-login-burst BURST=60 API_RATE=50 API_DURATION=40 BURST_START=10`/);
  t.match(text, /raw RS256 43,000\/s on one core/);
  t.match(text, /Load average before: 0\.5 0\.4 0\.3; after: 1\.9 0\.8 0\.4/);
  t.match(text, /every threshold held/);
  t.match(text, /\| burst logins succeeded \/ of \/ failed after retries \| 60 \/ 60 \/ 0 \|/);
  t.match(text, /\| 503 \+ Retry-After answers \(shed\) \| 140 \(the auth-service counted queue_full 130, wait_timeout 10\) \|/);
  t.match(text, /\| 503 latency p50 \/ p99 \/ max \| 8\.0 \/ 40\.0 \/ 55\.0 ms \|/);
  t.match(text, /\| admitted login latency \(its own request\) p50 \/ p99 \/ max \| 400\.0 \/ 950\.0 \/ 1100\.0 ms \|/);
  t.match(text, /\| burst served in \(its start to the last success\) \| 6\.00 s: 10\.0 logins\/s, 5\.0 per core of the machine \|/);
  t.match(text, /\| API p50 \/ p99 \/ max \(2000 requests\) \| 12\.0 \/ 80\.0 \/ 140\.0 ms \|/);
  t.match(text, /\| \*\*auth-service over the burst \(its start to the last success\): CPU, per login, logins per CPU-second\*\* \| \*\*4\.80 s, 80\.0 ms, 12\.5\/s\*\* \(Keycloak's sizing: 15\/s per vCPU\) \|/);
  t.match(text, /\| auth-service with API traffic alone \(the 5 s before the burst\) \| 100\.0 ms of CPU per second \|/);
  t.match(text, /\| auth-service over the whole run: successful logins \(setup's included\), CPU, per login, logins per CPU-second \| 75, 6\.00 s, 80\.0 ms, 12\.5\/s \|/);
  t.match(text, /: auth 6\.0, edge 1\.0, k6 4\.0; 11\.0 in all/, 'CPU per process, a process that did not run left out');
  const crossed: K6Summary = { metrics: { ...summary.metrics, burst_shed: { count: 0, rate: 0, thresholds: { 'count>0': true } } } };
  t.match(renderBurstReport(crossed, { ...record, k6ExitCode: 99 }), /exited 99: crossed burst_shed: count>0/);
});

t.test('the runner refuses bad knobs by name', async (t) => {
  t.same(
    { ...readBurstKnobs({}), RUN_DIR: '' },
    { BURST: 60, BURST_START: 10, BURST_SPREAD_SEC: 0, API_RATE: 50, API_DURATION: 40, RUN_DIR: '' },
    'the defaults: 60 logins at 10 s, API 50/s for 40 s',
  );
  t.equal(readBurstKnobs({ BURST: '', API_RATE: '' }).BURST, 60, 'empty counts as unset');
  const cases: Array<[NodeJS.ProcessEnv, RegExp]> = [
    [{ BURST: '0' }, /^BURST: .*got "0"/],
    [{ BURST: '5001' }, /^BURST: /],
    [{ BURST: 'lots' }, /^BURST: /],
    [{ API_RATE: '0.5' }, /^API_RATE: /],
    [{ API_DURATION: '601' }, /^API_DURATION: /],
    [{ BURST_START: '1.5' }, /^BURST_START: /],
    [{ BURST_SPREAD_SEC: '61' }, /^BURST_SPREAD_SEC: /],
    [{ SHED_P99_MS: '0' }, /^SHED_P99_MS: /],
    [{ API_DURATION: '30', BURST_START: '25' }, /^API_DURATION \(30 s\) must be at least BURST_START \+ 10 s \(35 s\)/],
  ];
  for (const [env, message] of cases) t.throws(() => readBurstKnobs(env), message, JSON.stringify(env));
});
