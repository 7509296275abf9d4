/**
 * Real Envoy sidecars, rendered by the generator for the local target with real dev certificates:
 * the inbound listener lets only mesh callers with an allowed SPIFFE ID through, and the outbound
 * listener carries HTTP/1.1 and HTTP/2 (gRPC) calls over mTLS to the callee's sidecar.
 */
import { readFileSync } from 'node:fs';
import { connect as h2connect, createServer as createH2Server, type IncomingHttpHeaders } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { connect as netConnect } from 'node:net';
import { startEnvoy } from '@jwt-mesh/testkit';
import t from 'tap';
import { renderConfigs } from '../src/render.js';
import { defaultTopology, spiffeId } from '../src/topology.js';
import { recordingUpstream, send, tempCerts } from './helpers.js';

const topology = defaultTopology();

t.test('orders sidecar inbound: only an mTLS client with an allowed mesh identity reaches the service', async (t) => {
  const certs = await tempCerts(t);
  const upstream = await recordingUpstream(t, 'orders');
  const files = renderConfigs(topology, 'local', {
    certDir: certs.dir,
    ports: { services: { orders: { app: upstream.port, inbound: 0, outbound: 0, admin: 0 } } },
  });
  const envoy = await startEnvoy({ config: files['sidecar-orders.yaml'] as string, name: 'sidecar-orders', teardown: t });
  const { port } = await envoy.listenerAddress('inbound');
  const url = `https://127.0.0.1:${port}/api/orders/42?x=1`;
  const ca = readFileSync(certs.ca.cert);
  const pem = (p: string) => readFileSync(p);
  const edge = certs.workloads.edge as { cert: string; key: string };
  const client = certs.workloads.client as { cert: string; key: string };

  // 1. The edge's mesh certificate: allowed (orders' only caller is the edge).
  const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
  const ok = await send({
    url,
    ca,
    cert: pem(edge.cert),
    key: pem(edge.key),
    servername: 'orders.jwt-mesh.svc.cluster.local',
    headers: { authorization: 'Bearer abc.def.ghi', traceparent, tracestate: 'vendor=1', 'x-request-id': 'req-sidecar-1' },
  });
  t.equal(ok.status, 200, 'allowed caller gets through');
  t.equal(upstream.seen.length, 1);
  const seen = upstream.seen[0]?.headers ?? {};
  t.equal(upstream.seen[0]?.url, '/api/orders/42?x=1');
  t.equal(seen.authorization, 'Bearer abc.def.ghi', 'Authorization unchanged');
  t.equal(seen.traceparent, traceparent, 'traceparent unchanged');
  t.equal(seen.tracestate, 'vendor=1', 'tracestate unchanged');
  t.equal(seen['x-request-id'], 'req-sidecar-1', 'x-request-id unchanged');
  t.match(String(seen['x-forwarded-client-cert']), `URI=${spiffeId('edge')}`, 'the app learns the verified caller');
  t.equal(ok.headers['x-request-id'], 'req-sidecar-1');

  // 2. Plain HTTP to the TLS port: no HTTP response, connection closed.
  await t.rejects(send({ url: `http://127.0.0.1:${port}/api/orders/42` }), 'plain HTTP is refused');

  // 3. Raw TCP bytes: the connection is closed and nothing HTTP comes back.
  const raw = await new Promise<string>((resolve) => {
    const sock = netConnect({ host: '127.0.0.1', port }, () => sock.write('GET /api/orders/42 HTTP/1.1\r\nhost: x\r\n\r\n'));
    let got = '';
    sock.on('data', (c: Buffer) => (got += c.toString('latin1')));
    sock.on('error', () => resolve(got));
    sock.on('close', () => resolve(got));
    sock.setTimeout(5000, () => sock.destroy());
  });
  t.notMatch(raw, /HTTP\/1\.1/, 'plain TCP gets no HTTP answer');

  // 4. TLS without a client certificate.
  await t.rejects(send({ url, ca, servername: 'orders.jwt-mesh.svc.cluster.local' }), 'no client certificate is refused');

  // 5. A certificate from another CA, even one claiming the edge's SPIFFE ID.
  await t.rejects(
    send({ url, ca, cert: pem(certs.untrusted.leaf.cert), key: pem(certs.untrusted.leaf.key) }),
    'a certificate from an untrusted CA is refused',
  );

  // 6. A mesh certificate whose SPIFFE ID is not an allowed caller of orders.
  await t.rejects(send({ url, ca, cert: pem(client.cert), key: pem(client.key) }), 'a mesh identity that may not call orders is refused');

  // The service saw only the one allowed request.
  t.equal(upstream.seen.length, 1, 'the upstream saw none of the refused attempts');
  const stats = await envoy.stats('^listener\\..*\\.ssl\\.(fail_verify_no_cert|fail_verify_error|fail_verify_san|connection_error|handshake)$');
  const sum = (suffix: string) => Object.entries(stats).filter(([k]) => k.endsWith(suffix)).reduce((a, [, v]) => a + v, 0);
  t.ok(sum('.ssl.fail_verify_san') >= 1, 'Envoy counted the SAN mismatch');
  t.ok(sum('.ssl.fail_verify_no_cert') >= 1, 'Envoy counted the missing client certificate');
  t.ok(sum('.ssl.fail_verify_error') >= 1, 'Envoy counted the untrusted chain');
});

t.test('inventory outbound -> profile inbound: HTTP/1.1 and gRPC over HTTP/2, mTLS, by Host and by path', async (t) => {
  const certs = await tempCerts(t);
  const profileHttp = await recordingUpstream(t, 'profile');
  // The profile service's gRPC side: an h2c server that records what it got and answers a gRPC OK.
  const grpcSeen: Array<{ path: string; headers: IncomingHttpHeaders }> = [];
  const h2 = createH2Server();
  h2.on('stream', (stream, headers) => {
    grpcSeen.push({ path: String(headers[':path']), headers });
    stream.on('data', () => {});
    stream.on('end', () => {
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
      stream.end(Buffer.from([0, 0, 0, 0, 0]));
    });
  });
  await new Promise<void>((res) => h2.listen(0, '127.0.0.1', () => res()));
  t.teardown(() => new Promise<void>((res) => h2.close(() => res())));
  const grpcPort = (h2.address() as AddressInfo).port;

  const base = { certDir: certs.dir };
  const profileCfg = renderConfigs(topology, 'local', {
    ...base,
    ports: { services: { profile: { app: profileHttp.port, grpc: grpcPort, inbound: 0, outbound: 0, admin: 0 } } },
  });
  const profile = await startEnvoy({ config: profileCfg['sidecar-profile.yaml'] as string, name: 'sidecar-profile', teardown: t });
  const profileInbound = (await profile.listenerAddress('inbound')).port;
  const inventoryCfg = renderConfigs(topology, 'local', {
    ...base,
    ports: {
      services: {
        profile: { inbound: profileInbound },
        inventory: { inbound: 0, outbound: 0, admin: 0 },
      },
    },
  });
  const inventory = await startEnvoy({ config: inventoryCfg['sidecar-inventory.yaml'] as string, name: 'sidecar-inventory', teardown: t });
  const outbound = (await inventory.listenerAddress('outbound')).port;
  t.equal((await inventory.listenerAddress('outbound')).host, '127.0.0.1');

  // HTTP/1.1 by Host name: the Kubernetes-style name with a port matches too.
  const byHost = await send({
    url: `http://127.0.0.1:${outbound}/api/profile/u1`,
    headers: { host: 'profile.jwt-mesh.svc.cluster.local:8443', authorization: 'Bearer t1', 'x-request-id': 'rid-h1' },
  });
  t.equal(byHost.status, 200);
  t.equal(profileHttp.seen.length, 1);
  t.equal(profileHttp.seen[0]?.headers.authorization, 'Bearer t1');
  t.equal(profileHttp.seen[0]?.headers['x-request-id'], 'rid-h1');
  t.match(String(profileHttp.seen[0]?.headers['x-forwarded-client-cert']), `URI=${spiffeId('inventory')}`, 'profile sees inventory as the caller');

  // HTTP/1.1 by path prefix, with a Host that names nobody.
  const byPath = await send({ url: `http://127.0.0.1:${outbound}/api/profile/u2`, headers: { authorization: 'Bearer t2' } });
  t.equal(byPath.status, 200);
  t.equal(profileHttp.seen[1]?.url, '/api/profile/u2');

  // A path that belongs to no callee: 404 from the outbound listener, nothing sent anywhere.
  const none = await send({ url: `http://127.0.0.1:${outbound}/api/orders/1` });
  t.equal(none.status, 404);
  t.match(none.body, /no_route/);
  t.equal(profileHttp.seen.length, 2);

  // gRPC (h2c to the outbound listener, HTTP/2 over mTLS between the sidecars, h2c to the app).
  const session = h2connect(`http://127.0.0.1:${outbound}`);
  t.teardown(() => session.close());
  const grpc = await new Promise<{ status: number; grpcStatus: string | undefined }>((resolve, reject) => {
    const req = session.request({
      ':method': 'POST',
      ':path': '/jwtmesh.profile.v1.ProfileService/GetProfile',
      ':authority': 'profile',
      'content-type': 'application/grpc',
      te: 'trailers',
      authorization: 'Bearer grpc-token',
      traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
    });
    let status = 0;
    let grpcStatus: string | undefined;
    req.on('response', (h) => (status = Number(h[':status'])));
    req.on('trailers', (h) => (grpcStatus = h['grpc-status'] as string | undefined));
    req.on('data', () => {});
    req.on('end', () => resolve({ status, grpcStatus }));
    req.on('error', reject);
    req.end(Buffer.from([0, 0, 0, 0, 0]));
  });
  t.equal(grpc.status, 200);
  t.equal(grpc.grpcStatus, '0', 'gRPC OK came back through both sidecars');
  t.equal(grpcSeen.length, 1, 'the gRPC request reached the gRPC port, not the HTTP app');
  t.equal(grpcSeen[0]?.path, '/jwtmesh.profile.v1.ProfileService/GetProfile');
  t.equal(grpcSeen[0]?.headers.authorization, 'Bearer grpc-token', 'the same token in gRPC metadata');
  t.equal(grpcSeen[0]?.headers.traceparent, '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01');
  t.equal(profileHttp.seen.length, 2, 'the HTTP app got no gRPC');
});

t.test('auth sidecar inbound: the edge reaches every path; verifiers only the JWK Set; others nothing', async (t) => {
  const certs = await tempCerts(t);
  const upstream = await recordingUpstream(t, 'auth');
  const files = renderConfigs(topology, 'local', {
    certDir: certs.dir,
    ports: { services: { auth: { app: upstream.port, inbound: 0, outbound: 0, admin: 0 } } },
  });
  const envoy = await startEnvoy({ config: files['sidecar-auth.yaml'] as string, name: 'sidecar-auth', teardown: t });
  const { port } = await envoy.listenerAddress('inbound');
  const ca = readFileSync(certs.ca.cert);
  const as = (w: string) => {
    const c = certs.workloads[w] as { cert: string; key: string };
    return { ca, cert: readFileSync(c.cert), key: readFileSync(c.key), servername: 'auth.jwt-mesh.svc.cluster.local' };
  };
  const base = `https://127.0.0.1:${port}`;

  t.equal((await send({ url: `${base}/auth/login`, method: 'POST', ...as('edge') })).status, 200, 'edge -> /auth/login');
  t.equal((await send({ url: `${base}/.well-known/jwks.json`, ...as('edge') })).status, 200, 'edge -> JWKS');
  for (const verifier of ['authz', 'orders', 'inventory', 'profile']) {
    t.equal((await send({ url: `${base}/.well-known/jwks.json`, ...as(verifier) })).status, 200, `${verifier} -> JWKS`);
  }
  const before = upstream.seen.length;
  for (const path of ['/auth/login', '/auth/token', '/auth/introspect', '/.well-known/openid-configuration', '/.well-known/jwks.jsonx', '/metrics']) {
    const r = await send({ url: `${base}${path}`, method: 'POST', ...as('orders') });
    t.equal(r.status, 403, `a verifier gets 403 for ${path}`);
  }
  t.equal(upstream.seen.length, before, 'the auth-service saw none of the refused requests');
  await t.rejects(send({ url: `${base}/.well-known/jwks.json`, ...as('client') }), 'a mesh identity that is not a caller is refused at the handshake');
  await t.rejects(
    send({ url: `${base}/.well-known/jwks.json`, ca, cert: readFileSync(certs.untrusted.leaf.cert), key: readFileSync(certs.untrusted.leaf.key) }),
    'an untrusted-CA certificate claiming the edge is refused',
  );
});
