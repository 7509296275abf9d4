/**
 * `make demo`: the walkthrough against a running stack, with a check on every step. Prints each
 * step and its outcome; resolves with the number of failed checks (the CLI exits non-zero when it
 * is not 0).
 *
 * Steps: log in as alice -> one call through edge -> orders -> inventory -> profile (gRPC) showing
 * the subject and trace id each hop verified -> bob (orders:read only) gets 403
 * insufficient_scope from inventory, the second hop -> refresh (rotation) -> log out -> the same
 * token is rejected at the edge and by orders called directly on its own port (no Envoy), the
 * earlier token of the same session too, and the rotated refresh token no longer works -> HTTPS at
 * the edge -> the edge -> auth-service hop is mTLS (the edge's `auth` cluster counts a TLS
 * handshake for every connection it opened; the auth sidecar refuses a caller without a mesh
 * client certificate) -> a verifier's Redis credentials read the revocation store but are
 * refused (NOPERM) on every write -> with tracing on and the stack's own receiver, the trace of the
 * chain call as a waterfall (`make trace`), else where to find it.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { Redis } from 'ioredis';
import type { StackState } from './state.js';
import type { DemoUser } from './users.js';
import { showTrace } from './traces/show.js';

/** An HTTP answer (body parsed as JSON when it is JSON). */
interface Answer {
  status: number;
  headers: Headers;
  text: string;
  json: Record<string, unknown> | null;
}

async function call(url: string, init: RequestInit = {}): Promise<Answer> {
  const res = await fetch(url, { ...init, signal: AbortSignal.timeout(10_000) });
  const text = await res.text();
  let json: Record<string, unknown> | null = null;
  try {
    const v: unknown = JSON.parse(text);
    if (v && typeof v === 'object' && !Array.isArray(v)) json = v as Record<string, unknown>;
  } catch {
    // not JSON
  }
  return { status: res.status, headers: res.headers, text, json };
}

interface Hop {
  service: string;
  transport: string;
  subject: string;
  sid: string | null;
  jti: string;
  traceId: string;
  requestId: string;
}

/** Decodes a JWT's header (part 0) or payload (part 1) without verifying it (display only: the mesh verified it). */
function claimsOf(jwt: string, part: 0 | 1 = 1): Record<string, unknown> {
  try {
    return JSON.parse(Buffer.from(jwt.split('.')[part] ?? '', 'base64url').toString('utf8')) as Record<string, unknown>;
  } catch {
    return {};
  }
}

function httpsGet(url: string, ca: Buffer): Promise<number> {
  return new Promise((resolveStatus) => {
    const req = httpsRequest(url, { ca, timeout: 5000, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolveStatus(res.statusCode ?? 0));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', () => resolveStatus(0));
    req.end();
  });
}

/** What every step of the demo shares: the stack, the output, the step number and the counts of checks. */
interface Demo {
  readonly state: StackState;
  /** The edge's HTTP URL. */
  readonly edge: string;
  readonly out: (line: string) => void;
  passed: number;
  failed: number;
  stepNo: number;
  /** Prints the next step's number and its title. */
  step(title: string): void;
  /** Counts one check and prints it (`ok` or `FAIL`, what, and the detail in parentheses); returns `ok`. */
  check(ok: boolean, what: string, detail?: string): boolean;
}

/** A fresh {@link Demo} against `state`, printing to `out`, no step and no check yet. */
function demoOf(state: StackState, out: (line: string) => void): Demo {
  const d: Demo = {
    state,
    edge: state.urls.edge,
    out,
    passed: 0,
    failed: 0,
    stepNo: 0,
    step: (title) => out(`\n${++d.stepNo}. ${title}`),
    check: (ok, what, detail = '') => {
      if (ok) d.passed++;
      else d.failed++;
      out(`   ${ok ? 'ok  ' : 'FAIL'} ${what}${detail ? ` (${detail})` : ''}`);
      return ok;
    },
  };
  return d;
}

/** An answer as the checks print it: the status, the challenge, and the body of an error. */
function show(a: Answer): string {
  const challenge = a.headers.get('www-authenticate');
  return `${a.status}${challenge ? `, WWW-Authenticate: ${challenge}` : ''}${a.json && a.status >= 400 ? `, body ${JSON.stringify(a.json)}` : ''}`;
}

/** A string field of a JSON answer, '' when absent. */
function stringField(a: Answer, name: string): string {
  return typeof a.json?.[name] === 'string' ? (a.json[name] as string) : '';
}

/** A demo user's session: the access token, its refresh token, and the access token's claims. */
interface Session {
  token: string;
  refresh: string;
  claims: Record<string, unknown>;
}

/**
 * Runs the demo. `out` receives every line (default stdout).
 * @returns the number of failed checks (0 = everything as expected).
 */
export async function runDemo(state: StackState, out: (line: string) => void = (l) => process.stdout.write(`${l}\n`)): Promise<number> {
  const ordersDirect = state.urls.services['orders']?.app;
  // The demo users, also with the unique suffix the end-to-end suites give them (`alice-1a2b3c`).
  const user = (name: string) => state.users.find((u) => u.username === name || u.username.startsWith(`${name}-`));
  const alice = user('alice');
  const bob = user('bob');
  if (!alice || !ordersDirect) {
    out('demo: the stack has no user "alice" or no orders service; start it with make up');
    return 1;
  }
  const d = demoOf(state, out);
  out(`jwt-mesh demo against the edge at ${d.edge} (started ${state.startedAt})`);
  const session = await logIn(d, alice);
  if (!session) {
    out('\ndemo: cannot continue without a token');
    return d.failed;
  }
  const traceId = await callTheChain(d, session);
  await noTokenNoEntry(d);
  if (bob) await secondHopRefuses(d, bob);
  const rotated = await refreshRotates(d, session);
  const loggedOutAt = await logOut(d, rotated);
  await revokedEverywhere(d, ordersDirect, session, rotated, loggedOutAt);
  const ca = await edgeHttps(d);
  await authHopIsMtls(d, ca);
  await redisLeastPrivilege(d);
  await chainTrace(d, traceId);

  // Deliberately not "N passed, N failed": CI reads that line as the test runner's summary.
  out(d.failed === 0 ? `\ndemo: all ${d.passed} checks passed` : `\ndemo: ${d.failed} of ${d.passed + d.failed} checks FAILED`);
  return d.failed;
}

/** Logs `user` in through the edge. @returns the session, or null when the login did not answer one. */
async function logIn(d: Demo, user: DemoUser): Promise<Session | null> {
  const { edge, out } = d;
  d.step(`Log in as ${user.username}: POST ${edge}/auth/login`);
  const login = await call(`${edge}/auth/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username: user.username, password: user.password }),
  });
  const token = stringField(login, 'access_token');
  const refresh = stringField(login, 'refresh_token');
  if (!d.check(login.status === 200 && token !== '' && refresh !== '', 'login answered 200 with an access token and a refresh token', show(login))) {
    return null;
  }
  const claims = claimsOf(token);
  const header = claimsOf(token, 0);
  out(`   access token: ${token.length} bytes, alg ${String(header['alg'])}, typ ${String(header['typ'])}, kid ${String(header['kid']).slice(0, 16)}...`);
  out(`   claims: sub ${String(claims['sub'])}, sid ${String(claims['sid'])}, scope "${String(claims['scope'])}", expires in ${Number(claims['exp']) - Math.floor(Date.now() / 1000)} s`);
  return { token, refresh, claims };
}

/** One call through edge -> orders -> inventory -> profile with a fresh `traceparent`: every hop verified the same token. @returns its trace id. */
async function callTheChain(d: Demo, session: Session): Promise<string> {
  const { edge, out, check } = d;
  const { token, claims } = session;
  const traceId = randomBytes(16).toString('hex');
  const traceparent = `00-${traceId}-${randomBytes(8).toString('hex')}-01`;
  d.step('One call through the chain: GET /api/orders/ord-1001 (edge -> orders -> inventory -> profile over gRPC)');
  out(`   traceparent: ${traceparent}`);
  const chain = await call(`${edge}/api/orders/ord-1001`, { headers: { authorization: `Bearer ${token}`, traceparent } });
  const hops = Array.isArray(chain.json?.['hops']) ? (chain.json['hops'] as Hop[]) : [];
  check(chain.status === 200, 'the edge answered 200', chain.status === 200 ? '' : show(chain));
  if (hops.length > 0) {
    out(`   ${'hop'.padEnd(10)} ${'via'.padEnd(5)} ${'subject (sub)'.padEnd(38)} ${'trace id'.padEnd(33)} x-request-id`);
    for (const h of hops) out(`   ${h.service.padEnd(10)} ${h.transport.padEnd(5)} ${h.subject.padEnd(38)} ${h.traceId.padEnd(33)} ${h.requestId}`);
  }
  check(
    ['orders', 'inventory', 'profile'].every((s) => hops.some((h) => h.service === s)),
    'orders, inventory and profile each verified the token',
    `hops: ${hops.map((h) => h.service).join(' -> ') || 'none'}`,
  );
  check(hops.length > 0 && hops.every((h) => h.subject === claims['sub'] && h.jti === claims['jti']), 'every hop saw the same subject and the same jti');
  check(hops.length > 0 && hops.every((h) => h.traceId === traceId), 'every hop continued the same trace id');
  check(hops.length > 0 && new Set(hops.map((h) => h.requestId)).size === 1, 'every hop saw the same x-request-id');
  return traceId;
}

/** No token, and a forged identity header: the edge answers 401 with a Bearer challenge. */
async function noTokenNoEntry(d: Demo): Promise<void> {
  d.step('No token, and a forged identity header: GET /api/orders/ord-1001 with x-jwt-mesh-sub: mallory');
  const none = await call(`${d.edge}/api/orders/ord-1001`, { headers: { 'x-jwt-mesh-sub': 'mallory' } });
  d.check(none.status === 401 && /^Bearer/i.test(none.headers.get('www-authenticate') ?? ''), 'the edge answered 401 with a Bearer challenge', show(none));
}

/** `bob` (orders:read only) calls the same route: inventory, the second hop, answers 403 insufficient_scope. */
async function secondHopRefuses(d: Demo, bob: DemoUser): Promise<void> {
  const { edge, check } = d;
  d.step(`${bob.username} (scope "${bob.scopes.join(' ')}") calls the same route: the second hop refuses`);
  const bobLogin = await call(`${edge}/auth/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username: bob.username, password: bob.password }),
  });
  const bobToken = stringField(bobLogin, 'access_token');
  check(bobLogin.status === 200 && bobToken !== '', `${bob.username} logged in`, show(bobLogin));
  const denied = await call(`${edge}/api/orders/ord-1001`, { headers: { authorization: `Bearer ${bobToken}` } });
  const challenge = denied.headers.get('www-authenticate') ?? '';
  check(
    denied.status === 403 && /insufficient_scope/.test(challenge) && /realm="inventory"/.test(challenge),
    'inventory answered 403 insufficient_scope and it reached the client',
    show(denied),
  );
}

/** The refresh_token grant: a new access token and a new refresh token (rotation), and the new token works. @returns them. */
async function refreshRotates(d: Demo, session: Session): Promise<{ token2: string; refresh2: string }> {
  const { edge, out, check } = d;
  const { refresh, claims } = session;
  d.step('Refresh: POST /auth/token grant_type=refresh_token (the refresh token rotates)');
  const refreshed = await call(`${edge}/auth/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: refresh }).toString(),
  });
  const token2 = stringField(refreshed, 'access_token');
  const refresh2 = stringField(refreshed, 'refresh_token');
  check(refreshed.status === 200 && token2 !== '' && refresh2 !== '' && refresh2 !== refresh, 'a new access token and a new refresh token', show(refreshed));
  const claims2 = claimsOf(token2);
  out(`   new jti ${String(claims2['jti'])} (was ${String(claims['jti'])}), same sid ${String(claims2['sid'])}`);
  const again = await call(`${edge}/api/orders/ord-1001`, { headers: { authorization: `Bearer ${token2}` } });
  check(again.status === 200, 'the new token works through the chain', again.status === 200 ? '' : show(again));
  return { token2, refresh2 };
}

/** Logs out with the rotated tokens (revokes the sid and the jti). @returns when the answer arrived (`Date.now()`, milliseconds). */
async function logOut(d: Demo, rotated: { token2: string; refresh2: string }): Promise<number> {
  d.step('Log out: POST /auth/logout (revokes the session sid and this jti; Redis pub/sub tells every verifier)');
  const t0 = Date.now();
  const logout = await call(`${d.edge}/auth/logout`, {
    method: 'POST',
    headers: { authorization: `Bearer ${rotated.token2}`, 'content-type': 'application/json' },
    body: JSON.stringify({ refresh_token: rotated.refresh2 }),
  });
  const t1 = Date.now();
  d.check(logout.status === 204, `logout answered 204 in ${t1 - t0} ms`, show(logout));
  return t1;
}

/** After the logout: the token is rejected at the edge and by orders directly, the session's earlier token too, and the refresh token no longer works. */
async function revokedEverywhere(d: Demo, ordersDirect: string, session: Session, rotated: { token2: string; refresh2: string }, loggedOutAt: number): Promise<void> {
  const { edge, check } = d;
  const { token2, refresh2 } = rotated;
  d.step('The same token after logout');
  const sentAfter = Date.now() - loggedOutAt;
  const atEdge = await call(`${edge}/api/orders/ord-1001`, { headers: { authorization: `Bearer ${token2}` } });
  check(
    atEdge.status === 401 && /invalid_token/.test(atEdge.headers.get('www-authenticate') ?? ''),
    `rejected at the edge (request sent ${sentAfter} ms after the logout answer)`,
    show(atEdge),
  );
  const direct = await call(`${ordersDirect}/api/orders/ord-1001`, { headers: { authorization: `Bearer ${token2}` } });
  check(
    direct.status === 401 && /invalid_token/.test(direct.headers.get('www-authenticate') ?? ''),
    `rejected by orders called directly at ${ordersDirect} (no Envoy: local verification)`,
    show(direct),
  );
  const oldToken = await call(`${edge}/api/orders/ord-1001`, { headers: { authorization: `Bearer ${session.token}` } });
  check(oldToken.status === 401, 'the earlier access token of the same session is rejected too (sid revoked)', show(oldToken));
  const reuse = await call(`${edge}/auth/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: refresh2 }).toString(),
  });
  check(reuse.status === 400 && reuse.json?.['error'] === 'invalid_grant', 'the refresh token no longer works (invalid_grant)', show(reuse));
}

/** HTTPS at the edge with the dev CA. @returns the dev CA (null when it cannot be read). */
async function edgeHttps(d: Demo): Promise<Buffer | null> {
  const { state } = d;
  d.step(`HTTPS at the edge: GET ${state.urls.edgeHttps}/healthz with the dev CA`);
  let ca: Buffer | null = null;
  try {
    ca = readFileSync(`${state.certDir}/ca.crt`);
  } catch {
    ca = null;
  }
  const httpsStatus = ca ? await httpsGet(`${state.urls.edgeHttps}/healthz`, ca) : 0;
  d.check(httpsStatus === 200, 'the HTTPS listener answered 200 with a certificate from the dev CA', `status ${httpsStatus}`);
  return ca;
}

/** The edge -> auth-service hop is mTLS: every connection of the edge's `auth` cluster was a TLS handshake, and the auth sidecar refuses a client without a mesh certificate. */
async function authHopIsMtls(d: Demo, ca: Buffer | null): Promise<void> {
  const { state, check } = d;
  const authInbound = state.urls.services['auth']?.inbound;
  d.step(`The edge -> auth-service hop is mTLS (through the auth sidecar${authInbound ? ` at ${authInbound}` : ''})`);
  const edgeStats = await call(`${state.urls.edgeAdmin}/stats?format=json&filter=${encodeURIComponent('^cluster\\.auth\\.(ssl\\.handshake|upstream_cx_total)$')}`).catch(() => null);
  const stat = (name: string): number => {
    const list = (edgeStats?.json?.['stats'] as Array<{ name?: string; value?: number }> | undefined) ?? [];
    return Number(list.find((x) => x.name === name)?.value ?? 0);
  };
  const handshakes = stat('cluster.auth.ssl.handshake');
  const connections = stat('cluster.auth.upstream_cx_total');
  check(
    connections > 0 && handshakes === connections,
    "every connection of the edge's auth cluster was a TLS handshake (edge admin /stats)",
    `cluster.auth.upstream_cx_total ${connections}, cluster.auth.ssl.handshake ${handshakes}`,
  );
  const noClientCert = authInbound && ca ? await httpsGet(`${authInbound}/.well-known/jwks.json`, ca) : -1;
  check(noClientCert === 0, 'the auth sidecar refuses a TLS client without a mesh certificate', `status ${noClientCert === 0 ? 'none: handshake refused' : noClientCert}`);
}

/** With the stack's own redis-server: the verifiers' ACL user reads the revocation store's sync marker but every write is refused (NOPERM). */
async function redisLeastPrivilege(d: Demo): Promise<void> {
  const { state, check } = d;
  const acl = state.redis.acl;
  if (!acl) {
    d.out('\n(Redis ACL step skipped: the stack uses the REDIS_URL you gave; make up without REDIS_URL sets up the ACL users)');
    return;
  }
  const v = acl.verifier;
  d.step(`Least privilege in Redis: the verifiers' ACL user (${v.username}) tries to write the revocation store`);
  const r = new Redis(state.redis.url, {
    username: v.username,
    password: readFileSync(v.passwordFile, 'utf8').trim(),
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    disableClientInfo: true,
  });
  r.on('error', () => undefined);
  const errorOf = (p: Promise<unknown>) => p.then(() => 'allowed', (err: Error) => err.message.split(' ')[0] ?? err.message);
  try {
    await r.connect();
    const marker = `${state.redis.prefix}rv:synced`;
    const read = await r.mget(marker).then((v) => (typeof v[0] === 'string' ? 'read' : 'missing'), (err: Error) => err.message);
    check(read === 'read', `it reads the sync marker ${marker} (MGET), as every lookup does`, read);
    for (const [what, p] of [
      [`SET ${marker} (forge the marker)`, r.set(marker, 'forged')],
      [`DEL ${state.redis.prefix}rv:jti:<jti> (drop a revocation)`, r.del(`${state.redis.prefix}rv:jti:demo`)],
      ['FLUSHALL', r.flushall()],
      [`PUBLISH ${state.redis.prefix}revocations`, r.publish(`${state.redis.prefix}revocations`, '{}')],
      ['EVAL (a script that deletes the marker)', r.eval("return redis.call('DEL', KEYS[1])", 1, marker)],
    ] as Array<[string, Promise<unknown>]>) {
      const got = await errorOf(p);
      check(got === 'NOPERM', `${what}: refused`, got);
    }
  } catch (err) {
    check(false, 'connected to Redis as the verifiers\' user', (err as Error).message);
  } finally {
    r.disconnect();
  }
}

/** With tracing on and the stack's own receiver, the trace of the chain call as a waterfall (`make trace`); else where to find it. */
async function chainTrace(d: Demo, traceId: string): Promise<void> {
  const { state, out } = d;
  if (state.tracing?.receiver) {
    d.step(`The trace of step 2 (trace id ${traceId}), from the stack's trace receiver`);
    try {
      const shown = await showTrace({ receiver: state.tracing.receiver, traceId });
      out(shown.text.replace(/^/gm, '   ').trimEnd());
      d.check(true, 'the trace of the chain call reached the trace receiver', `make trace TRACE_ID=${traceId} shows it again`);
    } catch (err) {
      d.check(false, 'the trace of the chain call reached the trace receiver', (err as Error).message);
    }
  } else if (state.tracing) {
    out(`\nTracing: the chain call of step 2 is trace ${traceId} in your collector (${state.tracing.endpoint}); look it up there by that id.`);
  } else {
    out('\n(Tracing is off: make up TRACING=on, then make demo and make trace, shows every hop of a request as a waterfall.)');
  }
}
