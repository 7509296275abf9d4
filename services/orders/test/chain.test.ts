/**
 * The chain orders -> inventory (HTTP) -> profile (gRPC), wired directly without Envoy, each
 * service verifying the same token itself.
 */
import { randomUUID } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import type { HopInfo } from '@jwt-mesh/runtime/fastify';
import t from 'tap';
import { callProfile, READ_SCOPES, startChain } from './helpers/chain.js';

const chain = await startChain('chain');
t.teardown(() => chain.close());

const trace = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';

async function getOrder(token: string, extra: Record<string, string> = {}, id = 'ord-1001'): Promise<Response> {
  return fetch(`${chain.orders.url}/api/orders/${id}`, { headers: { authorization: `Bearer ${token}`, ...extra } });
}

t.test('each hop saw the same subject, session, token, trace id and request id', async (t) => {
  const sid = `sid-${randomUUID()}`;
  const jti = randomUUID();
  const token = await chain.issuer.mint({ sub: 'demo-alice', scope: READ_SCOPES, sid, jti });
  const res = await getOrder(token, { traceparent: trace, 'x-request-id': 'req-chain-1' });
  t.equal(res.status, 200);
  t.equal(res.headers.get('x-request-id'), 'req-chain-1');
  const body = (await res.json()) as { order: { id: string; stock: { available: number } }; hops: HopInfo[] };
  t.equal(body.order.id, 'ord-1001');
  t.equal(typeof body.order.stock.available, 'number');
  t.same(body.hops.map((h) => [h.service, h.transport]), [['orders', 'http'], ['inventory', 'http'], ['profile', 'grpc']]);
  for (const hop of body.hops) {
    t.equal(hop.subject, 'demo-alice', `${hop.service} subject`);
    t.equal(hop.sid, sid, `${hop.service} sid`);
    t.equal(hop.jti, jti, `${hop.service} jti`);
    t.equal(hop.traceId, '0af7651916cd43dd8448eb211c80319c', `${hop.service} trace id`);
    t.equal(hop.requestId, 'req-chain-1', `${hop.service} request id`);
  }
});

t.test('without an incoming traceparent orders starts a trace and every hop continues it', async (t) => {
  const token = await chain.issuer.mint({ scope: READ_SCOPES });
  const res = await getOrder(token);
  t.equal(res.status, 200);
  const { hops } = (await res.json()) as { hops: HopInfo[] };
  t.equal(hops.length, 3);
  t.match(hops[0]!.traceId, /^[0-9a-f]{32}$/);
  t.equal(new Set(hops.map((h) => h.traceId)).size, 1);
  t.equal(new Set(hops.map((h) => h.requestId)).size, 1);
});

t.test('a token lacking profile:read fails at profile with 403, and that 403 reaches the client through orders', async (t) => {
  const token = await chain.issuer.mint({ scope: 'orders:read inventory:read' });
  const res = await getOrder(token);
  t.equal(res.status, 403);
  const challenge = res.headers.get('www-authenticate') ?? '';
  t.match(challenge, /realm="profile"/, 'the challenge is the one profile sent');
  t.match(challenge, /error="insufficient_scope"/);
  t.match(challenge, /scope="profile:read"/);
  t.same(await res.json(), { error: 'insufficient_scope', error_description: 'the token lacks a scope or role this route requires' });
});

t.test('a token lacking inventory:read fails at inventory with 403 (realm inventory)', async (t) => {
  const token = await chain.issuer.mint({ scope: 'orders:read profile:read' });
  const res = await getOrder(token);
  t.equal(res.status, 403);
  t.match(res.headers.get('www-authenticate') ?? '', /realm="inventory".*scope="inventory:read"/);
});

t.test('a revoked token is rejected by each service called directly, over HTTP and gRPC', async (t) => {
  const jti = randomUUID();
  const token = await chain.issuer.mint({ scope: READ_SCOPES, jti });
  t.equal((await getOrder(token)).status, 200, 'works before revocation');
  await chain.revocation.revoke({ kind: 'jti', id: jti }, Math.floor(Date.now() / 1000) + 300);

  const auth = { authorization: `Bearer ${token}` };
  for (const url of [`${chain.orders.url}/api/orders/ord-1001`, `${chain.inventory.url}/api/inventory/sku-widget`, `${chain.profile.url}/api/profile/me`]) {
    const res = await fetch(url, { headers: auth });
    t.equal(res.status, 401, url);
    t.same(await res.json(), { error: 'invalid_token', error_description: 'the token has been revoked' });
  }
  const g = await callProfile(chain.profileClient, auth);
  t.equal(g.code, grpc.status.UNAUTHENTICATED);
  t.equal(g.trailers?.get('auth-error-code')[0], 'token_revoked');
  t.match(String(g.trailers?.get('www-authenticate')[0]), /error="invalid_token"/);
});

t.test('a revoked session (sid) is rejected through the whole chain', async (t) => {
  const sid = `sid-${randomUUID()}`;
  const token = await chain.issuer.mint({ scope: READ_SCOPES, sid });
  await chain.revocation.revoke({ kind: 'sid', id: sid }, Math.floor(Date.now() / 1000) + 300);
  t.equal((await getOrder(token)).status, 401);
});

t.test('an expired token is rejected everywhere', async (t) => {
  const token = await chain.issuer.mint({ scope: READ_SCOPES, iatOffsetSec: -900, ttlSec: 120 });
  const auth = { authorization: `Bearer ${token}` };
  for (const url of [`${chain.orders.url}/api/orders/ord-1001`, `${chain.inventory.url}/api/inventory/sku-widget`, `${chain.profile.url}/api/profile/me`]) {
    const res = await fetch(url, { headers: auth });
    t.equal(res.status, 401, url);
    t.match(res.headers.get('www-authenticate') ?? '', /error="invalid_token", error_description="the token has expired"/);
  }
  const g = await callProfile(chain.profileClient, auth);
  t.equal(g.code, grpc.status.UNAUTHENTICATED);
  t.equal(g.trailers?.get('auth-error-code')[0], 'token_expired');
});

t.test('identity headers are ignored at every hop', async (t) => {
  const token = await chain.issuer.mint({ sub: 'demo-bob', scope: READ_SCOPES });
  const res = await getOrder(token, { 'x-jwt-mesh-sub': 'mallory', 'x-jwt-mesh-scope': 'admin', 'x-jwt-mesh-roles': 'admin' });
  t.equal(res.status, 200);
  const { hops } = (await res.json()) as { hops: HopInfo[] };
  t.same(hops.map((h) => h.subject), ['demo-bob', 'demo-bob', 'demo-bob']);
  // Identity headers without a token authenticate nothing, on any hop or transport.
  const forged = { 'x-jwt-mesh-sub': 'demo-alice' };
  t.equal((await fetch(`${chain.inventory.url}/api/inventory/sku-widget`, { headers: forged })).status, 401);
  t.equal((await callProfile(chain.profileClient, forged)).code, grpc.status.UNAUTHENTICATED);
});

t.test('two credentials: 400 at orders (two headers), INVALID_ARGUMENT at profile (joined metadata value)', async (t) => {
  const a = await chain.issuer.mint({ scope: READ_SCOPES });
  const b = await chain.issuer.mint({ scope: READ_SCOPES });
  const { request } = await import('undici');
  const res = await request(`${chain.orders.url}/api/orders/ord-1001`, { headers: ['authorization', `Bearer ${a}`, 'authorization', `Bearer ${b}`] });
  t.equal(res.statusCode, 400);
  await res.body.dump();
  // HTTP/2 carries `authorization` once (Node refuses a second value), so two credentials reach
  // a gRPC server joined into one value.
  const g = await callProfile(chain.profileClient, { authorization: `Bearer ${a}, Bearer ${b}` });
  t.equal(g.code, grpc.status.INVALID_ARGUMENT);
  t.equal(g.trailers?.get('auth-error-code')[0], 'credentials_multiple');
});

t.test('POST /api/orders: validates the body, reserves stock at inventory, passes errors back', async (t) => {
  const writer = await chain.issuer.mint({ sub: 'demo-carol', scope: 'orders:read orders:write inventory:read inventory:write profile:read' });
  const post = (body: unknown, token = writer) =>
    fetch(`${chain.orders.url}/api/orders`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });

  for (const bad of [{}, { sku: 'sku-widget' }, { sku: 'sku-widget', quantity: 0 }, { sku: 'WIDGET', quantity: 1 }, { sku: 'sku-widget', quantity: 1, extra: true }, [1, 2]]) {
    const res = await post(bad);
    t.equal(res.status, 400, JSON.stringify(bad));
    t.equal(((await res.json()) as { error: string }).error, 'invalid_request');
  }
  const notJson = await fetch(`${chain.orders.url}/api/orders`, { method: 'POST', headers: { authorization: `Bearer ${writer}`, 'content-type': 'application/json' }, body: '{nope' });
  t.equal(notJson.status, 400);

  const created = await post({ sku: 'sku-widget', quantity: 3 });
  t.equal(created.status, 201);
  const body = (await created.json()) as { order: { id: string; owner: string; status: string }; reservation: { quantity: number }; hops: HopInfo[] };
  t.equal(body.order.owner, 'demo-carol');
  t.equal(body.order.status, 'reserved');
  t.equal(body.reservation.quantity, 3);
  t.same(body.hops.map((h) => h.service), ['orders', 'inventory']);
  t.equal(created.headers.get('location'), `/api/orders/${body.order.id}`);

  const read = await fetch(`${chain.orders.url}/api/orders/${body.order.id}`, { headers: { authorization: `Bearer ${writer}` } });
  t.equal(read.status, 200);
  const other = await chain.issuer.mint({ sub: 'demo-dave', scope: READ_SCOPES });
  const hidden = await fetch(`${chain.orders.url}/api/orders/${body.order.id}`, { headers: { authorization: `Bearer ${other}` } });
  t.equal(hidden.status, 404, "another user's order is not found");

  const soldOut = await post({ sku: 'sku-gizmo', quantity: 1 });
  t.equal(soldOut.status, 409);
  t.equal(((await soldOut.json()) as { error: string }).error, 'insufficient_stock');

  const unknown = await post({ sku: 'sku-nothing', quantity: 1 });
  t.equal(unknown.status, 404);

  const noInventoryWrite = await chain.issuer.mint({ scope: 'orders:write' });
  const denied = await post({ sku: 'sku-widget', quantity: 1 }, noInventoryWrite);
  t.equal(denied.status, 403);
  t.match(denied.headers.get('www-authenticate') ?? '', /realm="inventory".*scope="inventory:write"/);

  const noOrdersWrite = await chain.issuer.mint({ scope: 'orders:read inventory:write' });
  t.equal((await post({ sku: 'sku-widget', quantity: 1 }, noOrdersWrite)).status, 403);
});

t.test('an unknown order is 404, a malformed id 400', async (t) => {
  const token = await chain.issuer.mint({ scope: READ_SCOPES });
  t.equal((await getOrder(token, {}, 'ord-9999')).status, 404);
  t.equal((await getOrder(token, {}, 'DROP%20TABLE')).status, 400);
});

t.test('health, readiness and metrics answer without a token', async (t) => {
  for (const svc of [chain.orders, chain.inventory, chain.profile]) {
    const h = await fetch(`${svc.url}/healthz`);
    t.equal(h.status, 200);
    const r = await fetch(`${svc.url}/readyz`);
    t.equal(r.status, 200);
    t.same(((await r.json()) as { checks: unknown }).checks, { jwks: true, revocation: true });
    const m = await fetch(`${svc.url}/metrics`);
    t.equal(m.status, 200);
    t.match(m.headers.get('content-type') ?? '', /text\/plain/);
  }
  const text = await (await fetch(`${chain.orders.url}/metrics`)).text();
  t.match(text, /http_requests_total\{[^}]*route="\/api\/orders\/:id"[^}]*status="200"/);
  t.match(text, /jwt_mesh_auth_decisions_total\{[^}]*outcome="allow"/);
  t.match(text, /jwt_mesh_auth_decisions_total\{[^}]*outcome="token_revoked"/);
  t.match(text, /jwt_mesh_auth_decisions_total\{[^}]*outcome="token_expired"/);
  t.match(text, /http_request_duration_seconds_bucket\{/);
  t.match(text, /jwt_mesh_downstream_requests_total\{[^}]*target="inventory"/);
  const ptext = await (await fetch(`${chain.profile.url}/metrics`)).text();
  t.match(ptext, /jwt_mesh_auth_decisions_total\{[^}]*transport="grpc"[^}]*outcome="insufficient_scope"/);
  t.match(ptext, /grpc_server_handled_total\{[^}]*code="PERMISSION_DENIED"/);
});

t.test('logs carry the request but never the token or cookies', async (t) => {
  const token = await chain.issuer.mint({ scope: READ_SCOPES });
  const res = await fetch(`${chain.orders.url}/api/orders/ord-1001?access_token=leak-me`, {
    headers: { authorization: `Bearer ${token}`, cookie: 'session=cookie-secret', 'x-request-id': 'req-logs-1' },
  });
  t.equal(res.status, 200);
  await res.text();
  for (const svc of [chain.orders, chain.inventory, chain.profile]) {
    const text = svc.logs.text();
    t.notOk(text.includes(token), 'the token is not logged');
    t.notOk(text.includes(token.split('.')[2]!), 'not even its signature');
  }
  const text = chain.orders.logs.text();
  t.notOk(text.includes('cookie-secret'), 'the cookie is not logged');
  t.notOk(text.includes('leak-me'), 'a token-like query value is not logged');
  const line = chain.orders.logs.lines().find((l) => l['reqId'] === 'req-logs-1' && l['req'] !== undefined) as { req: { headers: Record<string, string>; url: string } } | undefined;
  t.ok(line, 'the request was logged with its x-request-id');
  t.equal(line!.req.headers['authorization'], '[REDACTED]');
  t.equal(line!.req.headers['cookie'], '[REDACTED]');
  t.match(line!.req.url, /access_token=\[REDACTED\]/);
});
