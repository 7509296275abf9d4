/**
 * Tokens for the k6 virtual users: the pool logged in during `setup()`, one session per VU, and
 * refresh before expiry.
 *
 * Why one session per VU: refresh tokens rotate on every use and reusing a rotated one revokes
 * the whole family (RFC 9700 §4.14). VUs share no memory in k6, so two VUs holding the same
 * refresh token could not agree on its successor. Hence VU n (1-based `idInTest`) owns pool
 * session n-1 when the pool is that large, and a VU beyond the pool logs in on its first
 * iteration (its "session start"; the ramp spreads these logins out). Each VU then refreshes
 * its own session `REFRESH_MARGIN_SEC` before the access token expires.
 */
import { check, sleep } from 'k6';
import exec from 'k6/execution';
import http from 'k6/http';
import { Counter } from 'k6/metrics';
import { refreshDue, tokenAnswerProblem, type TokenAnswer, type UserCredentials } from './scenario.ts';
import { envNumber } from './config.ts';

/** A logged-in session as a VU holds it. */
export interface Session {
  readonly username: string;
  readonly access: string;
  readonly refresh: string;
  /** When the access token expires, epoch seconds (local clock: now + expires_in). */
  readonly expiresAt: number;
}

/** What `setup()` hands to every VU. Kept small: k6 copies it into each VU. */
export interface SetupData {
  readonly sessions: Session[];
}

const logins = new Counter('logins');
const refreshes = new Counter('token_refreshes');
const refreshFallbacks = new Counter('token_refresh_fallback_logins');

const AUTH_TIMEOUT = '30s';

function toSession(username: string, body: TokenAnswer): Session {
  return { username, access: body.access_token, refresh: body.refresh_token, expiresAt: Date.now() / 1000 + body.expires_in };
}

function parseTokenAnswer(res: { status: number; body: unknown; json(): unknown }, what: string): TokenAnswer | null {
  let body: unknown = null;
  try {
    body = res.status === 200 ? res.json() : null;
  } catch {
    body = null;
  }
  const problem = res.status === 200 ? tokenAnswerProblem(body) : `status ${res.status}`;
  check(res, { [`${what}: 200 with tokens`]: () => problem === null });
  return problem === null ? (body as TokenAnswer) : null;
}

/** Seconds to wait before retrying a 429/503 (its `Retry-After`, bounded to 1..60). */
function retryAfter(res: { headers: Record<string, string> }): number {
  const v = Number(res.headers['Retry-After'] ?? res.headers['retry-after'] ?? '1');
  return Math.min(Math.max(Number.isFinite(v) ? v : 1, 1), 60);
}

/**
 * `POST /auth/login {username, password}`; retries a 429 or 503 after `Retry-After` (up to
 * `LOGIN_RETRIES`, default 3). @returns the session, or null when the login failed.
 */
export function login(baseUrl: string, user: UserCredentials): Session | null {
  const retries = envNumber('LOGIN_RETRIES', 3, 0, 20);
  for (let attempt = 0; ; attempt++) {
    const res = http.post(`${baseUrl}/auth/login`, JSON.stringify({ username: user.username, password: user.password }), {
      headers: { 'content-type': 'application/json' },
      tags: { kind: 'auth', name: 'login' },
      timeout: AUTH_TIMEOUT,
    });
    if ((res.status === 429 || res.status === 503) && attempt < retries) {
      sleep(retryAfter(res));
      continue;
    }
    const body = parseTokenAnswer(res, 'login');
    if (body === null) return null;
    logins.add(1);
    return toSession(user.username, body);
  }
}

/**
 * `POST /auth/token grant_type=refresh_token` (RFC 6749 §6, form-encoded). @returns the rotated
 * session, or null when the refresh failed (the caller logs in again).
 */
export function refresh(baseUrl: string, session: Session): Session | null {
  const res = http.post(
    `${baseUrl}/auth/token`,
    { grant_type: 'refresh_token', refresh_token: session.refresh },
    { tags: { kind: 'auth', name: 'refresh' }, timeout: AUTH_TIMEOUT },
  );
  const body = parseTokenAnswer(res, 'refresh');
  if (body === null) return null;
  refreshes.add(1);
  return toSession(session.username, body);
}

/**
 * Logs in `size` sessions for `setup()`, round-robin over `users`, `LOGIN_BATCH` (default 5) at a
 * time. @throws Error when no login succeeds (wrong BASE_URL, users or passwords).
 */
export function loginPool(baseUrl: string, users: readonly UserCredentials[], size: number): SetupData {
  const batch = envNumber('LOGIN_BATCH', 5, 1, 100);
  const sessions: Session[] = [];
  for (let i = 0; i < size; i += batch) {
    const chunk: UserCredentials[] = [];
    for (let j = i; j < Math.min(size, i + batch); j++) chunk.push(users[j % users.length] as UserCredentials);
    const answers = http.batch(
      chunk.map((u) => ({
        method: 'POST',
        url: `${baseUrl}/auth/login`,
        body: JSON.stringify({ username: u.username, password: u.password }),
        params: { headers: { 'content-type': 'application/json' }, tags: { kind: 'auth', name: 'login' }, timeout: AUTH_TIMEOUT },
      })),
    );
    answers.forEach((res, k) => {
      const user = chunk[k] as UserCredentials;
      const body = res.status === 429 || res.status === 503 ? null : parseTokenAnswer(res, 'login');
      if (body) logins.add(1);
      const s = body ? toSession(user.username, body) : login(baseUrl, user); // a paced retry
      if (s) sessions.push(s);
    });
  }
  if (sessions.length === 0) throw new Error(`setup: no login succeeded at ${baseUrl}/auth/login (check BASE_URL and USERS)`);
  return { sessions };
}

let mine: Session | null = null;

/**
 * The current VU's session: its pool entry, or a fresh login for a VU beyond the pool; refreshed
 * when less than `marginSec` of the access token's lifetime is left (a failed refresh falls back
 * to a login). @returns null when the VU could not get a token (the failure is already counted).
 */
export function sessionForVu(baseUrl: string, data: SetupData, users: readonly UserCredentials[], marginSec: number): Session | null {
  if (mine === null) {
    const id = exec.vu.idInTest;
    mine = data.sessions[id - 1] ?? login(baseUrl, users[(id - 1) % users.length] as UserCredentials);
    if (mine === null) return null;
  }
  if (refreshDue(Date.now() / 1000, mine.expiresAt, marginSec)) {
    const user = users.find((u) => u.username === mine?.username) ?? (users[0] as UserCredentials);
    const next = refresh(baseUrl, mine);
    if (next === null) refreshFallbacks.add(1);
    mine = next ?? login(baseUrl, user);
  }
  return mine;
}
