/**
 * End to end through the real edge Envoy, the real authz-service replicas (ext_authz over mTLS),
 * the auth-service, PostgreSQL and Redis (issue 3, "Tests through a real Envoy"). Upstreams: a
 * recording upstream behind its own sidecar (it shows exactly which headers arrived) and the real
 * services (their /metrics count the requests that reached them).
 *
 * One stack for the whole file, started by the same startStack() as `make up`.
 */
import { connect as tlsConnect } from 'node:tls';
import { createConnection } from 'node:net';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { protoPath as healthProtoPath } from 'grpc-health-check';
import t, { type Test } from 'tap';
import { grpcHealth } from '@jwt-mesh/stack';
import {
  authzHealthByHost,
  authzRequestsByHost,
  counterSum,
  recordingUpstream,
  send,
  startE2e,
  type Answer,
  type E2e,
  type Recorded,
} from './helpers.js';

t.setTimeout(420_000);

let e2e: E2e;
let recorded: Recorded[];
let aliceToken: string;
let aliceClaims: Record<string, unknown>;

/** Requests that reached orders' own HTTP server on an /api route (its Prometheus counter). */
async function ordersApiRequests(): Promise<number> {
  const app = e2e.stack.state.urls.services['orders']?.app as string;
  return counterSum(`${app}/metrics`, 'http_requests_total', (labels) => /route="\/api/.test(labels));
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
const challenge = (a: Answer) => String(a.headers['www-authenticate'] ?? '');

t.before(async () => {
  const upstream = await recordingUpstream(t);
  recorded = upstream.seen;
  e2e = await startE2e(t, {
    name: 'edge',
    redisDb: 11,
    extraUpstreams: [{ name: 'recorder', port: upstream.port, edgePrefixes: ['/api/echo'] }],
    policyRules: [
      { id: 'echo-public', pathPrefix: '/api/echo/public', public: true },
      { id: 'echo-admin', pathPrefix: '/api/echo/admin', scopes: ['introspect'] },
      { id: 'echo', pathPrefix: '/api/echo', scopes: ['orders:read'] },
    ],
  });
  const login = await e2e.login(e2e.users.alice);
  aliceToken = login.access;
  aliceClaims = login.claims;
});

t.test('valid token: 200; the upstream got the same Authorization value and the identity headers', async (t) => {
  const before = recorded.length;
  const r = await send({ base: e2e.edge, path: '/api/echo/items?x=1', headers: bearer(aliceToken) });
  t.equal(r.status, 200, 'edge answered 200');
  t.equal(recorded.length, before + 1, 'the upstream got exactly one request');
  const got = recorded[recorded.length - 1] as Recorded;
  t.equal(got.headers['authorization'], `Bearer ${aliceToken}`, 'the same Authorization value travelled on');
  t.equal(got.headers['x-jwt-mesh-sub'], aliceClaims['sub'], 'x-jwt-mesh-sub is the verified subject');
  t.equal(got.headers['x-jwt-mesh-jti'], aliceClaims['jti'], 'x-jwt-mesh-jti is the verified jti');
  t.equal(got.headers['x-jwt-mesh-sid'], aliceClaims['sid'], 'x-jwt-mesh-sid is the verified sid');
  t.match(String(got.headers['x-jwt-mesh-scope']), /orders:read/, 'x-jwt-mesh-scope carries the scopes');

  // And through the real services: orders -> inventory -> profile answer 200 with the same jti at every hop.
  const chain = await send({ base: e2e.edge, path: '/api/orders/ord-1001', headers: bearer(aliceToken) });
  t.equal(chain.status, 200, 'the real chain answered 200');
  const hops = (chain.json?.['hops'] ?? []) as Array<{ jti: string }>;
  t.ok(hops.length === 3 && hops.every((h) => h.jti === aliceClaims['jti']), 'every service verified the same token');
});

t.test('a client-sent identity header is replaced by the verified value', async (t) => {
  const r = await send({
    base: e2e.edge,
    path: '/api/echo/items',
    headers: { ...bearer(aliceToken), 'x-jwt-mesh-sub': 'mallory', 'x-jwt-mesh-scope': 'introspect admin', 'x-jwt-mesh-roles': 'admin' },
  });
  t.equal(r.status, 200, 'a valid token with forged identity headers: 200');
  const got = recorded[recorded.length - 1] as Recorded;
  t.equal(got.headers['x-jwt-mesh-sub'], aliceClaims['sub'], 'the forged subject was replaced');
  t.notMatch(String(got.headers['x-jwt-mesh-scope']), /introspect|admin/, 'the forged scope was replaced');
  t.notMatch(String(got.headers['x-jwt-mesh-roles'] ?? ''), /admin/, 'the forged role was replaced');
  const subHeaders = got.rawHeaders.filter((h, i) => i % 2 === 0 && h.toLowerCase() === 'x-jwt-mesh-sub');
  t.equal(subHeaders.length, 1, 'exactly one x-jwt-mesh-sub arrived');

  const pub = await send({ base: e2e.edge, path: '/api/echo/public/hello', headers: { 'x-jwt-mesh-sub': 'mallory' } });
  t.equal(pub.status, 200, 'a public route needs no token');
  const gotPublic = recorded[recorded.length - 1] as Recorded;
  t.equal(gotPublic.headers['x-jwt-mesh-sub'], undefined, 'on a public route without a token the forged header is removed');
});

t.test('no token: 401 with a bare Bearer challenge; the upstream got nothing', async (t) => {
  const before = recorded.length;
  const ordersBefore = await ordersApiRequests();
  const r = await send({ base: e2e.edge, path: '/api/echo/items' });
  t.equal(r.status, 401, 'no token: 401');
  t.equal(challenge(r), 'Bearer', 'WWW-Authenticate is a bare "Bearer" (RFC 6750 §3.1: no error code without credentials)');
  const o = await send({ base: e2e.edge, path: '/api/orders/ord-1001' });
  t.equal(o.status, 401, 'no token on the orders route: 401');
  t.equal(challenge(o), 'Bearer', 'bare Bearer challenge on the orders route');
  t.equal(recorded.length, before, 'the recording upstream got nothing');
  t.equal(await ordersApiRequests(), ordersBefore, 'orders counted no request');
});

t.test('bad tokens through Envoy: 401 invalid_token; the upstream got none of them', async (t) => {
  const now = Math.floor(Date.now() / 1000);
  const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const good = await e2e.mint();
  const [h, p] = good.split('.') as [string, string];
  const header = JSON.parse(Buffer.from(h, 'base64url').toString('utf8')) as Record<string, unknown>;
  // HS256 keyed with the issuer's public key (the classic algorithm-confusion forgery).
  const jwks = (await send({ base: e2e.stack.state.urls.auth, path: '/.well-known/jwks.json' })).json as { keys: Array<Record<string, unknown>> };
  const pubJwk = jwks.keys.find((k) => k['kid'] === header['kid']);
  const { createPublicKey, createHmac } = await import('node:crypto');
  const pubPem = createPublicKey({ key: pubJwk as never, format: 'jwk' }).export({ type: 'spki', format: 'pem' }) as string;
  const hsInput = `${b64({ ...header, alg: 'HS256' })}.${p}`;
  const hs256 = `${hsInput}.${createHmac('sha256', pubPem).update(hsInput).digest('base64url')}`;

  const cases: Array<[string, string]> = [
    ['alg none', `${b64({ ...header, alg: 'none' })}.${p}.`],
    ['HS256 signed with the public key', hs256],
    ['expired', await e2e.mint({ claims: { iat: now - 900, exp: now - 600 } })],
    ['wrong issuer', await e2e.mint({ claims: { iss: 'https://issuer.example' } })],
    ['wrong audience', await e2e.mint({ claims: { aud: 'another-api' } })],
    ['wrong typ (JWT, not at+jwt)', await e2e.mint({ header: { typ: 'JWT' } })],
    ['tampered payload', `${h}.${b64({ ...JSON.parse(Buffer.from(p, 'base64url').toString('utf8')), scope: 'introspect' })}.${good.split('.')[2]}`],
    ['unknown kid', await e2e.mint({ header: { kid: 'no-such-key' } })],
    ['garbage', 'not-a-jwt'],
    ['three garbage segments', 'aaa.bbb.ccc'],
    ['oversized but under the header limit (10 KB)', await e2e.mint({ claims: { pad: 'x'.repeat(10_000) } })],
  ];
  const before = recorded.length;
  const ordersBefore = await ordersApiRequests();
  for (const [name, token] of cases) {
    const r = await send({ base: e2e.edge, path: '/api/echo/items', headers: bearer(token) });
    t.equal(r.status, 401, `${name}: 401`);
    t.match(challenge(r), /^Bearer error="invalid_token"/, `${name}: WWW-Authenticate error="invalid_token"`);
    const o = await send({ base: e2e.edge, path: '/api/orders/ord-1001', headers: bearer(token) });
    t.equal(o.status, 401, `${name}: 401 on the orders route too`);
  }
  // The valid control token works, so the 401s above are about the defects.
  t.equal((await send({ base: e2e.edge, path: '/api/echo/items', headers: bearer(good) })).status, 200, 'the untampered minted token is accepted');
  t.equal(recorded.length, before + 1, 'the upstream got none of the bad tokens (only the control request)');
  t.equal(await ordersApiRequests(), ordersBefore, 'orders counted none of them');
});

t.test('missing scope: 403 insufficient_scope; the upstream got nothing', async (t) => {
  const before = recorded.length;
  const r = await send({ base: e2e.edge, path: '/api/echo/admin/keys', headers: bearer(aliceToken) });
  t.equal(r.status, 403, 'a route needing "introspect" with a token without it: 403');
  t.match(challenge(r), /error="insufficient_scope"/, 'WWW-Authenticate error="insufficient_scope"');
  const bob = await e2e.login(e2e.users.bob);
  const w = await send({ base: e2e.edge, method: 'POST', path: '/api/orders', headers: { ...bearer(bob.access), 'content-type': 'application/json' }, body: '{"sku":"sku-widget","quantity":1}' });
  t.equal(w.status, 403, 'bob (orders:read) may not POST /api/orders (orders:write) at the edge');
  t.match(challenge(w), /error="insufficient_scope"/, 'WWW-Authenticate error="insufficient_scope"');
  t.equal(recorded.length, before, 'the upstream got nothing');
});

t.test('an oversized request header gets 431 before ext_authz', async (t) => {
  const before = recorded.length;
  const r = await send({ base: e2e.edge, path: '/api/echo/items', headers: { ...bearer(aliceToken), 'x-filler': 'a'.repeat(20_000) } });
  t.equal(r.status, 431, 'a 20 KB header (limit 16 KB): 431');
  const big = await send({ base: e2e.edge, path: '/api/echo/items', headers: bearer(`${aliceToken}${'A'.repeat(20_000)}`) });
  t.equal(big.status, 431, 'an Authorization header over the limit: 431');
  t.equal(recorded.length, before, 'the upstream got nothing');
});

t.test('path tricks never reach a protected upstream without a token', async (t) => {
  const before = recorded.length;
  const ordersBefore = await ordersApiRequests();
  const paths = [
    '/public/../api/orders/ord-1001',
    '//api/orders/ord-1001',
    '/api/%2e%2e/api/orders/ord-1001',
    '/api/orders%2Ford-1001',
    '/api%2Forders/ord-1001',
    '/healthz/../api/orders/ord-1001',
    '/auth/login/../../api/orders/ord-1001',
    '/.well-known/../api/orders/ord-1001',
    '/api/./orders/ord-1001',
    '/api/echo/public/../items',
    '/api/echo/public/%2e%2e/items',
    '/api/echo/public%2F..%2Fitems',
    '//api/echo/items',
    '/api/echo/public/..%2Fitems',
  ];
  for (const path of paths) {
    const r = await send({ base: e2e.edge, path });
    t.ok(r.status === 400 || r.status === 401 || r.status === 404, `${path}: ${r.status} (400, 401 or 404; never a 2xx)`);
  }
  t.equal(recorded.length, before, 'the recording upstream got none of them');
  t.equal(await ordersApiRequests(), ordersBefore, 'orders counted none of them');
});

t.test('a plain-TCP or wrong-certificate client cannot talk to a sidecar or to the authz server', async (t) => {
  const certs = e2e.stack.certs;
  const ca = readFileSync(certs.ca.cert);
  const inbound = new URL(e2e.stack.state.urls.services['orders']?.inbound as string);
  const pair = (p: { cert: string; key: string }) => ({ cert: readFileSync(p.cert), key: readFileSync(p.key) });

  // Control: the edge's mesh certificate is accepted (so the refusals below are about the client).
  const ok = await send({ base: inbound.origin, path: '/healthz', tls: { ca, ...pair(certs.workloads['edge'] as never), servername: 'orders.jwt-mesh.svc.cluster.local' } });
  t.equal(ok.status, 200, "control: the edge's certificate reaches orders through its sidecar");

  // Plain TCP: an HTTP request on the TLS port gets no HTTP answer.
  const plain = await new Promise<string>((resolvePlain) => {
    const sock = createConnection({ host: inbound.hostname, port: Number(inbound.port) });
    let data = '';
    sock.on('connect', () => sock.write('GET /healthz HTTP/1.1\r\nHost: orders\r\n\r\n'));
    sock.on('data', (d: Buffer) => (data += d.toString('latin1')));
    sock.on('close', () => resolvePlain(data));
    sock.on('error', () => resolvePlain(data));
    sock.setTimeout(5000, () => sock.destroy());
  });
  t.notMatch(plain, /^HTTP\/1\.[01] 2/, 'plain TCP: no HTTP answer from the sidecar');

  const refused = async (what: string, tls: { cert?: Buffer; key?: Buffer }) => {
    const r = await send({ base: inbound.origin, path: '/healthz', tls: { ca, servername: 'orders.jwt-mesh.svc.cluster.local', ...tls } }).then(
      (a) => `HTTP ${a.status}`,
      (err: Error) => `refused (${err.message})`,
    );
    t.match(r, /^refused/, `${what}: ${r}`);
  };
  await refused('no client certificate', {});
  await refused('a certificate from an untrusted CA claiming the edge SPIFFE ID', pair(certs.untrusted.leaf));
  await refused('a mesh certificate whose SPIFFE ID may not call orders (client)', pair(certs.workloads['client'] as never));

  // The authz server: mTLS with the mesh CA only.
  const authz = e2e.stack.state.urls.authzGrpc[0] as string;
  const serverName = 'authz.jwt-mesh.svc.cluster.local';
  t.equal(await grpcHealth(authz, { ca, ...pair(certs.workloads['edge'] as never), serverName }), 'SERVING', 'control: a mesh certificate gets SERVING');
  t.match(await grpcHealth(authz, { ca, ...pair(certs.untrusted.leaf), serverName }), /^error/, 'an untrusted certificate is refused');
  const pkg = grpc.loadPackageDefinition(protoLoader.loadSync(healthProtoPath, { keepCase: true, enums: String, defaults: true })) as unknown as {
    grpc: { health: { v1: { Health: new (a: string, c: grpc.ChannelCredentials) => grpc.Client & { Check: (r: object, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null) => void) => void } } } };
  };
  const plainClient = new pkg.grpc.health.v1.Health(authz, grpc.credentials.createInsecure());
  const plainErr = await new Promise<grpc.ServiceError | null>((r) => plainClient.Check({ service: '' }, { deadline: Date.now() + 3000 }, (e) => r(e)));
  plainClient.close();
  t.ok(plainErr, `plaintext gRPC is refused (${plainErr?.code}: ${plainErr?.details})`);
  const noCertErr = await new Promise<string>((resolveTls) => {
    const s = tlsConnect({ host: '127.0.0.1', port: Number(authz.split(':')[1]), ca, servername: serverName, ALPNProtocols: ['h2'] });
    s.on('secureConnect', () => {
      // TLS 1.3: the server checks the (missing) client certificate after the handshake; wait for its alert.
      s.write(Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'));
    });
    s.on('error', (e) => resolveTls(`refused (${e.message})`));
    s.on('close', () => resolveTls('closed'));
    s.setTimeout(5000, () => {
      s.destroy();
      resolveTls('still open after 5 s');
    });
  });
  t.match(noCertErr, /refused|closed/, `TLS without a client certificate to authz: ${noCertErr}`);
});

t.test('revocation reaches both authz replicas within 200 ms (measured)', async (t) => {
  const admin = e2e.stack.state.urls.edgeAdmin;
  const { access } = await e2e.login(e2e.users.alice);
  // Warm both replicas (verified-token cache, revocation cache) with this token.
  const hosts = e2e.stack.state.urls.authzGrpc;
  const start = await authzRequestsByHost(admin);
  for (let i = 0; i < 60; i++) {
    const r = await send({ base: e2e.edge, path: '/api/echo/items', headers: bearer(access) });
    t.equal(r.status, 200, 'accepted before the revocation');
    const now = await authzRequestsByHost(admin);
    if (hosts.every((h) => (now[h] ?? 0) > (start[h] ?? 0))) break;
  }
  const warmed = await authzRequestsByHost(admin);
  t.ok(hosts.every((h) => (warmed[h] ?? 0) > (start[h] ?? 0)), 'both replicas have seen (and cached) the token');

  const t0 = performance.now();
  const revoke = await send({ base: e2e.edge, method: 'POST', path: '/auth/revoke', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token: access }) });
  const t1 = performance.now();
  t.equal(revoke.status, 200, 'RFC 7009 revoke answered 200');

  // Send requests one at a time; attribute each to the replica whose rq_total moved.
  const firstReject: Record<string, number> = {};
  const seen: Record<string, number[]> = {};
  const lateAccepts: string[] = [];
  let before = await authzRequestsByHost(admin);
  const deadline = performance.now() + 5000;
  while (performance.now() < deadline && !hosts.every((h) => (seen[h]?.length ?? 0) >= 3)) {
    const sentAt = performance.now() - t1;
    const r = await send({ base: e2e.edge, path: '/api/echo/items', headers: bearer(access) });
    const after = await authzRequestsByHost(admin);
    const host = hosts.find((h) => (after[h] ?? 0) > (before[h] ?? 0));
    before = after;
    if (!host) continue;
    (seen[host] ??= []).push(r.status);
    if (r.status === 401 && firstReject[host] === undefined) firstReject[host] = sentAt;
    if (r.status !== 401 && firstReject[host] !== undefined) lateAccepts.push(`${host} answered ${r.status} after rejecting`);
  }
  for (const h of hosts) {
    t.ok((seen[h]?.length ?? 0) >= 1, `replica ${h} answered requests after the revocation (${seen[h]?.join(',') ?? 'none'})`);
    t.ok(firstReject[h] !== undefined && (firstReject[h] as number) <= 200, `replica ${h} rejects the revoked token within 200 ms`);
  }
  t.same(lateAccepts, [], 'no replica accepted the token again after rejecting it');
  const fmt = (ms: number | undefined) => (ms === undefined ? 'never' : `${ms.toFixed(1)} ms`);
  // firstReject is when the first request through that replica that was rejected was *sent*
  // (relative to the revoke answer): an upper bound of the propagation time to that replica.
  t.comment(
    `revocation propagation: the revoke request took ${(t1 - t0).toFixed(1)} ms; first rejection through each replica, sent after the revoke answer: ` +
      hosts.map((h) => `${h} +${fmt(firstReject[h])} (statuses ${seen[h]?.join(',') ?? '-'})`).join('; '),
  );
});

t.test('one authz replica stopped: requests keep succeeding through the other', async (t) => {
  const before = recorded.length;
  await e2e.stack.stopPart('authz-1');
  // Steady state with one replica down: wait (bounded) until the edge's health checks have marked
  // it. The moment of the stop itself, under load, is the reliability suite's job
  // (test/reliability/authz-replica.test.ts); here a Check caught in it on a loaded 2-core CI
  // machine got one 503 (per-try timeout) in one of four clean runs.
  const admin = e2e.stack.state.urls.edgeAdmin;
  for (let waited = 0; waited < 10_000; waited += 200) {
    if (Object.values(await authzHealthByHost(admin)).some((flags) => flags !== 'healthy')) break;
    await sleep(200);
  }
  t.comment(`edge view of the authz hosts before the 20 requests: ${JSON.stringify(await authzHealthByHost(admin))}`);
  const statuses: number[] = [];
  for (let i = 0; i < 20; i++) statuses.push((await send({ base: e2e.edge, path: '/api/echo/items', headers: bearer(aliceToken) })).status);
  t.same([...new Set(statuses)], [200], `20 requests with authz-1 stopped: ${statuses.join(',')}`);
  t.equal(recorded.length, before + 20, 'the upstream got all 20');
  await e2e.stack.startPart('authz-1');
  await waitAllowed(t, 'authz-1 back');
});

t.test('authz replicas slower than the ext_authz timeout (both frozen): 503, the upstream got nothing', async (t) => {
  const before = recorded.length;
  const ordersBefore = await ordersApiRequests();
  e2e.stack.signalPart('authz-1', 'SIGSTOP');
  e2e.stack.signalPart('authz-2', 'SIGSTOP');
  try {
    for (let i = 0; i < 3; i++) {
      const started = performance.now();
      const r = await send({ base: e2e.edge, path: '/api/echo/items', headers: bearer(aliceToken) });
      t.equal(r.status, 503, `frozen replicas: 503 (answered in ${(performance.now() - started).toFixed(0)} ms)`);
      const o = await send({ base: e2e.edge, path: '/api/orders/ord-1001', headers: bearer(aliceToken) });
      t.equal(o.status, 503, 'the orders route: 503');
    }
  } finally {
    e2e.stack.signalPart('authz-1', 'SIGCONT');
    e2e.stack.signalPart('authz-2', 'SIGCONT');
  }
  t.equal(recorded.length, before, 'the upstream got nothing');
  t.equal(await ordersApiRequests(), ordersBefore, 'orders counted nothing');
  await waitAllowed(t, 'replicas thawed');
});

t.test('both authz replicas stopped: 503, the upstream got nothing', async (t) => {
  const before = recorded.length;
  await Promise.all([e2e.stack.stopPart('authz-1'), e2e.stack.stopPart('authz-2')]);
  for (let i = 0; i < 3; i++) {
    const r = await send({ base: e2e.edge, path: '/api/echo/items', headers: bearer(aliceToken) });
    t.equal(r.status, 503, 'no authz: 503 (fail closed)');
  }
  const pub = await send({ base: e2e.edge, path: '/api/echo/public/x' });
  t.equal(pub.status, 503, 'even a public route: 503 (every route goes through ext_authz)');
  t.equal(recorded.length, before, 'the upstream got nothing');
  await Promise.all([e2e.stack.startPart('authz-1'), e2e.stack.startPart('authz-2')]);
  await waitAllowed(t, 'replicas restarted');
  t.comment(`edge view of the authz hosts: ${JSON.stringify(await authzHealthByHost(e2e.stack.state.urls.edgeAdmin))}`);
});

/** Waits (bounded) until a valid request is allowed again after a fault, so later tests start clean. */
async function waitAllowed(t: Test, what: string): Promise<void> {
  const deadline = Date.now() + 60_000;
  let last = 0;
  while (Date.now() < deadline) {
    last = (await send({ base: e2e.edge, path: '/api/echo/items', headers: bearer(aliceToken) })).status;
    if (last === 200) break;
    await sleep(250);
  }
  t.equal(last, 200, `${what}: requests are allowed again`);
}

