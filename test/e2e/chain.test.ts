/**
 * End to end through the edge Envoy and the whole chain edge -> orders -> inventory (HTTP) ->
 * profile (gRPC), each service behind its sidecar and verifying the token itself (issue 4,
 * "Tests"). Real Envoy, authz-service replicas, auth-service, PostgreSQL, Redis; one stack for
 * the file, started by the same startStack() as `make up`.
 */
import { randomBytes } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import t from 'tap';
import { loadProfileProto } from '@jwt-mesh/profile/proto';
import { counterSum, send, startE2e, type Answer, type E2e } from './helpers.js';

t.setTimeout(420_000);

let e2e: E2e;

interface Hop {
  service: string;
  transport: string;
  subject: string;
  sid: string | null;
  jti: string;
  traceId: string;
  requestId: string;
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
const challenge = (a: Answer) => String(a.headers['www-authenticate'] ?? '');
const hopsOf = (a: Answer) => (Array.isArray(a.json?.['hops']) ? (a.json['hops'] as Hop[]) : []);

/** Each service's own app port, bypassing every Envoy: what local verification alone decides. */
function direct(service: 'orders' | 'inventory' | 'profile'): { base: string; path: string } {
  const base = e2e.stack.state.urls.services[service]?.app as string;
  const path = { orders: '/api/orders/ord-1001', inventory: '/api/inventory/sku-widget', profile: '/api/profile/me' }[service];
  return { base, path };
}

/** profile's gRPC GetProfile, called on its own gRPC port (no Envoy), with `authorization` metadata. */
async function grpcDirect(token: string): Promise<{ code: number; details: string }> {
  const pkg = loadProfileProto();
  const client = new pkg.jwtmesh.profile.v1.ProfileService(e2e.stack.state.urls.services['profile']?.grpc as string, grpc.credentials.createInsecure());
  const md = new grpc.Metadata();
  md.set('authorization', `Bearer ${token}`);
  try {
    return await new Promise((resolveCall) => {
      client.GetProfile({ subject: '' }, md, { deadline: Date.now() + 10_000 }, (err) => {
        resolveCall(err ? { code: err.code, details: err.details } : { code: grpc.status.OK, details: 'OK' });
      });
    });
  } finally {
    client.close();
  }
}

/** Denials a service counted for `outcome` (its /metrics). */
function denials(service: 'orders' | 'inventory' | 'profile', outcome: string): Promise<number> {
  const app = e2e.stack.state.urls.services[service]?.app as string;
  return counterSum(`${app}/metrics`, 'jwt_mesh_auth_decisions_total', (l) => l.includes(`outcome="${outcome}"`));
}

t.before(async () => {
  e2e = await startE2e(t, { name: 'chain', redisDb: 12 });
});

t.test('each hop saw the same subject and the same trace id', async (t) => {
  const { access, claims } = await e2e.login(e2e.users.alice);
  const traceId = randomBytes(16).toString('hex');
  const r = await send({ base: e2e.edge, path: '/api/orders/ord-1001', headers: { ...bearer(access), traceparent: `00-${traceId}-${randomBytes(8).toString('hex')}-01` } });
  t.equal(r.status, 200, 'the chain answered 200');
  const hops = hopsOf(r);
  t.same(hops.map((h) => `${h.service}/${h.transport}`), ['orders/http', 'inventory/http', 'profile/grpc'], 'three hops, the last over gRPC');
  t.ok(hops.every((h) => h.subject === claims['sub']), `every hop verified subject ${String(claims['sub'])}`);
  t.ok(hops.every((h) => h.jti === claims['jti'] && h.sid === claims['sid']), 'every hop saw the same jti and sid');
  t.ok(hops.every((h) => h.traceId === traceId), `every hop continued trace ${traceId}`);
  t.equal(new Set(hops.map((h) => h.requestId)).size, 1, 'every hop saw the same x-request-id');
  t.equal(r.headers['x-request-id'], hops[0]?.requestId, 'the edge returned that x-request-id to the client');

  const noTrace = await send({ base: e2e.edge, path: '/api/orders/ord-1002', headers: bearer(access) });
  const started = hopsOf(noTrace);
  t.equal(noTrace.status, 200, 'without a traceparent: 200');
  t.ok(started.length === 3 && started.every((h) => /^[0-9a-f]{32}$/.test(h.traceId) && h.traceId === started[0]?.traceId), 'a trace started at the first hop is continued by the others');

  const placed = await send({
    base: e2e.edge,
    method: 'POST',
    path: '/api/orders',
    headers: { ...bearer(access), 'content-type': 'application/json' },
    body: JSON.stringify({ sku: 'sku-widget', quantity: 1 }),
  });
  t.equal(placed.status, 201, 'POST /api/orders (orders:write, then inventory:write at hop 2): 201');
  t.ok(hopsOf(placed).every((h) => h.subject === claims['sub']), 'the write chain saw the same subject at every hop');
});

t.test('a token lacking a scope needed by a downstream hop fails with 403 from that hop, and the error reaches the client', async (t) => {
  const bob = await e2e.login(e2e.users.bob); // orders:read only
  const invBefore = await denials('inventory', 'insufficient_scope');
  const r = await send({ base: e2e.edge, path: '/api/orders/ord-1001', headers: bearer(bob.access) });
  t.equal(r.status, 403, 'bob: 403');
  t.match(challenge(r), /realm="inventory"/, `the challenge names inventory (${challenge(r)})`);
  t.match(challenge(r), /error="insufficient_scope"/, 'error="insufficient_scope"');
  t.match(challenge(r), /scope="inventory:read"/, 'and the scope inventory needs');
  t.equal(r.json?.['error'], 'insufficient_scope', 'JSON body error insufficient_scope');
  t.equal(await denials('inventory', 'insufficient_scope'), invBefore + 1, 'inventory counted the denial');

  // A token with everything but profile:read: orders and inventory accept it, profile (gRPC) refuses.
  const narrow = await e2e.login(e2e.users.alice, 'orders:read inventory:read');
  const profBefore = await denials('profile', 'insufficient_scope');
  const p = await send({ base: e2e.edge, path: '/api/orders/ord-1001', headers: bearer(narrow.access) });
  t.equal(p.status, 403, 'no profile:read: 403');
  t.match(challenge(p), /error="insufficient_scope"/, `profile's refusal reaches the client (${challenge(p)})`);
  t.match(challenge(p), /realm="profile"/, 'the challenge names profile');
  t.equal(await denials('profile', 'insufficient_scope'), profBefore + 1, 'profile counted the denial');
});

t.test('a revoked token is rejected by the edge and by every service called directly on its own port', async (t) => {
  const { access, refresh } = await e2e.login(e2e.users.alice);
  for (const s of ['orders', 'inventory', 'profile'] as const) {
    const d = direct(s);
    t.equal((await send({ ...d, headers: bearer(access) })).status, 200, `before: ${s} called directly accepts the token`);
  }
  t.equal((await grpcDirect(access)).code, grpc.status.OK, 'before: profile gRPC called directly accepts it');

  const logout = await send({
    base: e2e.edge,
    method: 'POST',
    path: '/auth/logout',
    headers: { ...bearer(access), 'content-type': 'application/json' },
    body: JSON.stringify({ refresh_token: refresh }),
  });
  t.equal(logout.status, 204, 'logout: 204');

  const atEdge = await send({ base: e2e.edge, path: '/api/orders/ord-1001', headers: bearer(access) });
  t.equal(atEdge.status, 401, 'the edge: 401');
  t.match(challenge(atEdge), /error="invalid_token"/, 'the edge: invalid_token');
  for (const s of ['orders', 'inventory', 'profile'] as const) {
    const r = await send({ ...direct(s), headers: bearer(access) });
    t.equal(r.status, 401, `${s} called directly (no Envoy): 401`);
    t.match(challenge(r), new RegExp(`realm="${s}".*error="invalid_token"`), `${s}: ${challenge(r)}`);
  }
  const g = await grpcDirect(access);
  t.equal(g.code, grpc.status.UNAUTHENTICATED, `profile gRPC called directly: UNAUTHENTICATED (${g.details})`);
});

t.test('an expired token is rejected everywhere', async (t) => {
  const now = Math.floor(Date.now() / 1000);
  const valid = await e2e.mint();
  const expired = await e2e.mint({ claims: { iat: now - 400, exp: now - 100 } });
  // Control: the same key and claims, not expired, pass everywhere.
  t.equal((await send({ base: e2e.edge, path: '/api/orders/ord-1001', headers: bearer(valid) })).status, 200, 'control: an unexpired minted token passes the chain');
  const atEdge = await send({ base: e2e.edge, path: '/api/orders/ord-1001', headers: bearer(expired) });
  t.equal(atEdge.status, 401, 'the edge: 401');
  t.match(challenge(atEdge), /error="invalid_token"/, `the edge: ${challenge(atEdge)}`);
  for (const s of ['orders', 'inventory', 'profile'] as const) {
    const r = await send({ ...direct(s), headers: bearer(expired) });
    t.equal(r.status, 401, `${s} called directly: 401`);
    t.match(challenge(r), /error="invalid_token"/, `${s}: ${challenge(r)}`);
  }
  t.equal((await grpcDirect(expired)).code, grpc.status.UNAUTHENTICATED, 'profile gRPC called directly: UNAUTHENTICATED');
});

t.test('the auth service stopped: issued tokens keep working through the whole chain; login answers 503', async (t) => {
  const used = await e2e.login(e2e.users.alice);
  const unused = await e2e.login(e2e.users.admin); // issued, never shown to a verifier before the outage
  t.equal((await send({ base: e2e.edge, path: '/api/orders/ord-1001', headers: bearer(used.access) })).status, 200, 'before the outage: 200');

  await e2e.stack.stopPart('auth');
  try {
    for (const [name, token] of [
      ['a token already used', used.access],
      ['a token never used before', unused.access],
    ] as const) {
      const r = await send({ base: e2e.edge, path: '/api/orders/ord-1001', headers: bearer(token) });
      t.equal(r.status, 200, `auth down, ${name}: 200 through edge -> orders -> inventory -> profile`);
      t.equal(hopsOf(r).length, 3, `auth down, ${name}: all three hops verified it`);
    }
    const login = await send({
      base: e2e.edge,
      method: 'POST',
      path: '/auth/login',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username: e2e.users.alice.username, password: e2e.users.alice.password }),
    });
    t.equal(login.status, 503, 'login: 503');
    t.match(String(login.headers['content-type']), /^application\/json/, 'a JSON answer from the edge');
    t.equal(login.json?.['error'], 'temporarily_unavailable', 'error: temporarily_unavailable (RFC 6749 code)');
    t.equal(login.json?.['upstream'], 'auth', 'naming the auth upstream');
    t.equal(login.headers['retry-after'], '1', 'retry-after: 1');
    t.comment(`login while the auth service is down: ${login.status} ${String(login.headers['content-type'])} ${login.body.trim().slice(0, 200)}`);
  } finally {
    await e2e.stack.startPart('auth');
  }
  const again = await e2e.login(e2e.users.alice);
  t.ok(again.access.length > 0, 'auth back: login works again');
});
