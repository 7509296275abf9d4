/**
 * One user iteration, shared by the load and spike scripts: get the VU's session (refreshing it
 * when due), pick a route from the mix, send it through the edge, check the answer (status, and
 * for the chain routes that every hop saw the same subject, session, token and trace), then think.
 */
import { check, sleep } from 'k6';
import http from 'k6/http';
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

/** Reads the refresh margin (`REFRESH_MARGIN_SEC`, default 60 s; must exceed one iteration). */
export function refreshMarginSec(): number {
  return envNumber('REFRESH_MARGIN_SEC', 60, 1, 3600);
}

/** One user action. Failures are recorded by k6 (http_req_failed, checks); nothing throws. */
export function userIteration(data: SetupData | undefined, opts: IterationOptions): void {
  const session = sessionForVu(opts.baseUrl, data, opts.users, opts.refreshMarginSec);
  if (session !== null) {
    seq += 1;
    const route = pickRoute(mixDraw(seq));
    const res = http.request(route.method, `${opts.baseUrl}${route.path}`, null, {
      headers: route.auth ? { authorization: `Bearer ${session.access}` } : {},
      tags: { kind: 'api', name: route.name },
      timeout: '10s',
    });
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
  if (opts.think) sleep(opts.think.min + Math.random() * (opts.think.max - opts.think.min));
}
