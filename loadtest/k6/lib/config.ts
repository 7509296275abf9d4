/**
 * k6 side of the configuration: every knob comes from an environment variable (`k6 run -e NAME=value`
 * or the shell environment), is parsed once in the init context, and a bad value stops the run with
 * a message naming the variable. The shared scenario (routes, users) is in ./scenario.ts.
 */
import type { Threshold } from 'k6/options';
import { DEFAULT_BASE_URL, DEFAULT_USERS, parseUsers, type UserCredentials } from './scenario.ts';

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

/**
 * A k6 duration variable (`30s`, `10m`, `1h30m`, or plain seconds), or `fallback`.
 * @throws Error naming the variable on anything else.
 */
export function envDuration(name: string, fallback: string): string {
  const raw = envString(name, fallback).trim();
  if (/^\d+$/.test(raw)) return `${raw}s`;
  if (!/^(\d+h)?(\d+m)?(\d+s)?$/.test(raw) || raw === '') throw new Error(`${name}: "${raw}" is not a duration like 30s, 10m or 1h30m`);
  return raw;
}

/**
 * The edge URL (`BASE_URL`, default the local stack's edge `http://127.0.0.1:8080`), without a
 * trailing slash. @throws Error when it is not an http(s) URL.
 */
export function baseUrl(): string {
  const url = envString('BASE_URL', DEFAULT_BASE_URL).replace(/\/+$/, '');
  if (!/^https?:\/\/[^/]+$/.test(url)) throw new Error(`BASE_URL: "${url}" must be http(s)://host[:port] with no path`);
  return url;
}

/**
 * The users to log in as: `USERS_FILE` (a JSON array of `{username, password}`, read with k6's
 * `open()` relative to the script) else `USERS` (`name:password,...`), else the demo users.
 * Must be called in the init context (open() is only available there).
 */
export function loadUsers(): UserCredentials[] {
  const file = envString('USERS_FILE', '');
  if (file !== '') {
    const parsed = JSON.parse(open(file)) as unknown;
    if (!Array.isArray(parsed) || parsed.length === 0) throw new Error(`USERS_FILE: ${file} must hold a non-empty JSON array`);
    return parsed.map((u, i) => {
      const o = u as Partial<UserCredentials>;
      if (typeof o.username !== 'string' || typeof o.password !== 'string') throw new Error(`USERS_FILE: entry ${i} needs username and password strings`);
      return { username: o.username, password: o.password };
    });
  }
  return parseUsers(envString('USERS', DEFAULT_USERS));
}

/** Think time bounds in seconds (`THINK_MIN_SEC`, `THINK_MAX_SEC`; default 1 and 3). */
export function thinkTime(): { min: number; max: number } {
  const min = envNumber('THINK_MIN_SEC', 1, 0, 600);
  const max = envNumber('THINK_MAX_SEC', 3, 0, 600);
  if (max < min) throw new Error(`THINK_MAX_SEC (${max}) is below THINK_MIN_SEC (${min})`);
  return { min, max };
}

/**
 * The pass/fail criteria (NFR1). k6 exits non-zero (99) when one is crossed:
 * - `http_req_duration` p(99) < `P99_MS` (default 200 ms) over every request, and the same bound
 *   on the API requests alone (`kind:api`), so a slow login cannot hide behind fast API calls or
 *   the other way round;
 * - `http_req_failed` rate < 0.1 % (status >= 400, or no answer);
 * - `checks` rate > 99.9 % (status, token answers, every hop saw the same identity).
 * `ABORT_ON_FAIL=true` stops the run as soon as a threshold is crossed (useful on a spike).
 */
export function thresholds(): Record<string, Threshold[]> {
  const p99 = envNumber('P99_MS', 200, 1, 60_000);
  const abortOnFail = envString('ABORT_ON_FAIL', 'false') === 'true';
  const t = (threshold: string): Threshold => (abortOnFail ? { threshold, abortOnFail, delayAbortEval: '10s' } : threshold);
  return {
    http_req_duration: [t(`p(99)<${p99}`)],
    'http_req_duration{kind:api}': [t(`p(99)<${p99}`)],
    http_req_failed: [t('rate<0.001')],
    checks: [t('rate>0.999')],
  };
}

/** Trend stats printed in the end-of-test summary (k6's default lacks p(50) and p(99)). */
export const SUMMARY_TREND_STATS = ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'max'];
