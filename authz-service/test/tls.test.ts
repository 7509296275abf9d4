/**
 * mTLS on the gRPC listener: a client with a certificate from the mesh CA can call Check; a
 * plaintext client, a TLS client without a certificate and a client with a certificate from
 * another CA cannot. Certificates are generated with openssl in a temporary directory.
 */
import t, { type Test } from 'tap';
import * as grpc from '@grpc/grpc-js';
import { makeTestCerts, type TestCerts } from './helpers/certs.js';
import { GRPC, callCheck, fixture, makeClient, startAuthz, startIssuer, type Issuer, type RunningAuthz } from './helpers/harness.js';

let certs: TestCerts;
let issuer: Issuer;
let srv: RunningAuthz;

t.before(async () => {
  certs = makeTestCerts();
  issuer = await startIssuer();
  srv = await startAuthz({ issuer, tls: { ca: certs.caCert, cert: certs.serverCert, key: certs.serverKey } });
});
t.teardown(async () => {
  await srv.close();
  await issuer.close();
  certs.cleanup();
});

// The server certificate is for 127.0.0.1 / localhost; keep the name check on.
const opts: grpc.ChannelOptions = { 'grpc.ssl_target_name_override': 'localhost' };

t.test('a client with a mesh-CA certificate can call Check', async (t) => {
  const client = makeClient(srv.port, grpc.credentials.createSsl(certs.caCert, certs.clientKey, certs.clientCert), opts);
  t.teardown(() => client.close());
  const res = await callCheck(client, fixture('get-orders', await issuer.mint()));
  t.equal(res.status?.code, GRPC.OK);
});

async function refused(t: Test, name: string, credentials: grpc.ChannelCredentials) {
  const client = makeClient(srv.port, credentials, opts);
  try {
    const err = await callCheck(client, fixture('get-orders', await issuer.mint())).then(
      () => null,
      (e: grpc.ServiceError) => e,
    );
    t.ok(err, `${name}: the call fails`);
    t.equal(err?.code, grpc.status.UNAVAILABLE, `${name}: no connection (${err?.details})`);
  } finally {
    client.close();
  }
}

t.test('clients without a valid mesh certificate cannot call Check', async (t) => {
  await refused(t, 'plaintext client', grpc.credentials.createInsecure());
  await refused(t, 'TLS client without a certificate', grpc.credentials.createSsl(certs.caCert));
  await refused(t, 'client certificate from another CA', grpc.credentials.createSsl(certs.caCert, certs.rogueKey, certs.rogueCert));
});
