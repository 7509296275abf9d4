/**
 * One user iteration, shared by the load and spike scripts: get the VU's session (refreshing it
 * when due), pick a route from the mix, send it through the edge, check the answer (status, and
 * for the chain routes that every hop saw the same subject, session, token and trace), then think.
 */
import { check, sleep } from 'k6';
import http from 'k6/http';
import { Counter } from 'k6/metrics';
import { chainProblem, mixDraw, pickRoute, type UserCredentials } from './scenario.ts';
import { envNumber } from './config.ts';
import { sessionForVu, type SetupData } from './session.ts';

/** Options of {@link userIteration}. */
export interface IterationOptions {
  readonly baseUrl: string;
  readonly users: ArrayLike<UserCredentials>;
  /** Refresh when less than this many seconds of the access token's lifetime are left. */
  readonly refreshMarginSec: number;
  /** Think time after the request, seconds; `null` = none (arrival-rate executors pace themselves). */
  readonly think: { min: number; max: number } | null;
}

let seq = Math.floor(Math.random() * 1_000_000);
/** Tags of the API checks, so that their threshold (`checks{kind:api}`) leaves the auth checks out. */
const API = { kind: 'api' };
/** Chain requests sent with a token: each is verified by one authz replica and the three services (the report's denominator). */
const chainRequests = new Counter('chain_requests');

/** Reads the refresh margin (`REFRESH_MARGIN_SEC`, default 60 s; must exceed one iteration). */
export function refreshMarginSec(): number {
  return envNumber('REFRESH_MARGIN_SEC', 60, 1, 3600);
}

/** One user action. Failures are recorded by k6 (http_req_failed, checks); nothing throws. */
export function userIteration(data: SetupData | undefined, opts: IterationOptions): void {
  const session = sessionForVu(opts.baseUrl, data, opts.users, opts.refreshMarginSec);
  if (session !== null) apiRequest(opts.baseUrl, session.access);
  if (opts.think) sleep(opts.think.min + Math.random() * (opts.think.max - opts.think.min));
}

/**
 * Sends the next route of the mix through the edge with `accessToken` (as `Authorization: Bearer`
 * on the routes that need one), tagged `kind:api`, and checks the answer: the route's status,
 * and for the chain routes that every hop saw the same subject, session, token and trace.
 * Failures are recorded by k6 (http_req_failed, checks{kind:api}); nothing throws.
 */
export function apiRequest(baseUrl: string, accessToken: string): void {
  seq += 1;
  const route = pickRoute(mixDraw(seq));
  const res = http.request(route.method, `${baseUrl}${route.path}`, null, {
    headers: route.auth ? { authorization: `Bearer ${accessToken}` } : {},
    tags: { kind: 'api', name: route.name },
    timeout: '10s',
  });
  if (route.chain && route.auth) chainRequests.add(1);
  check(res, { [`${route.name}: status ${route.expectStatus}`]: (r) => r.status === route.expectStatus }, API);
  if (route.chain && res.status === 200) {
    check(
      res,
      {
        'chain: every hop saw the same identity and trace': (r) => {
          try {
            return chainProblem(r.json()) === null;
          } catch {
            return false;
          }
        },
      },
      API,
    );
  }
}

/**
 * Warms the path before the measured iterations (call it from `setup()`): one login as `user` and
 * `requests` chain requests with its token, all tagged `kind:warmup`, so they are outside every
 * threshold and not counted as logins. The first requests of a freshly started stack open the
 * connections and TLS sessions of every hop and verify the token cold at each verifier; a
 * two-user smoke of a few seconds has so few requests that one of those would be its p99.
 * Nothing is checked here: the measured run checks everything.
 */
export function warmUp(baseUrl: string, user: UserCredentials, requests: number): void {
  if (requests <= 0) return;
  const tags = { kind: 'warmup' };
  const res = http.post(`${baseUrl}/auth/login`, JSON.stringify({ username: user.username, password: user.password }), {
    headers: { 'content-type': 'application/json' },
    tags: { ...tags, name: 'login' },
    timeout: '30s',
  });
  let access = '';
  try {
    access = res.status === 200 ? String((res.json() as { access_token?: unknown }).access_token ?? '') : '';
  } catch {
    access = '';
  }
  for (let i = 0; i < requests; i++) {
    const route = pickRoute(mixDraw(i));
    http.request(route.method, `${baseUrl}${route.path}`, null, {
      headers: route.auth && access !== '' ? { authorization: `Bearer ${access}` } : {},
      tags: { ...tags, name: route.name },
      timeout: '10s',
    });
  }
}
