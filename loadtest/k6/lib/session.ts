/**
 * Sessions for the k6 virtual users: log in, refresh before expiry, and honour load shedding.
 *
 * One session per VU, never shared: refresh tokens rotate on every use and reusing a rotated one
 * revokes the whole refresh-token family (RFC 9700 §4.14.2). VUs share no memory in k6, so two VUs
 * holding the same refresh token could not agree on its successor. Hence VU n (1-based
 * `idInTest`) either takes session n of a small pool logged in by `setup()` (the open-model
 * scripts), or logs in itself on its first iteration as user n (smoke and load: one registered
 * user per VU; a ramp spreads these logins out as real users arrive). Each VU then refreshes its
 * own session `REFRESH_MARGIN_SEC` before the access token expires.
 *
 * A 429 or a 503 on login or refresh (rate limit, or the auth-service shedding password hashes
 * past its bound) is retried after its `Retry-After` (plus jitter), up to `AUTH_RETRIES` times.
 * A refresh that got no answer is not retried with the same token (the server may have rotated
 * it, and a second use would revoke the family): the VU logs in again instead.
 */
import { check, sleep } from 'k6';
import exec from 'k6/execution';
import http, { type RefinedResponse, type ResponseType } from 'k6/http';
import { Counter } from 'k6/metrics';
import { refreshDue, retryAfterSec, tokenAnswerProblem, type TokenAnswer, type UserCredentials } from './scenario.ts';
import { envInt } from './config.ts';

/** A logged-in session as a VU holds it. */
export interface Session {
  /** Index of the user in the users list. */
  readonly user: number;
  readonly access: string;
  readonly refresh: string;
  /** When the access token expires, epoch seconds (local clock: now + expires_in). */
  readonly expiresAt: number;
}

/** What `setup()` hands to every VU (k6 copies it into each VU, so the pool stays small). */
export interface SetupData {
  readonly sessions: Session[];
}

const logins = new Counter('logins');
const relogins = new Counter('relogins');
const refreshes = new Counter('token_refreshes');
const refreshInvalidGrant = new Counter('refresh_invalid_grant');
const authShed = new Counter('auth_shed');

const AUTH_TIMEOUT = '30s';
const RETRIES = envInt('AUTH_RETRIES', 5, 0, 20);
/** 429 and 503 are answers the client is meant to retry: they do not count in http_req_failed. */
const AUTH_EXPECTED = http.expectedStatuses(200, 429, 503);

type Res = RefinedResponse<ResponseType | undefined>;

function toSession(user: number, body: TokenAnswer): Session {
  return { user, access: body.access_token, refresh: body.refresh_token, expiresAt: Date.now() / 1000 + body.expires_in };
}

function tokenAnswer(res: Res, what: 'login' | 'refresh'): TokenAnswer | null {
  let body: unknown = null;
  if (res.status === 200) {
    try {
      body = res.json();
    } catch {
      body = null;
    }
  }
  const problem = res.status === 200 ? tokenAnswerProblem(body) : `status ${res.status}`;
  check(res, { [`${what}: 200 with tokens`]: () => problem === null }, { kind: 'auth' });
  return problem === null ? (body as TokenAnswer) : null;
}

/** Sends `send()` until it is not a 429/503, sleeping `Retry-After` between tries. */
function withRetries(send: () => Res): Res {
  for (let attempt = 0; ; attempt++) {
    const res = send();
    if ((res.status !== 429 && res.status !== 503) || attempt >= RETRIES) return res;
    authShed.add(1);
    sleep(retryAfterSec((res.headers['Retry-After'] ?? res.headers['retry-after']) as string | undefined, Math.random()));
  }
}

/**
 * `POST /auth/login {username, password}` as user number `index` of `users`.
 * @returns the session, or null when the login failed (counted by http_req_failed and checks).
 */
export function login(baseUrl: string, users: ArrayLike<UserCredentials>, index: number): Session | null {
  const user = users[index] as UserCredentials;
  const res = withRetries(() =>
    http.post(`${baseUrl}/auth/login`, JSON.stringify({ username: user.username, password: user.password }), {
      headers: { 'content-type': 'application/json' },
      tags: { kind: 'auth', name: 'login' },
      timeout: AUTH_TIMEOUT,
      responseCallback: AUTH_EXPECTED,
    }),
  );
  const body = tokenAnswer(res, 'login');
  if (body === null) return null;
  logins.add(1);
  return toSession(index, body);
}

/**
 * `POST /auth/token grant_type=refresh_token` (RFC 6749 §6, form-encoded), each refresh token
 * sent once (a 429/503 was not processed, so its retry is not a reuse).
 * @returns the rotated session, or null when the refresh failed (the caller logs in again).
 */
export function refresh(baseUrl: string, session: Session): Session | null {
  const res = withRetries(() =>
    http.post(
      `${baseUrl}/auth/token`,
      { grant_type: 'refresh_token', refresh_token: session.refresh },
      { tags: { kind: 'auth', name: 'refresh' }, timeout: AUTH_TIMEOUT, responseCallback: AUTH_EXPECTED },
    ),
  );
  if (res.status === 400 && typeof res.body === 'string' && res.body.includes('invalid_grant')) refreshInvalidGrant.add(1);
  const body = tokenAnswer(res, 'refresh');
  if (body === null) return null;
  refreshes.add(1);
  return toSession(session.user, body);
}

/**
 * Logs in `size` sessions for `setup()`, round-robin over `users`, one at a time (logins hash
 * passwords; a burst would only be shed). @throws Error when no login succeeds (wrong BASE_URL,
 * users or passwords).
 */
export function loginPool(baseUrl: string, users: ArrayLike<UserCredentials>, size: number): SetupData {
  const sessions: Session[] = [];
  for (let i = 0; i < size; i++) {
    const s = login(baseUrl, users, i % users.length);
    if (s) sessions.push(s);
  }
  if (sessions.length === 0) throw new Error(`setup: no login succeeded at ${baseUrl}/auth/login (check BASE_URL and USERS / USERS_FILE)`);
  return { sessions };
}

let mine: Session | null = null;

/**
 * The current VU's session: its pool entry (`data.sessions[n-1]`), else a login as user n-1
 * (modulo the list, for the open-model scripts; smoke and load check there is one user per VU).
 * Refreshed when less than `marginSec` of the access token's lifetime is left; a failed refresh
 * falls back to a new login (counted in `relogins`).
 * @returns null when the VU could not get a token (the failure is already counted).
 */
export function sessionForVu(baseUrl: string, data: SetupData | undefined, users: ArrayLike<UserCredentials>, marginSec: number): Session | null {
  if (mine === null) {
    const id = exec.vu.idInTest;
    mine = data?.sessions[id - 1] ?? login(baseUrl, users, (id - 1) % users.length);
    if (mine === null) return null;
  }
  if (refreshDue(Date.now() / 1000, mine.expiresAt, marginSec)) {
    const user = mine.user;
    const next = refresh(baseUrl, mine);
    if (next === null) relogins.add(1);
    mine = next ?? login(baseUrl, users, user);
  }
  return mine;
}
