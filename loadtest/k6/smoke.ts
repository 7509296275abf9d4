/**
 * k6 smoke test: a couple of users for a short while, to prove the stack answers correctly through
 * every hop before a real load run; `make loadtest-smoke` runs it against a stack of its own.
 * Each VU logs in as its own user (VU n takes user n), browses with think time, and refreshes its
 * session before the access token expires. Thresholds split by kind of request (lib/config.ts):
 * API p99 < 200 ms, failed API requests and failed checks < 0.1 %; logins and refreshes have their
 * own bounds, sized for a memory-hard password hash.
 *
 *   k6 run loadtest/k6/smoke.ts                                   # against `make up`
 *   k6 run -e BASE_URL=http://127.0.0.1:8080 -e DURATION=1m loadtest/k6/smoke.ts
 *
 * Variables: BASE_URL, USERS / USERS_FILE, VUS (2, at most one per user), DURATION (30s),
 * THINK_MIN_SEC (1), THINK_MAX_SEC (3), REFRESH_MARGIN_SEC (60), P99_MS (200), LOGIN_P99_MS
 * (1500), REFRESH_P99_MS (1000), MAX_FAILED_RATE (0.001), AUTH_RETRIES (5), ALLOW_HOST,
 * WARMUP_REQUESTS (10: setup() logs in once and sends these through the chain first, tagged
 * kind:warmup, outside every threshold: see lib/user.ts `warmUp`).
 */
import type { Options } from 'k6/options';
import { SUMMARY_TREND_STATS, baseUrl, envDuration, envInt, loadUsers, requireUserPerVu, thinkTime, thresholds } from './lib/config.ts';
import type { UserCredentials } from './lib/scenario.ts';
import { refreshMarginSec, userIteration, warmUp } from './lib/user.ts';

const BASE_URL = baseUrl();
const USERS = loadUsers();
const VUS = envInt('VUS', 2, 1, 100);
requireUserPerVu(USERS, VUS);
const WARMUP_REQUESTS = envInt('WARMUP_REQUESTS', 10, 0, 1000);
const ITERATION = { baseUrl: BASE_URL, users: USERS, refreshMarginSec: refreshMarginSec(), think: thinkTime() };

export const options: Options = {
  scenarios: {
    smoke: { executor: 'constant-vus', vus: VUS, duration: envDuration('DURATION', '30s', 3600) },
  },
  thresholds: thresholds(),
  summaryTrendStats: SUMMARY_TREND_STATS,
  setupTimeout: '2m',
};

export function setup(): void {
  warmUp(BASE_URL, USERS[0] as UserCredentials, WARMUP_REQUESTS);
}

export default function (): void {
  userIteration(undefined, ITERATION);
}
