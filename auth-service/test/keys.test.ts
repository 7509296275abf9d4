// JWKS (RFC 7517), issuer metadata (RFC 8414), and key rotation: a token signed with a freshly
// rotated kid verifies at once through the core's remote JWKS source pointed at the app
// listening on 127.0.0.1 port 0; older keys stay published for the overlap window.
import { generateKeyPairSync } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import { createLocalKeySource, createRemoteKeySource, createVerifier } from '@jwt-mesh/core';
import { main as rotateKeyCli } from '../scripts/rotate-key.js';
import { rotateSigningKey } from '../src/keys.js';
import { createTestApp, createTestDatabase, decodeJwt, registerAndLogin, REDIS_URL, type LoginResponse } from './helpers.js';

const ALL_ALGS = 'RS256,ES256,EdDSA';

t.test('JWKS: public keys only, with kid/alg/use, short cache lifetime', async (t) => {
  const ta = await createTestApp(t, { label: 'jwks' });
  const res = await ta.app.inject({ method: 'GET', url: '/.well-known/jwks.json' });
  t.equal(res.statusCode, 200);
  t.match(res.headers['content-type'], /^application\/jwk-set\+json/);
  t.equal(res.headers['cache-control'], 'public, max-age=60');
  const { keys } = res.json() as { keys: Array<Record<string, unknown>> };
  t.equal(keys.length, 1);
  t.same(Object.keys(keys[0]!).sort(), ['alg', 'e', 'kid', 'kty', 'n', 'use']);
  t.match(keys[0], { kty: 'RSA', alg: 'RS256', use: 'sig', kid: ta.keys.signer().kid });
  const noPrivate = keys.every((k) => !['d', 'p', 'q', 'dp', 'dq', 'qi'].some((m) => m in k));
  t.ok(noPrivate, 'no private members');
  t.match(ta.logs.find((l) => l['level'] === 40)?.['msg'], /generated one and stored it in the database \(development only/);
});

t.test('openid-configuration: RFC 8414 fields under the issuer', async (t) => {
  const ta = await createTestApp(t, { label: 'oidc', env: { JWT_ISSUER: 'https://auth.example.test' } });
  const res = await ta.app.inject({ method: 'GET', url: '/.well-known/openid-configuration' });
  t.equal(res.statusCode, 200);
  t.match(res.json(), {
    issuer: 'https://auth.example.test',
    jwks_uri: 'https://auth.example.test/.well-known/jwks.json',
    token_endpoint: 'https://auth.example.test/auth/token',
    revocation_endpoint: 'https://auth.example.test/auth/revoke',
    introspection_endpoint: 'https://auth.example.test/auth/introspect',
    grant_types_supported: ['password', 'refresh_token'],
    token_endpoint_auth_methods_supported: ['none'],
    scopes_supported: Array,
  });
  t.ok((res.json() as { scopes_supported: string[] }).scopes_supported.includes('introspect'));
});

t.test('rotation: the new kid signs, verifies at once through the remote JWKS, old key overlaps then retires', async (t) => {
  const ta = await createTestApp(t, { label: 'rotate', env: { JWT_ALGORITHMS: ALL_ALGS, KEY_ROTATION_OVERLAP_SEC: '600' } });
  await ta.app.listen({ port: 0, host: '127.0.0.1' });
  const port = (ta.app.server.address() as AddressInfo).port;
  // A verifier elsewhere in the mesh: one refetch per unknown kid, then a 5 s cooldown.
  const remote = createRemoteKeySource({ url: `http://127.0.0.1:${port}/.well-known/jwks.json`, cooldownMs: 5_000, now: () => ta.clock.now() });
  const verifier = createVerifier({
    issuer: ta.config.jwt.issuer,
    audience: ta.config.jwt.audience,
    algorithms: ['RS256', 'ES256', 'EdDSA'],
    keys: remote,
    now: () => ta.clock.now(),
  });

  const before = await registerAndLogin(ta, 'rot');
  const oldKid = ta.keys.signer().kid;
  t.equal((await verifier.verify(before.tokens.access_token)).header.kid, oldKid, 'remote source loaded the first set');

  for (const alg of ['ES256', 'EdDSA', 'RS256'] as const) {
    const prevKid = ta.keys.signer().kid;
    const out: string[] = [];
    const code = await rotateKeyCli(['--alg', alg], { ...process.env, DATABASE_URL: ta.config.databaseUrl, JWT_ALGORITHMS: ALL_ALGS, KEY_ROTATION_OVERLAP_SEC: '600' }, (l) => out.push(l));
    t.equal(code, 0, `rotate-key --alg ${alg}`);
    t.match(out[0], new RegExp(`^new signing key: kid=\\S+ alg=${alg}`));
    // The CLI activated the key at the real time; rotations are also further apart than the
    // remote source's refetch cooldown.
    ta.clock.set(Math.max(ta.clock.now(), Date.now()) + 6_000);
    await ta.keys.reload(); // what the KEY_RELOAD_INTERVAL_SEC timer does
    const newKid = ta.keys.signer().kid;
    t.not(newKid, prevKid, 'a new kid signs');

    const login = await ta.app.inject({ method: 'POST', url: '/auth/login', payload: { username: before.username, password: before.password } });
    const token = (login.json() as LoginResponse).access_token;
    t.same(decodeJwt(token).header, { alg, kid: newKid, typ: 'at+jwt' });
    const verified = await verifier.verify(token);
    t.equal(verified.header.kid, newKid, `${alg} token with the new kid verifies at once (single refetch on unknown kid)`);
  }
  t.equal((await verifier.verify(before.tokens.access_token)).header.kid, oldKid, 'a token of the first key still verifies (overlap)');

  const kids = () => (ta.keys.jwks().keys as Array<{ kid: string }>).map((k) => k.kid);
  t.equal(kids().length, 4, 'all four keys published during the overlap');

  ta.clock.advance(601_000);
  await ta.keys.reload();
  t.same(kids(), [ta.keys.signer().kid], 'after the overlap only the current key is published');
  const jwks = await ta.app.inject({ method: 'GET', url: '/.well-known/jwks.json' });
  t.equal((jwks.json() as { keys: unknown[] }).keys.length, 1);
});

t.test("the app's own verifier reloads keys on an unknown kid (another replica rotated)", async (t) => {
  const url = await createTestDatabase(t);
  const a = await createTestApp(t, { label: 'replica-a', databaseUrl: url });
  const b = await createTestApp(t, { label: 'replica-b', databaseUrl: url, clock: a.clock });
  t.equal(a.keys.signer().kid, b.keys.signer().kid, 'both replicas share the DB key');
  await rotateSigningKey(a.prisma, { alg: 'RS256', overlapSec: 3600, now: new Date(a.clock.now()) });
  await a.keys.reload();
  const user = await registerAndLogin(a, 'replica');
  // b has not reloaded yet; introspection needs b to verify a token with the new kid.
  await a.prisma.user.update({ where: { id: user.userId }, data: { scopes: { push: 'introspect' } } });
  const admin = (await a.app.inject({ method: 'POST', url: '/auth/login', payload: { username: user.username, password: user.password } })).json() as LoginResponse;
  a.clock.advance(2000); // past the 1 s reload throttle
  const res = await b.app.inject({
    method: 'POST',
    url: '/auth/introspect',
    headers: { authorization: `Bearer ${admin.access_token}` },
    payload: { token: user.tokens.access_token },
  });
  t.equal(res.statusCode, 200, 'replica b reloaded and verified the new kid');
  t.equal(res.json().active, true);
});

t.test('a configured key (SIGNING_KEY_PRIVATE_JWK) signs; an unusable one stops start-up', async (t) => {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const jwk = JSON.stringify(privateKey.export({ format: 'jwk' }));
  const ta = await createTestApp(t, { label: 'configured', env: { SIGNING_KEY_ALG: 'ES256', JWT_ALGORITHMS: 'ES256', SIGNING_KEY_PRIVATE_JWK: jwk } });
  const signer = ta.keys.signer();
  t.equal(signer.alg, 'ES256');
  const row = await ta.prisma.signingKey.findUnique({ where: { kid: signer.kid } });
  t.equal(row?.privateKeyPem, null, 'the configured private key is not copied into the database');
  t.notOk(ta.logs.some((l) => l['level'] === 40), 'no development-key warning');
  const user = await registerAndLogin(ta, 'cfg');
  const v = createVerifier({ issuer: ta.config.jwt.issuer, audience: ta.config.jwt.audience, algorithms: ['ES256'], keys: createLocalKeySource(ta.keys.jwks()), now: () => ta.clock.now() });
  t.equal((await v.verify(user.tokens.access_token)).header.alg, 'ES256');

  const rsa = JSON.stringify(generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' }));
  await t.rejects(
    createTestApp(t, { label: 'badkey', databaseUrl: ta.config.databaseUrl, env: { SIGNING_KEY_ALG: 'ES256', JWT_ALGORITHMS: 'ES256', SIGNING_KEY_PRIVATE_JWK: rsa } }),
    /SIGNING_KEY_ALG: a rsa key cannot sign ES256/,
  );
});

t.test('rotate-key refuses an algorithm verifiers do not accept, and a too short overlap', async (t) => {
  const url = await createTestDatabase(t);
  const env = { ...process.env, DATABASE_URL: url, REDIS_URL };
  const errors: string[] = [];
  const origError = console.error;
  console.error = (m: string) => errors.push(m);
  try {
    t.equal(await rotateKeyCli(['--alg', 'ES256'], { ...env, JWT_ALGORITHMS: 'RS256' }, () => undefined), 2);
    t.match(errors.at(-1), /ES256 is not in JWT_ALGORITHMS/);
    t.equal(await rotateKeyCli(['--overlap-sec', '10'], env, () => undefined), 2);
    t.match(errors.at(-1), /--overlap-sec must be a whole number >= 330/);
  } finally {
    console.error = origError;
  }
  const out: string[] = [];
  t.equal(await rotateKeyCli(['--help'], env, (l) => out.push(l)), 0);
  t.match(out.join('\n'), /Usage: rotate-key/);
});
