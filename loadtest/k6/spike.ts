/**
 * k6 spike test (open model): a steady arrival rate, then a sudden jump to `SPIKE_RATE` iterations
 * per second, held, and back. Arrival-rate executors start iterations on schedule whether or not
 * earlier ones finished, so queueing shows up as latency instead of hiding as fewer requests.
 * No think time: the executor paces the arrivals.
 *
 *   k6 run -e BASE_RATE=50 -e SPIKE_RATE=500 loadtest/k6/spike.ts
 *
 * Variables: BASE_URL, USERS / USERS_FILE, BASE_RATE (100/s), SPIKE_RATE (2000/s), WARM (1m),
 * SPIKE_RAMP (10s), SPIKE_HOLD (1m), RECOVER (1m), PRE_VUS (200),
 * TOKEN_POOL (min(PRE_VUS, 50): sessions logged in by setup(); a VU beyond the pool logs in
 * itself, round-robin over the users), MAX_VUS (5000), REFRESH_MARGIN_SEC (60), P99_MS (200),
 * LOGIN_P99_MS (1500), REFRESH_P99_MS (1000), MAX_FAILED_RATE (0.001), AUTH_RETRIES (5),
 * ABORT_ON_FAIL (false), ALLOW_HOST.
 */
import type { Options } from 'k6/options';
import { SUMMARY_TREND_STATS, baseUrl, envDuration, envInt, envNumber, loadUsers, thresholds } from './lib/config.ts';
import { loginPool, type SetupData } from './lib/session.ts';
import { refreshMarginSec, userIteration } from './lib/user.ts';

const BASE_URL = baseUrl();
const USERS = loadUsers();
const BASE_RATE = envNumber('BASE_RATE', 100, 1, 1_000_000);
const SPIKE_RATE = envNumber('SPIKE_RATE', 2000, 1, 1_000_000);
const PRE_VUS = envInt('PRE_VUS', 200, 1, 100_000);
const MAX_VUS = envInt('MAX_VUS', 5000, PRE_VUS, 100_000);
const ITERATION = { baseUrl: BASE_URL, users: USERS, refreshMarginSec: refreshMarginSec(), think: null };
const SPIKE_RAMP = envDuration('SPIKE_RAMP', '10s');

export const options: Options = {
  scenarios: {
    spike: {
      executor: 'ramping-arrival-rate',
      startRate: BASE_RATE,
      timeUnit: '1s',
      preAllocatedVUs: PRE_VUS,
      maxVUs: MAX_VUS,
      stages: [
        { duration: envDuration('WARM', '1m'), target: BASE_RATE },
        { duration: SPIKE_RAMP, target: SPIKE_RATE },
        { duration: envDuration('SPIKE_HOLD', '1m'), target: SPIKE_RATE },
        { duration: SPIKE_RAMP, target: BASE_RATE },
        { duration: envDuration('RECOVER', '1m'), target: BASE_RATE },
      ],
    },
  },
  thresholds: thresholds(),
  summaryTrendStats: SUMMARY_TREND_STATS,
  setupTimeout: '5m',
};

export function setup(): SetupData {
  return loginPool(BASE_URL, USERS, envInt('TOKEN_POOL', Math.min(PRE_VUS, 50), 1, PRE_VUS));
}

export default function (data: SetupData): void {
  userIteration(data, ITERATION);
}
