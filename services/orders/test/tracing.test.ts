/**
 * OpenTelemetry spans across the chain orders -> inventory (HTTP) -> profile (gRPC), in one
 * process without Envoy, with real Redis revocation and real JWKS fetches. Spans go to the SDK's
 * InMemorySpanExporter (installTestTracing): the same instrumented path as with OTLP.
 */
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { SpanKind } from '@opentelemetry/api';
import { createMeshClient } from '@jwt-mesh/fastify-auth';
import type { HopInfo } from '@jwt-mesh/runtime/fastify';
import { readyTestStack, startTestIssuer, uniquePrefix } from '@jwt-mesh/runtime/testing';
import { installTestTracing, type ReadableSpan } from '@jwt-mesh/tracing/testing';
import t, { type Test } from 'tap';
import { buildApp as buildOrders } from '../src/app.js';
import { READ_SCOPES, startChain } from './helpers/chain.js';

const tracing = installTestTracing('orders-test');
const chain = await startChain('tracing');
t.teardown(async () => {
  await chain.close();
  await tracing.uninstall();
});
t.beforeEach(() => tracing.reset());

const TRACE_ID = '0af7651916cd43dd8448eb211c80319c';
const EDGE_SPAN = 'b7ad6b7169203331';

/**
 * Waits until `count` spans named `name` have ended: a SERVER span ends in Fastify's onResponse
 * hook, after the answer was written, so the caller can have it first. Not a timing assertion:
 * the test then checks what the spans are.
 */
async function spansEnded(name: string, count = 1): Promise<void> {
  for (let i = 0; i < 500 && tracing.named(name).length < count; i++) await new Promise((r) => setTimeout(r, 10));
}

/** The one span named `name` whose parent is `parent`. */
function childOf(t: Test, parent: ReadableSpan, name: string, kind?: SpanKind): ReadableSpan {
  const found = tracing
    .named(name)
    .filter((s) => s.parentSpanContext?.spanId === parent.spanContext().spanId && (kind === undefined || s.kind === kind));
  t.equal(found.length, 1, `one ${name} span under ${parent.name}`);
  return found[0]!;
}

t.test('the span tree follows the call chain, each hop a child of the previous CLIENT span', async (t) => {
  const token = await chain.issuer.mint({ sub: 'demo-alice', scope: READ_SCOPES });
  const res = await fetch(`${chain.orders.url}/api/orders/ord-1001`, {
    headers: { authorization: `Bearer ${token}`, traceparent: `00-${TRACE_ID}-${EDGE_SPAN}-01` },
  });
  t.equal(res.status, 200);
  const { hops } = (await res.json()) as { hops: HopInfo[] };

  await spansEnded('GET /api/orders/:id');
  await spansEnded('GET /api/inventory/:sku', 2); // inventory's SERVER span and orders' CLIENT span
  const orders = tracing.named('GET /api/orders/:id');
  t.equal(orders.length, 1, 'one SERVER span at orders');
  const server = orders[0]!;
  t.equal(server.kind, SpanKind.SERVER);
  t.equal(server.spanContext().traceId, TRACE_ID);
  t.equal(server.parentSpanContext?.spanId, EDGE_SPAN, 'orders continues the incoming traceparent');
  t.match(server.attributes, { 'http.request.method': 'GET', 'http.route': '/api/orders/:id', 'url.path': '/api/orders/ord-1001', 'http.response.status_code': 200 });
  t.equal(childOf(t, childOf(t, server, 'authenticate'), 'jwt.verify').attributes['jwt_mesh.outcome'], 'ok');

  const toInventory = childOf(t, server, 'GET /api/inventory/:sku', SpanKind.CLIENT);
  t.match(toInventory.attributes, { 'http.request.method': 'GET', 'server.address': '127.0.0.1', 'url.path': '/api/inventory/sku-widget', 'http.response.status_code': 200 });
  const inventory = childOf(t, toInventory, 'GET /api/inventory/:sku', SpanKind.SERVER);
  t.equal(inventory.parentSpanContext?.isRemote, true, "inventory's parent came over the wire (traceparent)");
  childOf(t, inventory, 'authenticate');

  const toProfile = childOf(t, inventory, 'jwtmesh.profile.v1.ProfileService/GetProfile', SpanKind.CLIENT);
  t.match(toProfile.attributes, { 'rpc.system.name': 'grpc', 'rpc.method': 'jwtmesh.profile.v1.ProfileService/GetProfile', 'rpc.status_code': 'OK', 'server.address': '127.0.0.1' });
  const profile = childOf(t, toProfile, 'jwtmesh.profile.v1.ProfileService/GetProfile', SpanKind.SERVER);
  t.match(profile.attributes, { 'rpc.system': 'grpc', 'rpc.service': 'jwtmesh.profile.v1.ProfileService', 'rpc.status_code': 'OK' });
  childOf(t, profile, 'authenticate');

  t.equal(new Set(tracing.spans().map((s) => s.spanContext().traceId)).size, 1, 'one trace');
  t.same(hops.map((h) => h.traceId), [TRACE_ID, TRACE_ID, TRACE_ID], 'the hop reports name the exported trace');
});

t.test('no incoming traceparent: orders starts the trace, the hop reports name it', async (t) => {
  const token = await chain.issuer.mint({ scope: READ_SCOPES });
  const res = await fetch(`${chain.orders.url}/api/orders/ord-1001`, { headers: { authorization: `Bearer ${token}` } });
  t.equal(res.status, 200);
  const { hops } = (await res.json()) as { hops: HopInfo[] };
  await spansEnded('GET /api/orders/:id');
  await spansEnded('GET /api/inventory/:sku', 2);
  const server = tracing.named('GET /api/orders/:id')[0]!;
  t.equal(server.parentSpanContext, undefined, 'a root span');
  t.same(hops.map((h) => h.traceId), Array(3).fill(server.spanContext().traceId));
});

t.test('a 403 from profile: CLIENT spans carry the status, profile SERVER span is not an error', async (t) => {
  const token = await chain.issuer.mint({ scope: 'orders:read inventory:read' });
  const res = await fetch(`${chain.orders.url}/api/orders/ord-1001`, { headers: { authorization: `Bearer ${token}`, traceparent: `00-${TRACE_ID}-${EDGE_SPAN}-01` } });
  t.equal(res.status, 403);
  await spansEnded('GET /api/orders/:id');
  await spansEnded('GET /api/inventory/:sku', 2);
  const [profile] = tracing.named('jwtmesh.profile.v1.ProfileService/GetProfile').filter((s) => s.kind === SpanKind.SERVER);
  t.equal(profile?.attributes['rpc.status_code'], 'PERMISSION_DENIED');
  t.equal(profile?.status.code, 0, 'a deny is not a server error (status UNSET)');
  const [grpcClient] = tracing.named('jwtmesh.profile.v1.ProfileService/GetProfile').filter((s) => s.kind === SpanKind.CLIENT);
  t.equal(grpcClient?.attributes['rpc.status_code'], 'PERMISSION_DENIED');
  const [httpClient] = tracing.named('GET /api/inventory/:sku').filter((s) => s.kind === SpanKind.CLIENT);
  t.match(httpClient?.attributes, { 'http.response.status_code': 403, 'error.type': '403' });
  const [authz] = tracing.named('policy.authorize').filter((s) => s.attributes['jwt_mesh.policy.decision'] === 'deny');
  t.equal(authz?.attributes['jwt_mesh.outcome'], 'insufficient_scope');
});

t.test("the outgoing traceparent header names the CLIENT span, not the SERVER span", async (t) => {
  // orders in front of a plain HTTP server that records what it receives.
  const seen: IncomingHttpHeaders[] = [];
  const downstream = createServer((req, res) => {
    seen.push(req.headers);
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ name: 'Widget', available: 1, reserved: 0, hops: [] }));
  });
  await new Promise<void>((r) => downstream.listen(0, '127.0.0.1', r));
  const issuer = await startTestIssuer();
  const stack = await readyTestStack(issuer, uniquePrefix('tracing-capture'));
  const client = createMeshClient({ baseUrl: `http://127.0.0.1:${(downstream.address() as AddressInfo).port}` });
  const app = await buildOrders({ authenticator: stack.authenticator, readiness: stack.readiness, inventory: client });
  t.teardown(async () => {
    await app.close();
    await client.close();
    await stack.close();
    await issuer.close();
    await new Promise<void>((r) => downstream.close(() => r()));
  });

  const token = await issuer.mint({ scope: 'orders:read' });
  const res = await app.inject({ url: '/api/orders/ord-1001', headers: { authorization: `Bearer ${token}`, traceparent: `00-${TRACE_ID}-${EDGE_SPAN}-01`, tracestate: 'edge=1' } });
  t.equal(res.statusCode, 200);
  await spansEnded('GET /api/orders/:id');
  const server = tracing.named('GET /api/orders/:id')[0]!;
  const clientSpan = childOf(t, server, 'GET /api/inventory/:sku', SpanKind.CLIENT);
  t.equal(seen.length, 1);
  t.equal(seen[0]!['traceparent'], `00-${TRACE_ID}-${clientSpan.spanContext().spanId}-01`, 'traceparent = trace id, the CLIENT span id, sampled');
  t.not(clientSpan.spanContext().spanId, server.spanContext().spanId);
  t.equal(seen[0]!['tracestate'], 'edge=1', 'tracestate forwarded unchanged');
  t.equal(seen[0]!['authorization'], `Bearer ${token}`, 'the token still travels');
});

t.test('no span holds the token or the Authorization header', async (t) => {
  const token = await chain.issuer.mint({ scope: READ_SCOPES });
  const bad = `${token.slice(0, -6)}AAAAAA`;
  for (const tk of [token, token, bad]) {
    await fetch(`${chain.orders.url}/api/orders/ord-1001`, { headers: { authorization: `Bearer ${tk}`, traceparent: `00-${TRACE_ID}-${EDGE_SPAN}-01` } });
  }
  await spansEnded('GET /api/orders/:id', 3);
  const dump = tracing.dump();
  t.ok(tracing.spans().length > 10, 'spans were recorded');
  for (const tk of [token, bad]) {
    t.notOk(dump.includes(tk), 'no token');
    t.notOk(dump.includes(tk.split('.')[2]!), 'no signature part');
  }
  t.notOk(dump.includes('Bearer'), 'no Authorization value');
});
