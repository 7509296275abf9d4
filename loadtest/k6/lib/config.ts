/**
 * k6 side of the configuration: every knob comes from an environment variable (`k6 run -e NAME=value`
 * or the shell environment), is parsed once in the init context, and a bad value stops the run with
 * a message naming the variable. The shared scenario (routes, users) is in ./scenario.ts.
 */
import { SharedArray } from 'k6/data';
import type { Threshold } from 'k6/options';
import { DEFAULT_BASE_URL, DEFAULT_USERS, parseUsers, targetProblem, type UserCredentials } from './scenario.ts';

/** A string variable, or `fallback` when unset or empty. */
export function envString(name: string, fallback: string): string {
  const v = __ENV[name];
  return v === undefined || v === '' ? fallback : v;
}

/**
 * A number variable within [min, max], or `fallback` when unset or empty.
 * @throws Error naming the variable when the value is not a number in range.
 */
export function envNumber(name: string, fallback: number, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  const raw = __ENV[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < min || n > max) throw new Error(`${name}: "${raw}" is not a number within ${min}..${max}`);
  return n;
}

/** An integer variable within [min, max] (see {@link envNumber}). @throws Error naming the variable. */
export function envInt(name: string, fallback: number, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  const n = envNumber(name, fallback, min, max);
  if (!Number.isInteger(n)) throw new Error(`${name}: "${__ENV[name]}" is not a whole number`);
  return n;
}

/** A boolean variable (`true` / `false`), or `fallback`. @throws Error naming the variable on anything else. */
export function envBool(name: string, fallback: boolean): boolean {
  const raw = envString(name, String(fallback));
  if (raw !== 'true' && raw !== 'false') throw new Error(`${name}: "${raw}" must be true or false`);
  return raw === 'true';
}

/**
 * A k6 duration variable (`30s`, `10m`, `1h30m`, or plain seconds), or `fallback`.
 * @returns the duration in k6's syntax.
 * @throws Error naming the variable on anything else, or when it is longer than `maxSec`.
 */
export function envDuration(name: string, fallback: string, maxSec = 6 * 3600): string {
  const raw = envString(name, fallback).trim();
  const text = /^\d+$/.test(raw) ? `${raw}s` : raw;
  const sec = durationSec(text);
  if (sec === null) throw new Error(`${name}: "${raw}" is not a duration like 30s, 10m or 1h30m`);
  if (sec > maxSec) throw new Error(`${name}: "${raw}" is longer than ${maxSec} s`);
  return text;
}

/**
 * Seconds of a duration in the syntax {@link envDuration} returns (`1h30m`, `10m`, `30s`).
 * @returns whole seconds, or null when `text` is not such a duration.
 */
export function durationSec(text: string): number | null {
  const m = /^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$/.exec(text);
  if (!m || text === '') return null;
  return Number(m[1] ?? 0) * 3600 + Number(m[2] ?? 0) * 60 + Number(m[3] ?? 0);
}

/**
 * The edge URL (`BASE_URL`, default the local stack's edge `http://127.0.0.1:8080`), without a
 * trailing slash. Only loopback targets are accepted, unless `ALLOW_HOST` names the exact host
 * (a distributed run inside a cluster). @throws Error naming BASE_URL otherwise.
 */
export function baseUrl(): string {
  const url = envString('BASE_URL', DEFAULT_BASE_URL).replace(/\/+$/, '');
  const problem = targetProblem(url, envString('ALLOW_HOST', ''));
  if (problem !== null) throw new Error(problem);
  return url;
}

/**
 * The users to log in as, in a k6 `SharedArray` (one copy for all VUs, not one per VU):
 * `USERS_FILE` (a JSON array of `{username, password}`, read with k6's `open()` relative to the
 * script; the seeding command's output) else `USERS` (`name:password,...`), else the demo users.
 * Must be called in the init context (open() and SharedArray exist only there).
 * @throws Error naming USERS_FILE or USERS when the list is empty or an entry is malformed.
 */
export function loadUsers(): ArrayLike<UserCredentials> {
  const file = envString('USERS_FILE', '');
  return new SharedArray('users', (): UserCredentials[] => {
    if (file === '') return parseUsers(envString('USERS', DEFAULT_USERS));
    let parsed: unknown;
    try {
      parsed = JSON.parse(open(file));
    } catch (e) {
      throw new Error(`USERS_FILE: ${file} is not readable JSON (${String(e)})`);
    }
    const list = Array.isArray(parsed) ? parsed : (parsed as { users?: unknown } | null)?.users;
    if (!Array.isArray(list) || list.length === 0) throw new Error(`USERS_FILE: ${file} must hold a non-empty JSON array of {username, password} (or {"users": [...]})`);
    return list.map((u, i) => {
      const o = u as Partial<UserCredentials>;
      if (typeof o.username !== 'string' || typeof o.password !== 'string') throw new Error(`USERS_FILE: entry ${i} needs username and password strings`);
      return { username: o.username, password: o.password };
    });
  });
}

/**
 * Checks that there is one user per VU (VU n logs in as user n, so no two VUs share a user, a
 * session or a refresh-token family). @throws Error naming VUS and the user source otherwise.
 */
export function requireUserPerVu(users: { length: number }, vus: number): void {
  if (users.length >= vus) return;
  const source = envString('USERS_FILE', '') !== '' ? `USERS_FILE (${envString('USERS_FILE', '')})` : 'USERS';
  throw new Error(`VUS=${vus} needs ${vus} users but ${source} has ${users.length}: each VU logs in as its own user (VU n takes user n); seed more users or lower VUS`);
}

/** Think time bounds in seconds (`THINK_MIN_SEC`, `THINK_MAX_SEC`; default 1 and 3). */
export function thinkTime(): { min: number; max: number } {
  const min = envNumber('THINK_MIN_SEC', 1, 0, 600);
  const max = envNumber('THINK_MAX_SEC', 3, 0, 600);
  if (max < min) throw new Error(`THINK_MAX_SEC (${max}) is below THINK_MIN_SEC (${min})`);
  return { min, max };
}

/** What a script adds to the common thresholds. */
export interface ThresholdOptions {
  /**
   * Fail on any `dropped_iterations` (arrival-rate executors: an arrival k6 could not start
   * because every VU was busy, i.e. the offered rate was not achieved).
   */
  readonly noDroppedIterations?: boolean;
}

/**
 * The pass/fail criteria. k6 exits 99 when one is crossed. Split by kind of request (the `kind`
 * tag every request and check carries), because a login hashes a password on purpose:
 *
 * - **API requests** (`kind:api`, NFR1): `http_req_duration` p(99) < `P99_MS` (200 ms),
 *   `http_req_failed` rate < `MAX_FAILED_RATE` (0.001 = 0.1 %), `checks` rate > 1 - that rate
 *   (status, and every hop of the chain saw the same identity and trace).
 * - **Logins** (`kind:auth,name:login`): p(99) < `LOGIN_P99_MS` (1500 ms). The auth-service hashes
 *   the password with scrypt (N=2^15, memory-hard by design): one hash takes 220-480 ms on a
 *   2-core machine under load, and a login may wait behind a couple of others, so 200 ms would
 *   fail a healthy mesh. Sized for the production KDF cost; load-test users seeded at a lower cost
 *   are far below it.
 * - **Refreshes** (`kind:auth,name:refresh`): p(99) < `REFRESH_P99_MS` (1000 ms): no KDF (the
 *   refresh token is high-entropy), but a database transaction, on the same cores as the hashes.
 * - **Auth failures** (`kind:auth`): `http_req_failed` and `checks` as for the API. A 429 or 503
 *   with `Retry-After` (load shedding, rate limit) is an expected answer, retried after the
 *   delay; only a login or refresh that still fails counts.
 * - **`refresh_invalid_grant`** count == 0: each VU uses each refresh token once, so an
 *   `invalid_grant` on refresh means the test reused a rotated token and the auth-service revoked
 *   the whole refresh-token family (RFC 9700 §4.14.2).
 *
 * `ABORT_ON_FAIL=true` stops the run as soon as a threshold is crossed (after 10 s).
 * @throws Error naming the variable on a bad value.
 */
export function thresholds(opts: ThresholdOptions = {}): Record<string, Threshold[]> {
  const p99 = envNumber('P99_MS', 200, 1, 60_000);
  const loginP99 = envNumber('LOGIN_P99_MS', 1500, 1, 120_000);
  const refreshP99 = envNumber('REFRESH_P99_MS', 1000, 1, 120_000);
  const failed = envNumber('MAX_FAILED_RATE', 0.001, 0, 1);
  const abortOnFail = envBool('ABORT_ON_FAIL', false);
  const t = (threshold: string): Threshold => (abortOnFail ? { threshold, abortOnFail, delayAbortEval: '10s' } : threshold);
  const out: Record<string, Threshold[]> = {
    'http_req_duration{kind:api}': [t(`p(99)<${p99}`)],
    'http_req_failed{kind:api}': [t(`rate<${failed}`)],
    'checks{kind:api}': [t(`rate>${1 - failed}`)],
    'http_req_duration{kind:auth,name:login}': [t(`p(99)<${loginP99}`)],
    'http_req_duration{kind:auth,name:refresh}': [t(`p(99)<${refreshP99}`)],
    'http_req_failed{kind:auth}': [t(`rate<${failed}`)],
    'checks{kind:auth}': [t(`rate>${1 - failed}`)],
    refresh_invalid_grant: [t('count==0')],
  };
  if (opts.noDroppedIterations) out.dropped_iterations = [t('count==0')];
  return out;
}

/** Trend stats printed in the end-of-test summary and exported (k6's default lacks p(50) and p(99)). */
export const SUMMARY_TREND_STATS = ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'max', 'count'];
