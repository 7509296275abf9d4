// k6 side of `make bench BENCH_ARGS=--generator-cost` (./generator-cost.ts): one GET with a Bearer
// token at a fixed arrival rate (constant-arrival-rate, the open model), nothing else, so the
// figure is what k6 itself costs per request. Env: TARGET, TOKEN, RATE (req/s), DURATION (s),
// PRE_VUS, MAX_VUS. The summary goes out as JSON (--summary-export).
import http from 'k6/http';

const rate = Number(__ENV.RATE);
export const options = {
  discardResponseBodies: true,
  scenarios: {
    fixed: {
      executor: 'constant-arrival-rate',
      rate,
      timeUnit: '1s',
      duration: `${Number(__ENV.DURATION)}s`,
      preAllocatedVUs: Number(__ENV.PRE_VUS || 100),
      maxVUs: Number(__ENV.MAX_VUS || 1000),
    },
  },
  summaryTrendStats: ['p(50)', 'p(99)', 'max'],
};

const params = { headers: { authorization: `Bearer ${__ENV.TOKEN}` }, timeout: '2s' };
export default function () {
  http.get(`${__ENV.TARGET}/api/orders/ord-1001`, params);
}
