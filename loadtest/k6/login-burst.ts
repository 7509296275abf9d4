/**
 * k6 login burst: logins under overload are shed (fast 503 + `Retry-After`) instead of hanging,
 * and API traffic through the chain keeps its p99 meanwhile. Two scenarios at once:
 *
 * - **api** (`constant-arrival-rate`, open model): `API_RATE` requests per second of the route mix
 *   through the edge and the whole chain, for `API_DURATION`, with a small pool of sessions
 *   (`TOKEN_POOL`) logged in by `setup()`; tagged `kind:api`, under the common thresholds (p99 <
 *   `P99_MS`, failed < `MAX_FAILED_RATE`, checks, no dropped arrival).
 * - **burst** (`per-vu-iterations`, one iteration per VU): `BURST` VUs, VU n logging in as user n
 *   of `USERS_FILE` (each its own user, seeded at the production KDF cost for a figure that means
 *   anything), all starting at `BURST_START` (after the API traffic has warmed up), each within
 *   `BURST_SPREAD_SEC` of it. The auth-service admits `PASSWORD_HASH_CONCURRENCY` running plus
 *   `PASSWORD_HASH_QUEUE_MAX` waiting password checks (2 + 8 on 2 cores) and answers the rest 503
 *   with `Retry-After` at once; each VU honours it (plus up to 1 s of jitter) and tries again until
 *   its login succeeds, at most `BURST_RETRIES` times after the first attempt.
 *
 * Burst thresholds (k6 exits 99 when one is crossed):
 *
 * | metric | threshold | shows |
 * |---|---|---|
 * | `burst_logins_ok` | count >= `BURST` | every burst login eventually succeeded |
 * | `burst_logins_failed` | count == 0 | no login ended on anything but a 200 with tokens, or ran out of retries (tag `reason`: `status_<code>`, `bad_token_answer`, `retries_exhausted`) |
 * | `burst_shed` | count > 0 | the limiter shed: a run that never overloaded the auth-service shows nothing |
 * | `burst_shed_duration` | p(99) < `SHED_P99_MS` (1500) | the 503s were fast (milliseconds, per 503 answer): a request past the queue is shed at once (tens of ms), one that waited in the queue `PASSWORD_HASH_QUEUE_TIMEOUT_MS` (1000 ms) without a slot is shed then, so no 503 should come later than that plus transit |
 * | `burst_no_answer` | count == 0 | no request reached its timeout (`BURST_TIMEOUT_SEC`) or lost its connection (k6 status 0) |
 * | `http_req_duration{kind:burst}` | max < `BURST_TIMEOUT_SEC` | no login request hung, admitted or shed |
 * | `burst_rate_limited` | count == 0 | no 429: the per-address and per-username login limits were raised, so what was measured is the hash limiter |
 *
 * Also recorded: `burst_login_attempts` (every request), `burst_login_duration` (ms, each admitted
 * login's own request), `burst_attempts_per_login`, `burst_done_after` (ms from the burst
 * scenario's start to each success: its max is how long the burst took to be served),
 * `burst_started_at` (a gauge: when the burst scenario started, epoch milliseconds, so that a
 * runner can read the auth-service's CPU over exactly the burst).
 *
 *   k6 run -e USERS_FILE=$PWD/.run/loadtest-login-burst/users.json -e BASE_URL=http://127.0.0.1:8080 loadtest/k6/login-burst.ts
 *
 * `make loadtest-login-burst` seeds the users, starts a stack of its own and reports the figures.
 *
 * Variables: BASE_URL, USERS / USERS_FILE (at least `BURST` users), BURST (60, 1..5000),
 * BURST_START (10s), BURST_SPREAD_SEC (0, 0..60), BURST_RETRIES (30, 0..1000),
 * BURST_TIMEOUT_SEC (10, 1..120), BURST_MAX_DURATION (2m, at most 10m), SHED_P99_MS (1500),
 * API_RATE (50/s, 1..5000), API_DURATION (40s, at most 10m, at least BURST_START + 10 s),
 * API_VUS (16), TOKEN_POOL (4 or the users if fewer), WARMUP_REQUESTS (20, sent by setup() outside
 * every threshold), P99_MS (200), LOGIN_P99_MS (1500, the setup logins), MAX_FAILED_RATE (0.001),
 * AUTH_RETRIES (5, the setup logins), ABORT_ON_FAIL (false), ALLOW_HOST.
 * At most API_RATE x API_DURATION API requests and BURST x (BURST_RETRIES + 1) burst logins.
 */
import { sleep } from 'k6';
import exec from 'k6/execution';
import http from 'k6/http';
import { Counter, Gauge, Trend } from 'k6/metrics';
import type { Options } from 'k6/options';
import { SUMMARY_TREND_STATS, baseUrl, durationSec, envDuration, envInt, envNumber, loadUsers, thresholds } from './lib/config.ts';
import { retryAfterSec, tokenAnswerProblem, type UserCredentials } from './lib/scenario.ts';
import { loginPool, type SetupData } from './lib/session.ts';
import { apiRequest, warmUp } from './lib/user.ts';

const BASE_URL = baseUrl();
const USERS = loadUsers();
const BURST = envInt('BURST', 60, 1, 5000);
if (USERS.length < BURST) {
  const source = __ENV.USERS_FILE ? `USERS_FILE (${__ENV.USERS_FILE})` : 'USERS';
  throw new Error(`BURST=${BURST} needs ${BURST} users but ${source} has ${USERS.length}: each burst VU logs in as its own user (VU n takes user n); seed more users or lower BURST`);
}
const BURST_START = envDuration('BURST_START', '10s', 600);
const BURST_SPREAD_SEC = envNumber('BURST_SPREAD_SEC', 0, 0, 60);
const BURST_RETRIES = envInt('BURST_RETRIES', 30, 0, 1000);
const BURST_TIMEOUT_SEC = envInt('BURST_TIMEOUT_SEC', 10, 1, 120);
const BURST_MAX_DURATION = envDuration('BURST_MAX_DURATION', '2m', 600);
const SHED_P99_MS = envNumber('SHED_P99_MS', 1500, 1, 60_000);
const API_RATE = envNumber('API_RATE', 50, 1, 5000);
const API_DURATION = envDuration('API_DURATION', '40s', 600);
const API_VUS = envInt('API_VUS', 16, 1, 1000);
const TOKEN_POOL = envInt('TOKEN_POOL', Math.min(4, USERS.length), 1, 1000);
if (TOKEN_POOL > USERS.length) throw new Error(`TOKEN_POOL=${TOKEN_POOL} is more than the ${USERS.length} users: setup() logs in one session per user`);
const WARMUP_REQUESTS = envInt('WARMUP_REQUESTS', 20, 0, 1000);
const API_DURATION_SEC = durationSec(API_DURATION) as number;
const BURST_START_SEC = durationSec(BURST_START) as number;
if (API_DURATION_SEC < BURST_START_SEC + 10) {
  throw new Error(`API_DURATION (${API_DURATION}) must last at least 10 s past BURST_START (${BURST_START}): the API traffic has to run during the burst`);
}

const attempts = new Counter('burst_login_attempts');
const ok = new Counter('burst_logins_ok');
const failed = new Counter('burst_logins_failed');
const shed = new Counter('burst_shed');
const rateLimited = new Counter('burst_rate_limited');
const noAnswer = new Counter('burst_no_answer');
const shedDuration = new Trend('burst_shed_duration', true);
const loginDuration = new Trend('burst_login_duration', true);
const attemptsPerLogin = new Trend('burst_attempts_per_login');
const doneAfter = new Trend('burst_done_after', true);
const startedAt = new Gauge('burst_started_at');

/** The burst's answers that are expected: 200, and the 503 of the hash limiter (retried). */
const BURST_EXPECTED = http.expectedStatuses(200, 503);

export const options: Options = {
  scenarios: {
    api: {
      executor: 'constant-arrival-rate',
      exec: 'api',
      rate: Math.round(API_RATE * 1000),
      timeUnit: '1000s',
      duration: API_DURATION,
      preAllocatedVUs: API_VUS,
      maxVUs: API_VUS,
    },
    burst: {
      executor: 'per-vu-iterations',
      exec: 'burst',
      vus: BURST,
      iterations: 1,
      startTime: BURST_START,
      maxDuration: BURST_MAX_DURATION,
      gracefulStop: `${BURST_TIMEOUT_SEC + 5}s`,
    },
  },
  thresholds: {
    ...thresholds({ noDroppedIterations: true }),
    burst_logins_ok: [`count>=${BURST}`],
    burst_logins_failed: ['count==0'],
    burst_shed: ['count>0'],
    burst_shed_duration: [`p(99)<${SHED_P99_MS}`],
    burst_no_answer: ['count==0'],
    burst_rate_limited: ['count==0'],
    'http_req_duration{kind:burst}': [`max<${BURST_TIMEOUT_SEC * 1000}`],
  },
  summaryTrendStats: SUMMARY_TREND_STATS,
  setupTimeout: '5m',
};

/**
 * Warms the chain (`WARMUP_REQUESTS`, outside every threshold) and logs in the API's session pool
 * (`TOKEN_POOL` sessions, users 1..TOKEN_POOL, one at a time: before the burst, never shed).
 * The pool is shared by the API VUs and never refreshed (two VUs refreshing one refresh token
 * would revoke its family), so every token must outlive the API scenario.
 * @throws Error when no login succeeds, or when the access tokens expire before `API_DURATION` ends
 */
export function setup(): SetupData {
  warmUp(BASE_URL, USERS[0] as UserCredentials, WARMUP_REQUESTS);
  const pool = loginPool(BASE_URL, USERS, TOKEN_POOL);
  const leftSec = Math.min(...pool.sessions.map((s) => s.expiresAt)) - Date.now() / 1000;
  if (leftSec < API_DURATION_SEC + 10) {
    throw new Error(`setup: the access tokens live ${Math.floor(leftSec)} s, less than API_DURATION (${API_DURATION}) + 10 s; the pool is not refreshed: shorten API_DURATION or raise ACCESS_TOKEN_TTL_SEC`);
  }
  return pool;
}

/** One API request of the mix with a session of the pool (round-robin over the arrivals). */
export function api(data: SetupData): void {
  const session = data.sessions[exec.scenario.iterationInTest % data.sessions.length];
  if (session) apiRequest(BASE_URL, session.access);
}

/**
 * One burst VU: logs in as its own user (user n for the n-th iteration of the scenario), honouring
 * `Retry-After` (plus up to 1 s of jitter, lib/scenario.ts `retryAfterSec`) after each 503 or 429
 * and after a request that got no answer, until a 200 with tokens or `BURST_RETRIES` retries.
 * Nothing throws: every outcome is a metric. The password is only ever in the request body.
 */
export function burst(): void {
  const index = exec.scenario.iterationInTest;
  const user = USERS[index] as UserCredentials;
  startedAt.add(exec.scenario.startTime);
  if (BURST_SPREAD_SEC > 0) sleep(Math.random() * BURST_SPREAD_SEC);
  const body = JSON.stringify({ username: user.username, password: user.password });
  for (let attempt = 1; ; attempt++) {
    const res = http.post(`${BASE_URL}/auth/login`, body, {
      headers: { 'content-type': 'application/json' },
      tags: { kind: 'burst', name: 'login' },
      timeout: `${BURST_TIMEOUT_SEC}s`,
      responseCallback: BURST_EXPECTED,
    });
    attempts.add(1);
    if (res.status === 200) {
      let answer: unknown = null;
      try {
        answer = res.json();
      } catch {
        answer = null;
      }
      const problem = tokenAnswerProblem(answer);
      if (problem === null) {
        ok.add(1);
        loginDuration.add(res.timings.duration);
        attemptsPerLogin.add(attempt);
        doneAfter.add(Date.now() - exec.scenario.startTime);
      } else {
        failed.add(1, { reason: 'bad_token_answer' });
      }
      return;
    }
    if (res.status === 503) {
      shed.add(1);
      shedDuration.add(res.timings.duration);
    } else if (res.status === 429) {
      rateLimited.add(1);
    } else if (res.status === 0) {
      noAnswer.add(1);
    } else {
      failed.add(1, { reason: `status_${res.status}` });
      return;
    }
    if (attempt > BURST_RETRIES) {
      failed.add(1, { reason: 'retries_exhausted' });
      return;
    }
    const header = res.headers['Retry-After'] ?? res.headers['retry-after'];
    sleep(retryAfterSec(header, Math.random()));
  }
}
