// The JWK Set fetch over mTLS with the issuer's identity pinned: real node:https servers on
// 127.0.0.1 with certificates from the dev PKI (the mesh CA, and the untrusted second CA that
// envoy/'s createDevCerts makes for exactly this kind of test).
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createDevCerts, spiffeId, type DevCerts } from '@jwt-mesh/envoy';
import t from 'tap';
import { AuthError, type AuthErrorCode } from '../src/errors.js';
import { createRemoteKeySource, JwksFetchError, readJwksTlsFiles, type JWK } from '../src/jwks.js';
import { createVerifier } from '../src/verify.js';
import { AUDIENCE, ISSUER, atHeader, claims, fakeClock, makeKey, signWith, type TestKey } from './fixtures/tokens.js';

const pem = (file: string) => readFileSync(file);
const pair = (certs: DevCerts, w: string) => certs.workloads[w] as { cert: string; key: string };

/** An https JWKS server presenting `cert`/`key`, requiring a client certificate from the mesh CA. */
async function jwksServer(t: { teardown(fn: () => unknown): void }, certs: DevCerts, serverPair: { cert: string; key: string }, keys: JWK[], port = 0) {
  const state = { hits: 0, port: 0, server: undefined as unknown as Server };
  state.server = createServer(
    { cert: pem(serverPair.cert), key: pem(serverPair.key), ca: pem(certs.ca.cert), requestCert: true, rejectUnauthorized: true },
    (_req, res) => {
      state.hits++;
      res.setHeader('content-type', 'application/jwk-set+json');
      res.end(JSON.stringify({ keys }));
    },
  );
  await new Promise<void>((r) => state.server.listen(port, '127.0.0.1', r));
  state.port = (state.server.address() as AddressInfo).port;
  const close = () => new Promise<void>((r) => { state.server.closeAllConnections(); state.server.close(() => r()); });
  t.teardown(close);
  return { ...state, get hits() { return state.hits; }, close };
}

t.test('JWK Set over mTLS, issuer identity pinned', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'jwt-mesh-jwks-tls-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const certs = await createDevCerts({ dir });
  const k1: TestKey = makeKey('RS256', 'k1');
  const k2: TestKey = makeKey('RS256', 'k2');
  const evil: TestKey = makeKey('RS256', 'evil');
  const clock = fakeClock();
  const failures: JwksFetchError[] = [];
  const orders = pair(certs, 'orders');
  const tls = readJwksTlsFiles({ caFile: certs.ca.cert, certFile: orders.cert, keyFile: orders.key, serverId: spiffeId('auth') });

  const real = await jwksServer(t, certs, pair(certs, 'auth'), [k1.jwk]);
  const port = real.port;
  const keys = createRemoteKeySource({
    url: `https://127.0.0.1:${port}/.well-known/jwks.json`,
    ...(tls ? { tls } : {}),
    onFetchFailure: (err) => failures.push(err),
    now: clock.now,
    cooldownMs: 1_000,
  });
  const verifier = createVerifier({ issuer: ISSUER, audience: AUDIENCE, keys, now: clock.now });
  const codeOf = async (key: TestKey): Promise<AuthErrorCode | 'ok'> => {
    try {
      await verifier.verify(signWith(key, atHeader(key), claims(clock.sec)));
      return 'ok';
    } catch (err) {
      if (!(err instanceof AuthError)) throw err;
      return err.code;
    }
  };

  t.equal(await codeOf(k1), 'ok', 'the issuer (sa/auth, mesh CA) serves the keys');
  t.equal(real.hits, 1);
  await real.close();

  const scenarios: Array<[string, { cert: string; key: string }, JwksFetchError['reason']]> = [
    ['a certificate from another CA (claiming the edge identity)', certs.untrusted.leaf, 'tls'],
    ['a mesh certificate that is not the issuer (sa/orders)', orders, 'identity'],
  ];
  for (const [label, impostorPair, reason] of scenarios) {
    // The impostor answers on the very JWKS address, serving its own key.
    const impostor = await jwksServer(t, certs, impostorPair, [evil.jwk, k2.jwk], port);
    const before = failures.length;
    clock.advance(2_000); // past the cooldown
    t.equal(await codeOf(evil), 'jwks_unavailable', `${label}: its key is never accepted (fail closed)`);
    t.equal(await codeOf(k2), 'jwks_unavailable', `${label}: nor any other key it offers`);
    t.equal(await codeOf(k1), 'ok', `${label}: the keys already known keep working`);
    t.equal(impostor.hits, 0, `${label}: no request was ever sent to it`);
    t.equal(failures.length, before + 1, `${label}: the failure is reported once (then the cooldown)`);
    t.equal(failures[failures.length - 1]?.reason, reason, `${label}: reason ${reason}`);
    t.equal(keys.stats().failures[reason], failures.filter((f) => f.reason === reason).length, `${label}: counted in stats`);
    await impostor.close();
  }

  // The issuer is back with a rotated key: picked up again.
  const back = await jwksServer(t, certs, pair(certs, 'auth'), [k2.jwk, k1.jwk], port);
  clock.advance(2_000);
  t.equal(await codeOf(k2), 'ok', 'the real issuer again: the new key verifies');
  t.equal(back.hits, 1);
});

t.test('the mesh CA alone is not enough without a client certificate the issuer accepts', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'jwt-mesh-jwks-tls-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const certs = await createDevCerts({ dir });
  const server = await jwksServer(t, certs, pair(certs, 'auth'), [makeKey('RS256', 'a').jwk]);
  const seen: string[] = [];
  const keys = createRemoteKeySource({
    url: `https://127.0.0.1:${server.port}/.well-known/jwks.json`,
    tls: { ca: pem(certs.ca.cert), serverId: spiffeId('auth') },
    onFetchFailure: (err) => seen.push(err.reason),
  });
  await t.rejects(keys.getKey({ kid: 'a', alg: 'RS256' }), { code: 'jwks_unavailable' });
  t.same(seen, ['tls'], 'no client certificate: the handshake fails, reason tls');
});

t.test('plain http only on loopback; TLS settings need https; cert and key together', async (t) => {
  t.throws(() => createRemoteKeySource({ url: 'http://auth.jwt-mesh.svc.cluster.local:4000/.well-known/jwks.json' }), /must be https unless it is on loopback/);
  t.throws(() => createRemoteKeySource({ url: 'http://10.0.0.1/.well-known/jwks.json' }), /must be https/);
  for (const ok of ['http://127.0.0.1:4000/j', 'http://localhost:4000/j', 'http://[::1]:4000/j', 'https://auth.example/j']) {
    t.doesNotThrow(() => createRemoteKeySource({ url: ok }), ok);
  }
  t.throws(() => createRemoteKeySource({ url: 'http://127.0.0.1/j', tls: { ca: 'x' } }), /need an https url/);
  t.throws(() => createRemoteKeySource({ url: 'https://a/j', tls: { ca: 'x', cert: 'y' } }), /cert and key go together/);
  t.throws(() => createRemoteKeySource({ url: 'https://a/j', tls: { ca: 'not a PEM', cert: 'nor this', key: 'nor this' } }), /JWKS TLS: unusable certificate or key/);
  t.throws(() => readJwksTlsFiles({ caFile: '/nonexistent/ca.crt' }), /JWKS_CA_FILE: cannot read \/nonexistent\/ca\.crt/);
});
