/**
 * k6 smoke test: a couple of users for a short while, to prove the stack answers correctly through
 * every hop before a real load run. Same thresholds as the load test (the run fails on p99 >= 200 ms
 * or more than 0.1 % failed requests).
 *
 *   k6 run loadtest/k6/smoke.ts                                   # against `make up`
 *   k6 run -e BASE_URL=http://127.0.0.1:8080 -e VUS=5 -e DURATION=1m loadtest/k6/smoke.ts
 *
 * Variables: BASE_URL, USERS / USERS_FILE, VUS (2), DURATION (30s), THINK_MIN_SEC (1),
 * THINK_MAX_SEC (3), REFRESH_MARGIN_SEC (60), P99_MS (200).
 */
import type { Options } from 'k6/options';
import { SUMMARY_TREND_STATS, baseUrl, envDuration, envNumber, loadUsers, thinkTime, thresholds } from './lib/config.ts';
import { loginPool, type SetupData } from './lib/session.ts';
import { refreshMarginSec, userIteration } from './lib/user.ts';

const BASE_URL = baseUrl();
const USERS = loadUsers();
const VUS = envNumber('VUS', 2, 1, 100);

export const options: Options = {
  scenarios: {
    smoke: { executor: 'constant-vus', vus: VUS, duration: envDuration('DURATION', '30s') },
  },
  thresholds: thresholds(),
  summaryTrendStats: SUMMARY_TREND_STATS,
  setupTimeout: '2m',
};

export function setup(): SetupData {
  return loginPool(BASE_URL, USERS, VUS);
}

export default function (data: SetupData): void {
  userIteration(data, { baseUrl: BASE_URL, users: USERS, refreshMarginSec: refreshMarginSec(), think: thinkTime() });
}
