/**
 * inventory with profile behind it over gRPC (wired directly): the gRPC hop's answers become
 * HTTP answers through the core's table; a broken next hop is a 502, never a 500 or an allow.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { buildGrpcServer } from '@jwt-mesh/profile';
import { loadProfileProto } from '@jwt-mesh/profile/proto';
import { createLogger, createMetrics } from '@jwt-mesh/runtime';
import type { HopInfo } from '@jwt-mesh/runtime/fastify';
import { readyTestStack, startTestIssuer, uniquePrefix } from '@jwt-mesh/runtime/testing';
import t from 'tap';
import { buildApp, createProfileClient } from '../src/app.js';

const issuer = await startTestIssuer();
const prefix = uniquePrefix('inventory');
const pStack = await readyTestStack(issuer, prefix);
const iStack = await readyTestStack(issuer, prefix);
const logger = createLogger({ service: 'test', level: 'silent' });
const { server } = buildGrpcServer({ authenticator: pStack.authenticator, readiness: pStack.readiness, logger, metrics: createMetrics('profile', { defaultMetrics: false }) });
const grpcPort = await new Promise<number>((resolve, reject) =>
  server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
);
const Ctor = loadProfileProto().jwtmesh.profile.v1.ProfileService;
const profile = createProfileClient(Ctor, `127.0.0.1:${grpcPort}`);
const app = await buildApp({ authenticator: iStack.authenticator, readiness: iStack.readiness, profile, logger, metrics: createMetrics('inventory', { defaultMetrics: false }) });

// A profile target nobody listens on.
const closed = createServer();
await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
const deadPort = (closed.address() as AddressInfo).port;
await new Promise<void>((r) => closed.close(() => r()));
const deadProfile = createProfileClient(Ctor, `127.0.0.1:${deadPort}`);
const appDead = await buildApp({
  authenticator: iStack.authenticator,
  readiness: iStack.readiness,
  profile: deadProfile,
  profileTimeoutMs: 2000,
  logger,
  metrics: createMetrics('inventory', { defaultMetrics: false }),
});

t.teardown(async () => {
  await app.close();
  await appDead.close();
  profile.close();
  deadProfile.close();
  await new Promise<void>((r) => server.tryShutdown(() => r()));
  await pStack.close();
  await iStack.close();
  await issuer.close();
});

const auth = async (scope: string, sub = 'demo-bob') => ({ authorization: `Bearer ${await issuer.mint({ sub, scope })}` });

t.test('GET /api/inventory/:sku: stock, the profile from the gRPC hop, and both hops', async (t) => {
  const res = await app.inject({
    method: 'GET',
    url: '/api/inventory/sku-widget',
    headers: { ...(await auth('inventory:read profile:read')), traceparent: '00-33333333333333333333333333333333-4444444444444444-00' },
  });
  t.equal(res.statusCode, 200);
  const body = res.json() as { sku: string; available: number; profile: { subject: string; tier: string }; hops: HopInfo[] };
  t.equal(body.sku, 'sku-widget');
  t.equal(body.profile.subject, 'demo-bob');
  t.same(body.hops.map((h) => `${h.service}/${h.transport}/${h.subject}/${h.traceId}`), [
    'inventory/http/demo-bob/33333333333333333333333333333333',
    'profile/grpc/demo-bob/33333333333333333333333333333333',
  ]);
});

t.test('PERMISSION_DENIED at profile becomes 403 insufficient_scope with the profile challenge', async (t) => {
  const res = await app.inject({ method: 'GET', url: '/api/inventory/sku-widget', headers: await auth('inventory:read') });
  t.equal(res.statusCode, 403);
  t.match(res.headers['www-authenticate'], /^Bearer realm="profile", error="insufficient_scope"/);
  t.equal(res.json().error, 'insufficient_scope');
});

t.test('an unreachable profile is 502 bad_gateway', async (t) => {
  const res = await appDead.inject({ method: 'GET', url: '/api/inventory/sku-widget', headers: await auth('inventory:read profile:read') });
  t.equal(res.statusCode, 502);
  t.equal(res.json().error, 'bad_gateway');
});

t.test('reservations: scope, validation, stock', async (t) => {
  const writer = await auth('inventory:write');
  const ok = await app.inject({ method: 'POST', url: '/api/inventory/reservations', headers: writer, payload: { sku: 'sku-gadget', quantity: 5, orderId: 'ord-x1' } });
  t.equal(ok.statusCode, 201);
  t.equal(ok.json().reservation.owner, 'demo-bob');
  const stock = await app.inject({ method: 'GET', url: '/api/inventory/sku-gadget', headers: await auth('inventory:read profile:read') });
  t.equal(stock.json().reserved, 5);
  t.equal(stock.json().available, 20);
  const tooMany = await app.inject({ method: 'POST', url: '/api/inventory/reservations', headers: writer, payload: { sku: 'sku-gadget', quantity: 21 } });
  t.equal(tooMany.statusCode, 409);
  const bad = await app.inject({ method: 'POST', url: '/api/inventory/reservations', headers: writer, payload: { sku: 'sku-gadget', quantity: -1 } });
  t.equal(bad.statusCode, 400);
  const reader = await app.inject({ method: 'POST', url: '/api/inventory/reservations', headers: await auth('inventory:read'), payload: { sku: 'sku-gadget', quantity: 1 } });
  t.equal(reader.statusCode, 403);
  const unknown = await app.inject({ method: 'GET', url: '/api/inventory/sku-none', headers: await auth('inventory:read profile:read') });
  t.equal(unknown.statusCode, 404);
});
