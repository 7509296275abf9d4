/**
 * A real edge Envoy, rendered by the generator (local target, real dev certificates), in front of
 * a real orders sidecar (mTLS) with a recording upstream, a real auth sidecar (mTLS) with a
 * recording auth upstream, and two
 * stand-in ext_authz replicas (see ./standin-authz.ts; the real authz-service is driven through the
 * same config by the end-to-end suite). It checks Envoy's half of the contract: what reaches
 * ext_authz and the upstream, and that every failure fails closed.
 */
import { readFileSync } from 'node:fs';
import { connect as h2connect } from 'node:http2';
import { startEnvoy, type EnvoyProcess } from '@jwt-mesh/testkit';
import t, { type Test } from 'tap';
import { renderConfigs } from '../src/render.js';
import { IDENTITY_HEADERS, defaultTopology, spiffeId } from '../src/topology.js';
import { recordingUpstream, send, tempCerts, type Recorded } from './helpers.js';
import { startStandinAuthz, type SeenCheck, type StandinAuthz } from './standin-authz.js';

const topology = defaultTopology();

t.test('edge Envoy', async (t) => {
  const rig = await startEdgeRig(t);
  forwardingTests(t, rig);
  rejectionTests(t, rig);
  routeTests(t, rig);
  // Last: it stops the authz replicas.
  authzFailureTests(t, rig);
});

/** The running rig of this file: see the header. */
interface EdgeRig {
  /** The two stand-in ext_authz replicas, in the order the edge's `authz` cluster lists them. */
  replicas: StandinAuthz[];
  /** How many CheckRequests the replicas have seen so far, together. */
  checks: () => number;
  /** The latest CheckRequest either replica saw. */
  lastCheck: () => SeenCheck | undefined;
  /** The recording orders app behind the orders sidecar. */
  orders: Upstream;
  /** The recording auth-service behind the auth sidecar. */
  auth: Upstream;
  authSidecar: EnvoyProcess;
  edge: EnvoyProcess;
  /** Base URLs of the edge listeners `edge_http` and `edge_https`. */
  http: string;
  https: string;
  /** The dev CA certificate (PEM), to trust the edge's HTTPS certificate. */
  ca: Buffer;
}

type Upstream = Awaited<ReturnType<typeof recordingUpstream>>;

/**
 * Starts the rig (dev certificates, two stand-in authz replicas, the orders and auth sidecars
 * with their recording upstreams, the edge on free ports); everything stops at `t`'s teardown.
 */
async function startEdgeRig(t: Test): Promise<EdgeRig> {
  const certs = await tempCerts(t);
  const authzCerts = { ca: certs.ca.cert, ...(certs.workloads.authz as { cert: string; key: string }) };
  const allChecks: SeenCheck[] = [];
  const replicas: StandinAuthz[] = [await startStandinAuthz(authzCerts, allChecks), await startStandinAuthz(authzCerts, allChecks)];
  t.teardown(async () => {
    for (const r of replicas) await r.stop();
  });
  const checks = () => allChecks.length;
  const lastCheck = () => allChecks[allChecks.length - 1];
  const orders = await recordingUpstream(t, 'orders');
  const auth = await recordingUpstream(t, 'auth');

  const sidecarFiles = renderConfigs(topology, 'local', {
    certDir: certs.dir,
    ports: {
      services: {
        orders: { app: orders.port, inbound: 0, outbound: 0, admin: 0 },
        auth: { app: auth.port, inbound: 0, outbound: 0, admin: 0 },
      },
    },
  });
  const sidecar = await startEnvoy({ config: sidecarFiles['sidecar-orders.yaml'] as string, name: 'edge-test-sidecar-orders', teardown: t });
  const ordersInbound = (await sidecar.listenerAddress('inbound')).port;
  const authSidecar = await startEnvoy({ config: sidecarFiles['sidecar-auth.yaml'] as string, name: 'edge-test-sidecar-auth', teardown: t });
  const authInbound = (await authSidecar.listenerAddress('inbound')).port;

  const edgeFiles = renderConfigs(topology, 'local', {
    certDir: certs.dir,
    ports: {
      edge: { http: 0, https: 0, admin: 0 },
      authz: replicas.map((r) => ({ host: '127.0.0.1', port: r.port })),
      services: { orders: { inbound: ordersInbound }, auth: { inbound: authInbound } },
    },
  });
  const edge: EnvoyProcess = await startEnvoy({ config: edgeFiles['edge.yaml'] as string, name: 'edge', teardown: t });
  const http = `http://127.0.0.1:${(await edge.listenerAddress('edge_http')).port}`;
  const https = `https://localhost:${(await edge.listenerAddress('edge_https')).port}`;
  const ca = readFileSync(certs.ca.cert);
  return { replicas, checks, lastCheck, orders, auth, authSidecar, edge, http, https, ca };
}

/** What an allowed request carries upstream, over HTTP, HTTPS and HTTP/2. */
function forwardingTests(t: Test, { orders, lastCheck, http, https, ca }: EdgeRig): void {
  t.test('a valid token: 200; the upstream got the same Authorization, the verified identity, the trace headers', async (t) => {
    const before = orders.seen.length;
    const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    const res = await send({
      url: `${http}/api/orders/7?expand=1`,
      headers: {
        authorization: 'Bearer good',
        'x-jwt-mesh-sub': 'attacker',
        'x-jwt-mesh-roles': 'admin',
        'x-jwt-mesh-scope': 'orders:write',
        'x-jwt-mesh-sid': 's',
        'x-jwt-mesh-jti': 'j',
        'x-jwt-mesh-client-id': 'c',
        traceparent,
        tracestate: 'congo=t61rcWkgMzE',
        'x-request-id': 'client-request-1',
      },
    });
    t.equal(res.status, 200);
    t.equal(orders.seen.length, before + 1);
    const seen = (orders.seen[orders.seen.length - 1] as Recorded).headers;
    t.equal(orders.seen[orders.seen.length - 1]?.url, '/api/orders/7?expand=1');
    t.equal(seen.authorization, 'Bearer good', 'the same JWT travels on');
    t.equal(seen['x-jwt-mesh-sub'], 'user-1', 'the client-sent subject was replaced by the verified one');
    for (const h of IDENTITY_HEADERS.filter((x) => x !== 'x-jwt-mesh-sub')) t.equal(seen[h], undefined, `client-sent ${h} removed`);
    t.equal(seen.traceparent, traceparent, 'traceparent unchanged');
    t.equal(seen.tracestate, 'congo=t61rcWkgMzE', 'tracestate unchanged');
    t.equal(seen['x-request-id'], 'client-request-1', 'x-request-id unchanged');
    t.equal(res.headers['x-request-id'], 'client-request-1', 'and echoed to the client');
    const check = lastCheck();
    t.equal(check?.path, '/api/orders/7?expand=1');
    t.equal(check?.method, 'GET');
    t.same(
      Object.keys(check?.headers ?? {}).filter((k) => !k.startsWith(':')),
      ['authorization'],
      'only Authorization went to ext_authz (no identity headers, no trace headers)',
    );
  });

  t.test('a request without x-request-id gets one generated', async (t) => {
    const res = await send({ url: `${http}/api/orders/8`, headers: { authorization: 'Bearer good' } });
    t.equal(res.status, 200);
    t.match(String(orders.seen[orders.seen.length - 1]?.headers['x-request-id']), /^[0-9a-f-]{36}$/);
  });

  t.test('HTTPS listener with the dev CA server certificate', async (t) => {
    const res = await send({ url: `${https}/api/orders/9`, ca, servername: 'localhost', headers: { authorization: 'Bearer good' } });
    t.equal(res.status, 200);
    t.equal(orders.seen[orders.seen.length - 1]?.headers['x-forwarded-proto'], 'https');
  });

  t.test('HTTP/2 over HTTPS: h2 from the client, h2 over mTLS to the sidecar, HTTP/1.1 to the app', async (t) => {
    const session = h2connect(https, { ca, servername: 'localhost' });
    t.teardown(() => session.close());
    const res = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = session.request({ ':path': '/api/orders/10', authorization: 'Bearer good', 'x-request-id': 'h2-request' });
      let status = 0;
      let body = '';
      req.setEncoding('utf8');
      req.on('response', (h) => (status = Number(h[':status'])));
      req.on('data', (c: string) => (body += c));
      req.on('end', () => resolve({ status, body }));
      req.on('error', reject);
      req.end();
    });
    t.equal(res.status, 200);
    t.same(JSON.parse(res.body), { upstream: 'orders', path: '/api/orders/10' });
    const seen = orders.seen[orders.seen.length - 1] as Recorded;
    t.equal(seen.headers['x-request-id'], 'h2-request');
    t.equal(seen.headers.authorization, 'Bearer good');
  });
}

/** What never reaches the upstream: ext_authz denials, oversized headers, path tricks. */
function rejectionTests(t: Test, { orders, checks, lastCheck, http }: EdgeRig): void {
  t.test('denied by ext_authz: its 401 and challenge reach the client, nothing reaches the upstream', async (t) => {
    const before = orders.seen.length;
    const none = await send({ url: `${http}/api/orders/1` });
    t.equal(none.status, 401);
    t.equal(none.headers['www-authenticate'], 'Bearer');
    const bad = await send({ url: `${http}/api/orders/1`, headers: { authorization: 'Bearer forged' } });
    t.equal(bad.status, 401);
    t.equal(orders.seen.length, before, 'the upstream saw none of them');
  });

  t.test('a request header over 16 KiB gets 431 and never reaches ext_authz or the upstream', async (t) => {
    const beforeChecks = checks();
    const beforeUp = orders.seen.length;
    const res = await send({ url: `${http}/api/orders/1`, headers: { authorization: 'Bearer good', 'x-big': 'a'.repeat(17 * 1024) } });
    t.equal(res.status, 431);
    t.equal(checks(), beforeChecks, 'ext_authz was not called');
    t.equal(orders.seen.length, beforeUp, 'the upstream saw nothing');
    // Control: an 8 KiB header is within the limit and is checked.
    const ok = await send({ url: `${http}/api/orders/1`, headers: { authorization: 'Bearer good', 'x-big': 'a'.repeat(8 * 1024) } });
    t.equal(ok.status, 200);
    t.equal(checks(), beforeChecks + 1);
  });

  t.test('path tricks are normalized before ext_authz sees the path, or rejected', async (t) => {
    const beforeUp = orders.seen.length;
    for (const [raw, normalized] of [
      ['/auth/../api/orders/1', '/api/orders/1'],
      ['//api//orders/1', '/api/orders/1'],
      ['/auth/%2e%2e/api/orders/1', '/api/orders/1'],
      ['/healthz/../api/orders/1', '/api/orders/1'],
      ['/.well-known/./../api/orders/1', '/api/orders/1'],
    ] as const) {
      const res = await send({ url: http, rawPath: raw });
      t.equal(res.status, 401, `${raw}: checked as a protected path, no token, 401`);
      t.equal(lastCheck()?.path, normalized, `${raw}: ext_authz saw ${normalized}`);
    }
    const beforeChecks = checks();
    for (const raw of ['/api%2Forders/1', '/auth%2F..%2Fapi/orders/1', '/api%5Corders/1']) {
      const res = await send({ url: http, rawPath: raw, headers: { authorization: 'Bearer good' } });
      t.equal(res.status, 400, `${raw}: escaped slash rejected`);
    }
    t.equal(checks(), beforeChecks, 'rejected paths never reached ext_authz');
    t.equal(orders.seen.length, beforeUp, 'no path trick reached the upstream');
    const underscore = await send({ url: `${http}/api/orders/1`, headers: { authorization: 'Bearer good', x_jwt_mesh_sub: 'attacker' } });
    t.equal(underscore.status, 400, 'a header with underscores (x_jwt_mesh_sub) is rejected');
  });
}

/** The edge's routes: local health, the auth sidecar over mTLS, 404 for anything else. */
function routeTests(t: Test, { auth, authSidecar, http }: EdgeRig): void {
  t.test('routes: /healthz local, /auth and /.well-known to auth (through its sidecar, mTLS), unknown paths 404', async (t) => {
    const health = await send({ url: `${http}/healthz` });
    t.equal(health.status, 200);
    t.equal(health.body, 'ok\n');
    const beforeAuth = auth.seen.length;
    t.equal((await send({ url: `${http}/.well-known/jwks.json` })).status, 200);
    t.equal((await send({ url: `${http}/auth/login`, method: 'POST' })).status, 200);
    t.same(auth.seen.slice(beforeAuth).map((r) => r.url), ['/.well-known/jwks.json', '/auth/login']);
    const fromEdge = auth.seen.slice(beforeAuth).map((r) => r.headers['x-forwarded-client-cert']);
    for (const xfcc of fromEdge) t.match(String(xfcc), new RegExp(`;URI=${spiffeId('edge')}$`), 'the auth-service sees the verified edge identity');
    const authStats = await authSidecar.stats('^listener\\..*\\.ssl\\.handshake$');
    t.ok(Object.values(authStats).some((v) => Number(v) >= 1), 'the edge -> auth hop is a TLS handshake at the auth sidecar');
    const unknown = await send({ url: `${http}/admin`, headers: { authorization: 'Bearer good' } });
    t.equal(unknown.status, 404);
    t.same(JSON.parse(unknown.body), { error: 'not_found' });
    const authlike = await send({ url: `${http}/authx`, headers: { authorization: 'Bearer good' } });
    t.equal(authlike.status, 404, '/authx is not under /auth');
  });
}

/**
 * ext_authz failing: too slow, one replica stopped, both stopped; then the edge's access log.
 * Stops the replicas, so it runs last.
 */
function authzFailureTests(t: Test, { replicas, orders, edge, http }: EdgeRig): void {
  t.test('ext_authz slower than the 250 ms timeout: 503, the upstream gets nothing', async (t) => {
    const before = orders.seen.length;
    const res = await send({ url: `${http}/api/orders/1`, headers: { authorization: 'Bearer slow' } });
    t.equal(res.status, 503);
    t.equal(orders.seen.length, before);
  });

  t.test('one authz replica stopped: requests keep succeeding through the other; both stopped: 503', async (t) => {
    // What is asserted: a replica that is gone (nothing listens) costs no request: the connect
    // failure is retried on the other replica. So the requests start once the edge has seen the
    // stopped replica's connection close; a Check already on that connection at the instant of
    // the stop is the transition, measured under load by test/reliability/authz-replica.test.ts.
    const destroyed = async () => (await edge.stats('^cluster\\.authz\\.upstream_cx_destroy$'))['cluster.authz.upstream_cx_destroy'] ?? 0;
    const destroyedBefore = await destroyed();
    await (replicas[0] as StandinAuthz).stop();
    for (let i = 0; i < 200 && (await destroyed()) === destroyedBefore; i++) await new Promise((r) => setTimeout(r, 10));
    t.ok((await destroyed()) > destroyedBefore, "the edge saw the stopped replica's connection close");
    const retriesBefore = await edge.stats('^cluster\\.authz\\.(upstream_rq_retry|upstream_cx_connect_fail)$');
    const before = orders.seen.length;
    const statuses: number[] = [];
    for (let i = 0; i < 12; i++) {
      statuses.push((await send({ url: `${http}/api/orders/${i}`, headers: { authorization: 'Bearer good' } })).status);
    }
    t.same(statuses, Array(12).fill(200), 'every request succeeded through the remaining replica');
    t.equal(orders.seen.length, before + 12);
    t.comment(`authz cluster during the 12 requests: before ${JSON.stringify(retriesBefore)}, after ${JSON.stringify(await edge.stats('^cluster\\.authz\\.(upstream_rq_retry|upstream_cx_connect_fail)$'))}`);
    await (replicas[1] as StandinAuthz).stop();
    const down = await send({ url: `${http}/api/orders/1`, headers: { authorization: 'Bearer good', 'x-request-id': 'final-request' } });
    t.equal(down.status, 503, 'no authz: fail closed');
    t.equal(orders.seen.length, before + 12, 'the upstream got nothing');
    // Access logs are flushed asynchronously: wait for the last request's line, then read them all.
    const log = await edge.waitForLog(/"x_request_id":"final-request"/);
    const lines = log.split('\n').filter((l) => l.startsWith('{'));
    t.ok(lines.length >= 30, 'one JSON line per request');
    for (const l of lines) JSON.parse(l);
    t.ok(lines.some((l) => /"status":431/.test(l) && /headers_too_large/.test(l)), 'the 431 is logged');
    t.notMatch(log, /Bearer|good|forged|expand=1/, 'no token and no query string in the edge logs');
  });
}
