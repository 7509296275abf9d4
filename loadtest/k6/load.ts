/**
 * k6 load test: users (closed model: one VU = one registered user with think time) ramping up to
 * `VUS`, holding, ramping down. VU n logs in as user n of `USERS_FILE` on its first iteration (the
 * ramp spreads the logins out, as real users arrive), browses the route mix through the edge and
 * the whole chain, and refreshes its own session before the access token expires, so a hold longer
 * than the access-token lifetime exercises rotation: `VUS` distinct access tokens and refresh-token
 * families, nothing shared between VUs. `make loadtest-10k` drives it at 10,000 users.
 *
 *   k6 run -e VUS=2 -e RAMP=10s -e DURATION=1m loadtest/k6/load.ts                  # the demo users
 *   k6 run -e USERS_FILE=$PWD/users.json -e VUS=1000 -e RAMP=2m -e DURATION=6m loadtest/k6/load.ts
 *
 * Variables: BASE_URL, USERS / USERS_FILE (at least VUS users), VUS (2), RAMP (1m), DURATION (5m,
 * the hold), RAMP_DOWN (30s), THINK_MIN_SEC (1), THINK_MAX_SEC (3), REFRESH_MARGIN_SEC (60),
 * MAX_ITERATIONS (VUS x 100,000: a bound on the requests), P99_MS (200), LOGIN_P99_MS (1500),
 * REFRESH_P99_MS (1000), MAX_FAILED_RATE (0.001), AUTH_RETRIES (5), ABORT_ON_FAIL (false),
 * ALLOW_HOST. Thresholds: lib/config.ts `thresholds()`.
 */
import exec from 'k6/execution';
import type { Options } from 'k6/options';
import { SUMMARY_TREND_STATS, baseUrl, envDuration, envInt, loadUsers, requireUserPerVu, thinkTime, thresholds } from './lib/config.ts';
import { refreshMarginSec, userIteration } from './lib/user.ts';

const BASE_URL = baseUrl();
const USERS = loadUsers();
const VUS = envInt('VUS', 2, 1, 100_000);
requireUserPerVu(USERS, VUS);
const MAX_ITERATIONS = envInt('MAX_ITERATIONS', VUS * 100_000, 1, Number.MAX_SAFE_INTEGER);
const ITERATION = { baseUrl: BASE_URL, users: USERS, refreshMarginSec: refreshMarginSec(), think: thinkTime() };

export const options: Options = {
  scenarios: {
    users: {
      executor: 'ramping-vus',
      startVUs: 0,
      stages: [
        { duration: envDuration('RAMP', '1m'), target: VUS },
        { duration: envDuration('DURATION', '5m'), target: VUS },
        { duration: envDuration('RAMP_DOWN', '30s'), target: 0 },
      ],
      gracefulRampDown: '30s',
    },
  },
  thresholds: thresholds(),
  summaryTrendStats: SUMMARY_TREND_STATS,
};

export default function (): void {
  if (exec.instance.iterationsCompleted + exec.instance.iterationsInterrupted >= MAX_ITERATIONS) exec.test.abort(`MAX_ITERATIONS (${MAX_ITERATIONS}) reached`);
  userIteration(undefined, ITERATION);
}
