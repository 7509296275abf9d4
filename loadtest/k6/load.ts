/**
 * k6 load test: users (closed model, one VU = one signed-in user with think time) ramping up to
 * 10,000, holding, ramping down. Each user logs in once (the pool from `setup()`, or on its first
 * iteration beyond the pool), browses the route mix through the edge and the whole chain, and
 * refreshes its token before it expires (so runs longer than the access-token lifetime keep going).
 *
 *   k6 run -e VUS=200 -e RAMP=1m -e DURATION=5m loadtest/k6/load.ts   # a size `make up` on a laptop takes
 *   k6 run -e BASE_URL=http://127.0.0.1:8080 loadtest/k6/load.ts        # 10,000 users: see README (hardware, limits)
 *
 * Variables: BASE_URL, USERS / USERS_FILE, VUS (10000), RAMP (10m), DURATION (20m, the hold),
 * RAMP_DOWN (2m), TOKEN_POOL (min(VUS, 50): sessions logged in during setup), THINK_MIN_SEC (1),
 * THINK_MAX_SEC (3), REFRESH_MARGIN_SEC (60), P99_MS (200), ABORT_ON_FAIL (false).
 * Thresholds: http_req_duration p(99) < 200 ms, http_req_failed < 0.1 %, checks > 99.9 %.
 */
import type { Options } from 'k6/options';
import { SUMMARY_TREND_STATS, baseUrl, envDuration, envNumber, loadUsers, thinkTime, thresholds } from './lib/config.ts';
import { loginPool, type SetupData } from './lib/session.ts';
import { refreshMarginSec, userIteration } from './lib/user.ts';

const BASE_URL = baseUrl();
const USERS = loadUsers();
const VUS = envNumber('VUS', 10_000, 1, 1_000_000);
const TOKEN_POOL = envNumber('TOKEN_POOL', Math.min(VUS, 50), 1, VUS);

export const options: Options = {
  scenarios: {
    users: {
      executor: 'ramping-vus',
      startVUs: 0,
      stages: [
        { duration: envDuration('RAMP', '10m'), target: VUS },
        { duration: envDuration('DURATION', '20m'), target: VUS },
        { duration: envDuration('RAMP_DOWN', '2m'), target: 0 },
      ],
      gracefulRampDown: '30s',
    },
  },
  thresholds: thresholds(),
  summaryTrendStats: SUMMARY_TREND_STATS,
  setupTimeout: '10m',
};

export function setup(): SetupData {
  return loginPool(BASE_URL, USERS, TOKEN_POOL);
}

export default function (data: SetupData): void {
  userIteration(data, { baseUrl: BASE_URL, users: USERS, refreshMarginSec: refreshMarginSec(), think: thinkTime() });
}
