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

/**
 * Runs the demo. `out` receives every line (default stdout).
 * @returns the number of failed checks (0 = everything as expected).
 */
export async function runDemo(state: StackState, out: (line: string) => void = (l) => process.stdout.write(`${l}\n`)): Promise<number> {
  const edge = state.urls.edge;
  const ordersDirect = state.urls.services['orders']?.app;
  // The demo users, also with the unique suffix the end-to-end suites give them (`alice-1a2b3c`).
  const user = (name: string) => state.users.find((u) => u.username === name || u.username.startsWith(`${name}-`));
  const alice = user('alice');
  const bob = user('bob');
  let failed = 0;
  let passed = 0;
  let stepNo = 0;
  const step = (title: string) => out(`\n${++stepNo}. ${title}`);
  const check = (ok: boolean, what: string, detail = '') => {
    if (ok) passed++;
    else failed++;
    out(`   ${ok ? 'ok  ' : 'FAIL'} ${what}${detail ? ` (${detail})` : ''}`);
    return ok;
  };
  const show = (a: Answer) => {
    const challenge = a.headers.get('www-authenticate');
    return `${a.status}${challenge ? `, WWW-Authenticate: ${challenge}` : ''}${a.json && a.status >= 400 ? `, body ${JSON.stringify(a.json)}` : ''}`;
  };
  if (!alice || !ordersDirect) {
    out('demo: the stack has no user "alice" or no orders service; start it with make up');
    return 1;
  }
  out(`jwt-mesh demo against the edge at ${edge} (started ${state.startedAt})`);

  // 1 ---------------------------------------------------------------------------------------------
  step(`Log in as ${alice.username}: POST ${edge}/auth/login`);
  const login = await call(`${edge}/auth/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username: alice.username, password: alice.password }),
  });
  const token = typeof login.json?.['access_token'] === 'string' ? (login.json['access_token'] as string) : '';
  const refresh = typeof login.json?.['refresh_token'] === 'string' ? (login.json['refresh_token'] as string) : '';
  if (!check(login.status === 200 && token !== '' && refresh !== '', 'login answered 200 with an access token and a refresh token', show(login))) {
    out('\ndemo: cannot continue without a token');
    return failed;
  }
  const claims = claimsOf(token);
  const header = claimsOf(token, 0);
  out(`   access token: ${token.length} bytes, alg ${String(header['alg'])}, typ ${String(header['typ'])}, kid ${String(header['kid']).slice(0, 16)}...`);
  out(`   claims: sub ${String(claims['sub'])}, sid ${String(claims['sid'])}, scope "${String(claims['scope'])}", expires in ${Number(claims['exp']) - Math.floor(Date.now() / 1000)} s`);

  // 2 ---------------------------------------------------------------------------------------------
  const traceId = randomBytes(16).toString('hex');
  const traceparent = `00-${traceId}-${randomBytes(8).toString('hex')}-01`;
  step('One call through the chain: GET /api/orders/ord-1001 (edge -> orders -> inventory -> profile over gRPC)');
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

  // 3 ---------------------------------------------------------------------------------------------
  step('No token, and a forged identity header: GET /api/orders/ord-1001 with x-jwt-mesh-sub: mallory');
  const none = await call(`${edge}/api/orders/ord-1001`, { headers: { 'x-jwt-mesh-sub': 'mallory' } });
  check(none.status === 401 && /^Bearer/i.test(none.headers.get('www-authenticate') ?? ''), 'the edge answered 401 with a Bearer challenge', show(none));

  // 4 ---------------------------------------------------------------------------------------------
  if (bob) {
    step(`${bob.username} (scope "${bob.scopes.join(' ')}") calls the same route: the second hop refuses`);
    const bobLogin = await call(`${edge}/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username: bob.username, password: bob.password }),
    });
    const bobToken = typeof bobLogin.json?.['access_token'] === 'string' ? (bobLogin.json['access_token'] as string) : '';
    check(bobLogin.status === 200 && bobToken !== '', `${bob.username} logged in`, show(bobLogin));
    const denied = await call(`${edge}/api/orders/ord-1001`, { headers: { authorization: `Bearer ${bobToken}` } });
    const challenge = denied.headers.get('www-authenticate') ?? '';
    check(
      denied.status === 403 && /insufficient_scope/.test(challenge) && /realm="inventory"/.test(challenge),
      'inventory answered 403 insufficient_scope and it reached the client',
      show(denied),
    );
  }

  // 5 ---------------------------------------------------------------------------------------------
  step('Refresh: POST /auth/token grant_type=refresh_token (the refresh token rotates)');
  const refreshed = await call(`${edge}/auth/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: refresh }).toString(),
  });
  const token2 = typeof refreshed.json?.['access_token'] === 'string' ? (refreshed.json['access_token'] as string) : '';
  const refresh2 = typeof refreshed.json?.['refresh_token'] === 'string' ? (refreshed.json['refresh_token'] as string) : '';
  check(refreshed.status === 200 && token2 !== '' && refresh2 !== '' && refresh2 !== refresh, 'a new access token and a new refresh token', show(refreshed));
  const claims2 = claimsOf(token2);
  out(`   new jti ${String(claims2['jti'])} (was ${String(claims['jti'])}), same sid ${String(claims2['sid'])}`);
  const again = await call(`${edge}/api/orders/ord-1001`, { headers: { authorization: `Bearer ${token2}` } });
  check(again.status === 200, 'the new token works through the chain', again.status === 200 ? '' : show(again));

  // 6 ---------------------------------------------------------------------------------------------
  step('Log out: POST /auth/logout (revokes the session sid and this jti; Redis pub/sub tells every verifier)');
  const t0 = Date.now();
  const logout = await call(`${edge}/auth/logout`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token2}`, 'content-type': 'application/json' },
    body: JSON.stringify({ refresh_token: refresh2 }),
  });
  const t1 = Date.now();
  check(logout.status === 204, `logout answered 204 in ${t1 - t0} ms`, show(logout));

  // 7 ---------------------------------------------------------------------------------------------
  step('The same token after logout');
  const sentAfter = Date.now() - t1;
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
  const oldToken = await call(`${edge}/api/orders/ord-1001`, { headers: { authorization: `Bearer ${token}` } });
  check(oldToken.status === 401, 'the earlier access token of the same session is rejected too (sid revoked)', show(oldToken));
  const reuse = await call(`${edge}/auth/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: refresh2 }).toString(),
  });
  check(reuse.status === 400 && reuse.json?.['error'] === 'invalid_grant', 'the refresh token no longer works (invalid_grant)', show(reuse));

  // 8 ---------------------------------------------------------------------------------------------
  step(`HTTPS at the edge: GET ${state.urls.edgeHttps}/healthz with the dev CA`);
  let ca: Buffer | null = null;
  try {
    ca = readFileSync(`${state.certDir}/ca.crt`);
  } catch {
    ca = null;
  }
  const httpsStatus = ca ? await httpsGet(`${state.urls.edgeHttps}/healthz`, ca) : 0;
  check(httpsStatus === 200, 'the HTTPS listener answered 200 with a certificate from the dev CA', `status ${httpsStatus}`);

  // 9 ---------------------------------------------------------------------------------------------
  const authInbound = state.urls.services['auth']?.inbound;
  step(`The edge -> auth-service hop is mTLS (through the auth sidecar${authInbound ? ` at ${authInbound}` : ''})`);
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

  // 10 --------------------------------------------------------------------------------------------
  const acl = state.redis.acl;
  if (acl) {
    const v = acl.verifier;
    step(`Least privilege in Redis: the verifiers' ACL user (${v.username}) tries to write the revocation store`);
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
  } else {
    out('\n(Redis ACL step skipped: the stack uses the REDIS_URL you gave; make up without REDIS_URL sets up the ACL users)');
  }

  // Tracing ------------------------------------------------------------------------------------------
  if (state.tracing?.receiver) {
    step(`The trace of step 2 (trace id ${traceId}), from the stack's trace receiver`);
    try {
      const shown = await showTrace({ receiver: state.tracing.receiver, traceId });
      out(shown.text.replace(/^/gm, '   ').trimEnd());
      check(true, 'the trace of the chain call reached the trace receiver', `make trace TRACE_ID=${traceId} shows it again`);
    } catch (err) {
      check(false, 'the trace of the chain call reached the trace receiver', (err as Error).message);
    }
  } else if (state.tracing) {
    out(`\nTracing: the chain call of step 2 is trace ${traceId} in your collector (${state.tracing.endpoint}); look it up there by that id.`);
  } else {
    out('\n(Tracing is off: make up TRACING=on, then make demo and make trace, shows every hop of a request as a waterfall.)');
  }

  // Deliberately not "N passed, N failed": CI reads that line as the test runner's summary.
  out(failed === 0 ? `\ndemo: all ${passed} checks passed` : `\ndemo: ${failed} of ${passed + failed} checks FAILED`);
  return failed;
}
