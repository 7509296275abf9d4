/**
 * The many-user report (src/report.ts) and the pieces it reads: Prometheus text, cache hit rates
 * between two scrapes, and a k6 summary export (the fixture has the shape and keys k6 1.1's
 * `--summary-export` writes).
 */
import t from 'tap';
import { crossedThresholds, formatSummary, type K6Summary } from '../src/k6.js';
import { metricSum } from '../src/mesh-probe.js';
import { hitRate, renderReport, type MeshRecord } from '../src/report.js';

const trend = (med: number, p99: number, count: number) => ({ avg: med, min: 1, med, 'p(90)': p99 * 0.8, 'p(95)': p99 * 0.9, 'p(99)': p99, max: p99 * 1.2, count });
const summary: K6Summary = {
  metrics: {
    http_reqs: { count: 1200, rate: 10 },
    vus: { value: 0, min: 0, max: 100 },
    'http_req_duration{kind:api}': { ...trend(20, 150, 1000), thresholds: { 'p(99)<200': false } },
    'http_req_duration{kind:auth,name:login}': { ...trend(300, 900, 100), thresholds: { 'p(99)<1500': false } },
    'http_req_duration{kind:auth,name:refresh}': { ...trend(40, 300, 100), thresholds: { 'p(99)<1000': false } },
    'http_req_failed{kind:api}': { passes: 2, fails: 998, value: 0.002, thresholds: { 'rate<0.001': true } },
    'http_req_failed{kind:auth}': { passes: 0, fails: 200, value: 0, thresholds: { 'rate<0.001': false } },
    'checks{kind:api}': { passes: 1898, fails: 2, value: 0.999 },
    'checks{kind:auth}': { passes: 200, fails: 0, value: 1 },
    logins: { count: 100, rate: 1 },
    token_refreshes: { count: 100, rate: 1 },
    refresh_invalid_grant: { count: 0, rate: 0, thresholds: { 'count==0': false } },
    chain_requests: { count: 900, rate: 9 },
  },
};

const prom = (hits: number, misses: number) =>
  `# HELP jwtmesh_verified_token_cache_lookups_total x\n# TYPE jwtmesh_verified_token_cache_lookups_total counter\njwtmesh_verified_token_cache_lookups_total{result="hit"} ${hits}\njwtmesh_verified_token_cache_lookups_total{result="miss"} ${misses}\njwtmesh_verified_token_cache_lookups_total_created 1\n`;

t.test('metricSum adds the samples of one name whose labels match', async (t) => {
  const text = 'a_total{x="1",result="hit"} 3\na_total{result="hit",x="2"} 4\na_total{result="miss"} 5\na_total_created 9\nab_total 7\n';
  t.equal(metricSum(text, 'a_total', { result: 'hit' }), 7);
  t.equal(metricSum(text, 'a_total'), 12);
  t.equal(metricSum(text, 'ab_total'), 7, 'a longer name is another metric');
  t.equal(metricSum(text, 'c_total'), undefined, 'absent: undefined, not 0');
});

t.test('hit rates are taken between two scrapes; a verifier without the metric says so', async (t) => {
  t.same(hitRate(prom(10, 10), prom(100, 20), ['jwtmesh_verified_token_cache_lookups_total']), { rate: 0.9, lookups: 100 });
  t.same(hitRate(null, prom(3, 1), ['nope', 'jwtmesh_verified_token_cache_lookups_total']), { rate: 0.75, lookups: 4 }, 'the second name of the list');
  t.equal(hitRate(prom(5, 5), prom(5, 5), ['jwtmesh_verified_token_cache_lookups_total']), 'no lookups');
  t.equal(hitRate('up 1\n', 'up 1\n', ['jwtmesh_verified_token_cache_lookups_total']), 'not exported');
  t.equal(hitRate(null, null, ['jwtmesh_verified_token_cache_lookups_total']), 'no /metrics answer');
});

t.test('the report shows the run from the summary and the mesh record', async (t) => {
  const snap = (cpu: number, mget: number, metrics: string | null) => ({ at: 0, cpuMs: { edge: cpu, orders: cpu * 2 }, redisCalls: { mget, info: 9, evalsha: 10 }, metrics: { 'authz-1': metrics, orders: null } });
  const mesh: MeshRecord = {
    command: 'make loadtest-10k VUS=100',
    startedAt: '2026-12-04T18:00:00.000Z',
    runSec: 120,
    seedSec: 3,
    vusTarget: 100,
    think: { min: 5, max: 15 },
    accessTokenTtlSec: 60,
    rampSec: 30,
    holdSec: 80,
    loadavgBefore: [1, 2, 3],
    loadavgAfter: [4, 5, 6],
    k6ExitCode: 99,
    machine: '2 cores',
    before: { ...snap(1000, 100, prom(0, 0)), cpuMs: { edge: 1000, orders: 2000, k6: 0 } },
    after: { ...snap(2200, 1900, prom(3000, 600)), cpuMs: { edge: 2200, orders: 4400, k6: 6000 } },
    peakRssBytes: { k6: 70 * 2 ** 20, edge: 50 * 2 ** 20 },
    verifiers: ['authz-1', 'orders'],
  };
  const md = renderReport(summary, mesh);
  t.match(md, /\| VUs reached \(target\) \| 100 \(100\) \|/);
  t.match(md, /\| offered rate at full strength .* \| 10\.0 req\/s \|/, '100 VUs / (10 s think + 20 ms): 9.98');
  t.match(md, /\| API p50 \/ p90 \/ p99 \/ max \| 20\.0 \/ 120\.0 \/ 150\.0 \/ 180\.0 ms \|/);
  t.match(md, /\| login p50 \/ p90 \/ p99 \/ max \| 300\.0 \/ 720\.0 \/ 900\.0/);
  t.match(md, /\| failed API requests \| 2 \(0\.200 %\) \|/);
  t.match(md, /crossed http_req_failed\{kind:api\}: rate<0\.001/);
  t.match(md, /\| k6 peak RSS \| 70 MB \(0\.70 MB per VU\) \|/);
  t.match(md, /\| edge \| 50 \| 1\.2 \| 1\.000 \|/, 'edge: 1200 ms of CPU over 1200 requests');
  t.match(md, /\| orders \| - \| 2\.4 \| 2\.000 \|/);
  t.match(md, /\| \*\*the mesh \(every process but k6\)\*\* \| \| 3\.6 \| 3\.000 \|/, 'k6 left out of the mesh total');
  t.match(md, /\| authz-1 \| 83\.3 % of 3600 \| not exported \|/);
  t.match(md, /\| orders \| no \/metrics answer \| no \/metrics answer \|/);
  t.match(md, /\*\*Redis commands per request\*\*: 1\.50 \(1800 commands; mget 1800\)/, 'INFO of the probe itself left out');
  t.match(md, /MGET\): 1800 for 3600 token verifications \(900 chain requests x 4 verifiers\).* about 50\.0 %/);
});

t.test('crossed thresholds and the short figures read the summary only', async (t) => {
  t.same(crossedThresholds(summary), ['http_req_failed{kind:api}: rate<0.001']);
  const text = formatSummary(summary);
  t.match(text, /api {10}1000 requests {2}p50 20\.0 ms {2}p90 120\.0 ms {2}p99 150\.0 ms/);
  t.match(text, /verdict {3}FAIL: http_req_failed\{kind:api\}: rate<0\.001/);
});
