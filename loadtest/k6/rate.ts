/**
 * k6 at a fixed arrival rate (open model, `constant-arrival-rate`): `RATE` requests per second of
 * the route mix for `DURATION`, whatever the answers' latency, so queueing shows up as latency and
 * as dropped iterations instead of hiding as fewer requests. `make loadtest` runs it against the
 * running stack. `setup()` logs in one session per VU (`VUS`, round-robin over the users), and
 * VU n refreshes session n itself. No think time: the executor paces the arrivals.
 *
 *   k6 run -e RATE=100 -e DURATION=30s loadtest/k6/rate.ts
 *
 * Variables: BASE_URL, USERS / USERS_FILE, RATE (100/s), DURATION (30s, at most 10m), VUS (16:
 * sessions and VUs; raise it when dropped_iterations appear at a high rate), REFRESH_MARGIN_SEC
 * (60), P99_MS (200), LOGIN_P99_MS (1500), REFRESH_P99_MS (1000), MAX_FAILED_RATE (0.001),
 * AUTH_RETRIES (5), ABORT_ON_FAIL (false), ALLOW_HOST, WARMUP_REQUESTS (20, sent by setup() outside
 * every threshold: lib/user.ts `warmUp`). Thresholds: lib/config.ts `thresholds()`,
 * plus no dropped iteration (every planned arrival was sent). At most RATE x DURATION requests.
 */
import type { Options } from 'k6/options';
import { SUMMARY_TREND_STATS, baseUrl, envDuration, envInt, envNumber, loadUsers, thresholds } from './lib/config.ts';
import { loginPool, type SetupData } from './lib/session.ts';
import type { UserCredentials } from './lib/scenario.ts';
import { refreshMarginSec, userIteration, warmUp } from './lib/user.ts';

const BASE_URL = baseUrl();
const USERS = loadUsers();
const RATE = envNumber('RATE', 100, 1, 20_000);
const VUS = envInt('VUS', 16, 1, 1000);
const ITERATION = { baseUrl: BASE_URL, users: USERS, refreshMarginSec: refreshMarginSec(), think: null };

export const options: Options = {
  scenarios: {
    rate: {
      executor: 'constant-arrival-rate',
      rate: Math.round(RATE * 1000),
      timeUnit: '1000s',
      duration: envDuration('DURATION', '30s', 600),
      preAllocatedVUs: VUS,
      maxVUs: VUS,
    },
  },
  thresholds: thresholds({ noDroppedIterations: true }),
  summaryTrendStats: SUMMARY_TREND_STATS,
  setupTimeout: '5m',
};

export function setup(): SetupData {
  warmUp(BASE_URL, USERS[0] as UserCredentials, envInt('WARMUP_REQUESTS', 20, 0, 1000));
  return loginPool(BASE_URL, USERS, VUS);
}

export default function (data: SetupData): void {
  userIteration(data, ITERATION);
}
