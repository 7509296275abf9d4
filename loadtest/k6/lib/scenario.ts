/**
 * The load scenario shared by the k6 scripts and the Node load runner (`make loadtest`): the
 * route mix through the edge, the demo users, and the pure helpers both sides use (weighted route
 * choice, user-list parsing, when to refresh a token).
 *
 * This module imports nothing (neither `k6/*` nor `node:*`), so it runs unchanged in k6's
 * JavaScript runtime and in Node: k6 imports it as `./scenario.ts`, the Node runner as
 * `../k6/lib/scenario.js` (tsx and tsc map the `.js` suffix to this file).
 */

/** One kind of request a user makes through the edge Envoy. */
export interface RouteSpec {
  /** Stable name, used as the k6 `name` tag and in the runner's per-route counts. */
  readonly name: string;
  readonly method: 'GET' | 'POST';
  /** Path on the edge (no query string: tokens never travel in one, RFC 6750 §5.3). */
  readonly path: string;
  /** Relative weight in the mix (the weights need not add up to 100). */
  readonly weight: number;
  /** Send `Authorization: Bearer <access token>`. Public routes are still checked by ext_authz. */
  readonly auth: boolean;
  /** The answer carries the chain's `hops` (orders -> inventory -> profile); checks read them. */
  readonly chain: boolean;
  /** Status a correct answer has. Anything else counts as a failed request. */
  readonly expectStatus: number;
}

/**
 * The route mix: what a signed-in user of the demo shop does, all through the edge.
 * - 60 %: view order ord-1001 (edge ext_authz, then orders -> inventory over HTTP -> profile over
 *   gRPC, each hop verifying the same JWT locally);
 * - 30 %: view order ord-1002 (the same chain, another SKU);
 * - 5 %: OpenID/RFC 8414 issuer metadata (public, served by the auth service);
 * - 5 %: the edge health path (public, answered by Envoy after ext_authz).
 * Order creation (`POST /api/orders`) is left out on purpose: it reserves finite stock, so a
 * long run would turn it into 409s that say nothing about authentication.
 */
export const ROUTES: readonly RouteSpec[] = Object.freeze([
  { name: 'order-1001', method: 'GET', path: '/api/orders/ord-1001', weight: 60, auth: true, chain: true, expectStatus: 200 },
  { name: 'order-1002', method: 'GET', path: '/api/orders/ord-1002', weight: 30, auth: true, chain: true, expectStatus: 200 },
  { name: 'issuer-metadata', method: 'GET', path: '/.well-known/openid-configuration', weight: 5, auth: false, chain: false, expectStatus: 200 },
  { name: 'edge-health', method: 'GET', path: '/healthz', weight: 5, auth: false, chain: false, expectStatus: 200 },
]);

/** The services of the chain, in call order; a chain answer has one hop per service. */
export const CHAIN_SERVICES: readonly string[] = Object.freeze(['orders', 'inventory', 'profile']);

/** A user the load logs in as. */
export interface UserCredentials {
  readonly username: string;
  readonly password: string;
}

/**
 * Default users: the demo users `make up` seeds (tools/stack/src/users.ts) that hold every
 * scope the chain needs (`bob` has `orders:read` only, so inventory answers him 403). Override with
 * `USERS` (`name:password,name:password`) or `USERS_FILE` (k6 only: a JSON array of
 * `{username,password}`).
 */
export const DEFAULT_USERS = 'alice:alice-demo-password,admin:admin-demo-password';

/** Default edge URL of the local stack (`make up`: edge HTTP on 127.0.0.1:8080, EDGE_PORT to change). */
export const DEFAULT_BASE_URL = 'http://127.0.0.1:8080';

/**
 * Parses `name:password,name:password` (the password may contain `:`; names may not).
 * @throws Error naming the bad entry when an entry has no `:` or an empty name or password.
 */
export function parseUsers(spec: string): UserCredentials[] {
  const out: UserCredentials[] = [];
  for (const raw of spec.split(',')) {
    const entry = raw.trim();
    if (entry === '') continue;
    const i = entry.indexOf(':');
    if (i <= 0 || i === entry.length - 1) throw new Error(`USERS: entry "${entry.slice(0, 40)}" must be name:password`);
    out.push({ username: entry.slice(0, i), password: entry.slice(i + 1) });
  }
  if (out.length === 0) throw new Error('USERS: no user given');
  return out;
}

/**
 * Picks a route for draw `u` in [0, 1) by weight (cumulative weights, first match).
 * Deterministic for a given `u`, so the Node runner can spread the mix evenly.
 */
export function pickRoute(u: number, routes: readonly RouteSpec[] = ROUTES): RouteSpec {
  const total = routes.reduce((s, r) => s + r.weight, 0);
  let acc = 0;
  const x = Math.min(Math.max(u, 0), 0.999999999) * total;
  for (const r of routes) {
    acc += r.weight;
    if (x < acc) return r;
  }
  return routes[routes.length - 1] as RouteSpec;
}

/**
 * A low-discrepancy draw for request number `seq` (golden-ratio sequence): over any window of
 * requests the route shares stay close to the weights, unlike independent random draws.
 */
export function mixDraw(seq: number): number {
  const g = 0.6180339887498949;
  const v = (seq * g) % 1;
  return v < 0 ? v + 1 : v;
}

/**
 * True when an access token that expires at `expiresAtSec` (epoch seconds) should be refreshed
 * now (`nowSec`, epoch seconds): less than `marginSec` seconds of lifetime left. The margin must
 * be larger than one user iteration (request plus think time), so the token is never used expired.
 */
export function refreshDue(nowSec: number, expiresAtSec: number, marginSec: number): boolean {
  return expiresAtSec - nowSec < marginSec;
}

/** The token endpoint's answer (RFC 6749 §5.1) as the auth service gives it. */
export interface TokenAnswer {
  readonly access_token: string;
  readonly refresh_token: string;
  /** Access-token lifetime, seconds. */
  readonly expires_in: number;
}

/** Checks a login or refresh answer's shape. @returns a message naming the first bad field, or null. */
export function tokenAnswerProblem(body: unknown): string | null {
  if (typeof body !== 'object' || body === null) return 'the answer is not a JSON object';
  const b = body as Record<string, unknown>;
  if (typeof b.access_token !== 'string' || b.access_token.split('.').length !== 3) return 'access_token is not a JWS compact JWT';
  if (typeof b.refresh_token !== 'string' || b.refresh_token.length < 16) return 'refresh_token is missing';
  if (typeof b.expires_in !== 'number' || !(b.expires_in > 0)) return 'expires_in is not a positive number';
  return null;
}

/**
 * Checks a chain answer: one hop per service of {@link CHAIN_SERVICES}, every hop saw the same
 * subject, session, token (`jti`) and trace id.
 * @returns a message saying what differs, or null when the answer is consistent.
 */
export function chainProblem(body: unknown): string | null {
  if (typeof body !== 'object' || body === null) return 'the answer is not a JSON object';
  const hops = (body as { hops?: unknown }).hops;
  if (!Array.isArray(hops)) return 'no hops in the answer';
  const services = hops.map((h) => (h as { service?: unknown }).service);
  if (services.join(',') !== CHAIN_SERVICES.join(',')) return `hops ${services.join(',')} (expected ${CHAIN_SERVICES.join(',')})`;
  for (const field of ['subject', 'sid', 'jti', 'traceId'] as const) {
    const values = new Set(hops.map((h) => (h as Record<string, unknown>)[field]));
    if (values.size !== 1) return `the hops saw different ${field} values`;
  }
  return null;
}

/** A loopback host as k6 sees it in a URL: 127.0.0.0/8, `[::1]`, or `localhost`. */
const LOOPBACK_HOST = /^(127\.\d{1,3}\.\d{1,3}\.\d{1,3}|\[::1\]|localhost)$/i;

/**
 * Checks a load target (`BASE_URL`): an `http(s)://host[:port]` URL without a path, whose host is
 * loopback, or exactly `allowHost` (the one non-loopback host the user named on purpose, e.g. the
 * edge Service inside a Kubernetes cluster for a distributed run). k6 cannot resolve names before
 * it sends, so a name other than `localhost` counts as not loopback.
 * @returns a message naming `BASE_URL` and what is wrong, or null when the target is allowed.
 */
export function targetProblem(url: string, allowHost = ''): string | null {
  const m = /^https?:\/\/(\[[^\]]+\]|[^/:]+)(:\d{1,5})?$/.exec(url);
  if (!m) return `BASE_URL: "${url}" must be http(s)://host[:port] with no path`;
  const host = m[1] as string;
  if (LOOPBACK_HOST.test(host) || (allowHost !== '' && host.toLowerCase() === allowHost.toLowerCase())) return null;
  return `BASE_URL: refusing ${url}: ${host} is not loopback (127.0.0.0/8, [::1], localhost); load goes to this machine only, unless ALLOW_HOST names that exact host`;
}

/**
 * Seconds to wait before retrying an answer 429 or 503 (RFC 9110 §10.2.3 `Retry-After`, in its
 * delay-seconds form; an HTTP-date or anything else counts as 1 s), bounded to 1..60, plus up to
 * `jitter` (a draw in [0, 1)) of a second so that shed clients do not come back in lockstep.
 */
export function retryAfterSec(header: string | undefined, jitter: number): number {
  const v = header !== undefined && /^\d+$/.test(header.trim()) ? Number(header.trim()) : 1;
  return Math.min(Math.max(v, 1), 60) + Math.min(Math.max(jitter, 0), 0.999);
}
