/**
 * The Node load runner: the k6 scenario's route mix and token pool, driven by the open-model
 * scheduler (./open-model.ts) over undici connection pools, with the verdict NFR1 asks for:
 * p99 < `sloP99Ms` (default 200 ms) and not one failed request.
 *
 * Why undici + our scheduler rather than autocannon: autocannon is a closed model (each of its
 * connections sends the next request only when the previous answer arrived; `overallRate` only
 * caps that loop), so a server that queues makes autocannon send less and report the latency of
 * the requests it did send, hiding the queueing (coordinated omission). undici (the Node core
 * team's HTTP client, the engine of Node's fetch) gives pooled keep-alive connections with low
 * overhead; the scheduler decides *when* each request leaves; HdrHistogram records the latencies.
 */
import { Pool, type Dispatcher } from 'undici';
import { chainProblem, mixDraw, pickRoute, ROUTES, type RouteSpec } from '../k6/lib/scenario.js';
import { assertLoopbackTarget, type Resolver } from './guard.js';
import { runOpenModel, type OpenModelResult, type Outcome } from './open-model.js';

/** Something that hands out access tokens (a {@link TokenPool}, or a fixed token in tests). */
export interface TokenSource {
  accessToken(seq?: number): string;
}

/** Options of {@link runLoad}. */
export interface LoadOptions {
  /** The edge URL, e.g. `http://127.0.0.1:8080`. Must be loopback (checked before anything is sent). */
  baseUrl: string;
  /** Arrivals per second. */
  ratePerSec: number;
  /** Arrival window, seconds. */
  durationSec: number;
  /** Cap on arrivals. Default: rate x duration. */
  maxRequests?: number;
  /** Keep-alive connections to the target. Default 64. */
  connections?: number;
  /** Cap on outstanding requests; arrivals beyond it are dropped and count as failures. Default 4096. */
  maxInFlight?: number;
  /** Per-request timeout, ms. Default 10000. */
  timeoutMs?: number;
  /** Access tokens for the routes with `auth: true`. */
  tokens: TokenSource;
  /** The mix. Default: the k6 scenario's {@link ROUTES}. */
  routes?: readonly RouteSpec[];
  /** Check every n-th chain answer's hops (same subject, sid, jti and trace everywhere); 0 = never. Default 25. */
  chainCheckEvery?: number;
  /** The SLO: the run fails when p99 >= this, milliseconds. Default 200. */
  sloP99Ms?: number;
  /** Name resolution for the loopback guard (tests inject one). */
  resolve?: Resolver;
}

/** Result of {@link runLoad}: the scheduler's figures, per-route counts and the verdict. */
export interface LoadResult extends OpenModelResult {
  target: string;
  /** Requests sent per route name. */
  byRoute: Record<string, number>;
  /** Chain answers whose hops disagreed (also counted in `errors` as `chain_inconsistent`). */
  chainInconsistent: number;
  sloP99Ms: number;
  /** True when p99 < sloP99Ms and no request failed. */
  pass: boolean;
  /** Why it failed, one reason per line; empty when it passed. */
  reasons: string[];
}

/** Classifies a client-side error as a stable code (undici's `code`, or `timeout` / `aborted`). */
export function errorCode(err: unknown): string {
  const e = err as { code?: unknown; name?: unknown; cause?: { code?: unknown } };
  if (e?.name === 'TimeoutError') return 'timeout';
  if (e?.name === 'AbortError') return 'aborted';
  if (typeof e?.code === 'string') return e.code;
  if (typeof e?.cause?.code === 'string') return e.cause.code;
  return 'exception';
}

/**
 * The verdict: pass when p99 < `sloP99Ms` and `failed` is 0.
 * @returns the reasons it failed (empty when it passed).
 */
export function verdict(r: Pick<OpenModelResult, 'latency' | 'failed' | 'nonOk' | 'errors' | 'dropped' | 'answered'>, sloP99Ms: number): string[] {
  const reasons: string[] = [];
  if (r.answered === 0) reasons.push('no request was answered');
  if (r.latency.p99 >= sloP99Ms) reasons.push(`p99 ${r.latency.p99} ms >= ${sloP99Ms} ms`);
  if (r.failed > 0) {
    const parts = [
      ...Object.entries(r.nonOk).map(([s, n]) => `${n} x status ${s}`),
      ...Object.entries(r.errors).map(([c, n]) => `${n} x ${c}`),
      ...(r.dropped > 0 ? [`${r.dropped} dropped (more than maxInFlight outstanding)`] : []),
    ];
    reasons.push(`${r.failed} failed request(s): ${parts.join(', ')}`);
  }
  return reasons;
}

/**
 * Runs one open-model load against `baseUrl` and returns the figures and the verdict.
 * @throws TargetNotAllowedError when the target is not loopback (nothing is sent then);
 *   RangeError on a non-positive rate, duration or in-flight cap.
 */
export async function runLoad(opts: LoadOptions): Promise<LoadResult> {
  const url = await assertLoopbackTarget(opts.baseUrl, opts.resolve);
  const routes = opts.routes ?? ROUTES;
  if (routes.length === 0) throw new RangeError('routes must not be empty');
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const chainEvery = opts.chainCheckEvery ?? 25;
  const sloP99Ms = opts.sloP99Ms ?? 200;
  const pool = new Pool(url.origin, {
    connections: opts.connections ?? 64,
    pipelining: 1,
    keepAliveTimeout: 30_000,
    headersTimeout: timeoutMs,
    bodyTimeout: timeoutMs,
  });
  const byRoute: Record<string, number> = {};
  let chainSeen = 0;
  let chainInconsistent = 0;

  const send = async (seq: number, stop: AbortSignal): Promise<Outcome> => {
    const route = routes.length === 1 ? (routes[0] as RouteSpec) : pickRoute(mixDraw(seq), routes);
    byRoute[route.name] = (byRoute[route.name] ?? 0) + 1;
    const headers: Record<string, string> = {};
    if (route.auth) headers.authorization = `Bearer ${opts.tokens.accessToken(seq)}`;
    let res: Dispatcher.ResponseData;
    try {
      res = await pool.request({
        method: route.method,
        path: route.path,
        headers,
        signal: AbortSignal.any([stop, AbortSignal.timeout(timeoutMs)]),
      });
    } catch (err) {
      return { error: errorCode(err), detail: (err as Error)?.message };
    }
    try {
      if (route.chain && chainEvery > 0 && res.statusCode === route.expectStatus && chainSeen++ % chainEvery === 0) {
        const problem = chainProblem(await res.body.json());
        if (problem) {
          chainInconsistent += 1;
          return { error: 'chain_inconsistent', detail: problem };
        }
      } else {
        await res.body.dump();
      }
    } catch (err) {
      return { error: errorCode(err), detail: (err as Error)?.message };
    }
    return { status: res.statusCode };
  };

  let r: OpenModelResult;
  try {
    r = await runOpenModel({
      ratePerSec: opts.ratePerSec,
      durationSec: opts.durationSec,
      ...(opts.maxRequests !== undefined ? { maxRequests: opts.maxRequests } : {}),
      maxInFlight: opts.maxInFlight ?? 4096,
      drainTimeoutMs: timeoutMs + 1000,
      send,
      isOk: (o, seq) => {
        const route = routes.length === 1 ? (routes[0] as RouteSpec) : pickRoute(mixDraw(seq), routes);
        return o.status === route.expectStatus;
      },
    });
  } finally {
    await pool.close().catch(() => undefined);
  }
  const reasons = verdict(r, sloP99Ms);
  return { ...r, target: url.origin, byRoute, chainInconsistent, sloP99Ms, pass: reasons.length === 0, reasons };
}

/** Formats a result as the lines the CLI prints. */
export function formatResult(r: LoadResult, extra: { refreshFailures?: number } = {}): string {
  const l = r.latency;
  const s = r.serviceTime;
  const counts = (o: Record<string, number>): string =>
    Object.keys(o).length === 0 ? '' : ` (${Object.entries(o).map(([k, v]) => `${k}: ${v}`).join(', ')})`;
  const nonOkTotal = Object.values(r.nonOk).reduce((a, b) => a + b, 0);
  const errTotal = Object.values(r.errors).reduce((a, b) => a + b, 0);
  const lines = [
    `target        ${r.target}`,
    `offered       ${r.offeredRate} req/s, ${r.planned} arrivals planned, ${r.sent} sent`,
    `achieved      ${r.achievedRate} req/s (${r.answered} answered in ${r.elapsedSec} s)`,
    `latency       p50 ${l.p50} ms  p90 ${l.p90} ms  p99 ${l.p99} ms  max ${l.max} ms  (from the scheduled send time)`,
    `service time  p50 ${s.p50} ms  p90 ${s.p90} ms  p99 ${s.p99} ms  max ${s.max} ms  (from the actual send)`,
    `generator lag p99 ${r.lag.p99} ms  max ${r.lag.max} ms`,
    `non-2xx       ${nonOkTotal}${counts(r.nonOk)}`,
    `errors        ${errTotal}${counts(r.errors)}`,
    `dropped       ${r.dropped}`,
    `by route      ${Object.entries(r.byRoute).map(([k, v]) => `${k} ${v}`).join(', ')}`,
  ];
  if (extra.refreshFailures !== undefined) lines.push(`token refresh failures ${extra.refreshFailures}`);
  lines.push(r.pass ? `verdict       PASS (p99 ${l.p99} ms < ${r.sloP99Ms} ms, no failed request)` : `verdict       FAIL: ${r.reasons.join('; ')}`);
  return lines.join('\n');
}
