// JWKS (RFC 7517), issuer metadata (RFC 8414), and key rotation through the core's remote JWKS
// source pointed at the app listening on 127.0.0.1 port 0: two-phase rotation (the next key is
// published, and held by verifiers, before it signs; the switch happens by the injected clock),
// `rotate-key --now` (signs at once), and the overlap window of older keys.
import { generateKeyPairSync } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import { createLocalKeySource, createRemoteKeySource, createVerifier } from '@jwt-mesh/core';
import { main as rotateKeyCli } from '../scripts/rotate-key.js';
import { configFrom } from '../src/config.js';
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

t.test('rotate-key --now: the new kid signs at once, verifies at once through the remote JWKS, old key overlaps then retires', async (t) => {
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
    // Rotations further apart than the remote source's refetch cooldown.
    ta.clock.advance(6_000);
    const env = { ...process.env, DATABASE_URL: ta.config.databaseUrl, JWT_ALGORITHMS: ALL_ALGS, KEY_ROTATION_OVERLAP_SEC: '600' };
    const code = await rotateKeyCli(['--now', '--alg', alg], env, (l) => out.push(l), () => ta.clock.now());
    t.equal(code, 0, `rotate-key --now --alg ${alg}`);
    t.match(out[0], new RegExp(`^new signing key: kid=\\S+ alg=${alg} \\(signs from now \\(--now\\)`));
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

t.test('two-phase rotation: the next key is published at once, held by verifiers before it signs, signs from activatedAt', async (t) => {
  const DELAY_SEC = 90;
  const OVERLAP_SEC = 600;
  const env = { KEY_ACTIVATION_DELAY_SEC: String(DELAY_SEC), KEY_ROTATION_OVERLAP_SEC: String(OVERLAP_SEC) };
  const ta = await createTestApp(t, { label: 'two-phase', env });
  await ta.app.listen({ port: 0, host: '127.0.0.1' });
  const port = (ta.app.server.address() as AddressInfo).port;
  // A verifier with the core's defaults (60 s JWKS cache age, 5 s unknown-kid refetch cooldown).
  const remote = createRemoteKeySource({ url: `http://127.0.0.1:${port}/.well-known/jwks.json`, now: () => ta.clock.now() });
  const verifier = createVerifier({ issuer: ta.config.jwt.issuer, audience: ta.config.jwt.audience, keys: remote, now: () => ta.clock.now() });
  const published = async () =>
    ((await ta.app.inject({ method: 'GET', url: '/.well-known/jwks.json' })).json() as { keys: Array<{ kid: string }> }).keys.map((k) => k.kid).sort();
  const user = await registerAndLogin(ta, 'twophase');
  const loginKid = async () => {
    const res = await ta.app.inject({ method: 'POST', url: '/auth/login', payload: { username: user.username, password: user.password } });
    const token = (res.json() as LoginResponse).access_token;
    return { token, kid: decodeJwt(token).header['kid'] };
  };
  const oldKid = ta.keys.signer().kid;
  t.equal((await verifier.verify(user.tokens.access_token)).header.kid, oldKid);
  t.equal(remote.stats().fetches, 1, 'the verifier loaded the set once');

  const t0 = ta.clock.now();
  const activatesAt = t0 + DELAY_SEC * 1000;
  const cliEnv = { ...process.env, DATABASE_URL: ta.config.databaseUrl, REDIS_URL, ...env };
  const out: string[] = [];
  t.equal(await rotateKeyCli([], cliEnv, (l) => out.push(l), () => ta.clock.now()), 0, 'rotate-key (two-phase by default)');
  const newKid = /kid=(\S+)/.exec(out[0] ?? '')?.[1] ?? '';
  t.match(out[0], `(published now, signs from ${new Date(activatesAt).toISOString()}, in ${DELAY_SEC}s)`);
  t.match(out.join('\n'), /every verifier must refresh its JWKS within 85s/);
  t.notMatch(out.join('\n'), /warning/, 'no warning: 85 s exceeds the verifiers\' 60 s cache age');
  await ta.keys.reload(); // what the KEY_RELOAD_INTERVAL_SEC timer does

  t.same(await published(), [oldKid, newKid].sort(), 'the JWKS publishes the current and the next key at once');
  t.equal(ta.keys.signer().kid, oldKid, 'the old key keeps signing');
  t.equal((await loginKid()).kid, oldKid, 'tokens issued before activation carry the old kid');
  const listed: string[] = [];
  t.equal(await rotateKeyCli(['--list'], cliEnv, (l) => listed.push(l), () => ta.clock.now()), 0);
  t.match(listed.find((l) => l.includes(newKid)), `published, signs from ${new Date(activatesAt).toISOString()}`);
  t.match(listed.find((l) => l.includes(oldKid)), `signing, published until ${new Date(activatesAt + OVERLAP_SEC * 1000).toISOString()}`);

  // The verifier's set is older than its cache age: the next lookup refreshes it in the background.
  ta.clock.advance(61_000);
  await verifier.verify(user.tokens.access_token);
  t.equal(remote.stats().fetches, 2, 'background refresh started by a lookup of a known kid');
  while (remote.stats().lastSuccessAt !== ta.clock.now() && !remote.stats().lastFetchFailed) await sleep(5);
  t.equal(remote.stats().lastFetchFailed, false, 'background refresh succeeded');

  // An attacker's random kid just before activation opens the refetch cooldown (the fault the
  // reliability suite found: a new kid arriving inside it was rejected).
  ta.clock.set(activatesAt - 2_000);
  await t.rejects(remote.getKey({ kid: 'attacker-random-1', alg: 'RS256' }), { code: 'token_key_unknown' });
  const fetchesBefore = remote.stats().fetches;

  ta.clock.set(activatesAt - 1);
  t.equal(ta.keys.signer().kid, oldKid, '1 ms before activatedAt the old key signs');
  ta.clock.set(activatesAt);
  t.equal(ta.keys.signer().kid, newKid, 'at activatedAt the new key signs, without a reload');
  const fresh = await loginKid();
  t.equal(fresh.kid, newKid, 'tokens issued from activation carry the new kid');
  await t.rejects(remote.getKey({ kid: 'attacker-random-2', alg: 'RS256' }), { code: 'token_key_unknown' }, 'still inside the cooldown');
  t.equal((await verifier.verify(fresh.token)).header.kid, newKid, 'the first new-kid token verifies inside the attacker-opened cooldown');
  t.equal(remote.stats().fetches, fetchesBefore, 'with no fetch: the verifier already held the key');
  t.equal((await verifier.verify(user.tokens.access_token)).header.kid, oldKid, 'tokens of the old key still verify');

  const oldRow = await ta.prisma.signingKey.findUnique({ where: { kid: oldKid } });
  t.equal(oldRow?.retiresAt?.getTime(), activatesAt + OVERLAP_SEC * 1000, 'the old key retires at activation + overlap');
  ta.clock.set(activatesAt + OVERLAP_SEC * 1000 - 1_000);
  await ta.keys.reload();
  t.same(await published(), [oldKid, newKid].sort(), 'the old key stays published for the overlap');
  ta.clock.set(activatesAt + OVERLAP_SEC * 1000 + 1);
  await ta.keys.reload();
  t.same(await published(), [newKid], 'then only the new key');
});

t.test('KEY_ACTIVATION_DELAY_SEC: default 150, >= 0, 0 or more than KEY_RELOAD_INTERVAL_SEC', async (t) => {
  t.equal(configFrom({}).signingKey.activationDelaySec, 150);
  t.equal(configFrom({ KEY_ACTIVATION_DELAY_SEC: '0' }).signingKey.activationDelaySec, 0, '0 = sign at once');
  t.throws(() => configFrom({ KEY_ACTIVATION_DELAY_SEC: '-1' }), /KEY_ACTIVATION_DELAY_SEC: must be a whole number/);
  t.throws(() => configFrom({ KEY_ACTIVATION_DELAY_SEC: '5' }), /KEY_ACTIVATION_DELAY_SEC: must be 0 \(sign at once\) or more than KEY_RELOAD_INTERVAL_SEC = 5 \(got 5\)/);
  t.equal(configFrom({ KEY_ACTIVATION_DELAY_SEC: '2', KEY_RELOAD_INTERVAL_SEC: '1' }).signingKey.activationDelaySec, 2);
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
    t.equal(await rotateKeyCli(['--activate-in', '5'], env, () => undefined), 2);
    t.match(errors.at(-1), /--activate-in must be a whole number > KEY_RELOAD_INTERVAL_SEC \(5\); use --now/);
    t.equal(await rotateKeyCli(['--now', '--activate-in', '60'], env, () => undefined), 2);
    t.match(errors.at(-1), /--now and --activate-in exclude each other/);
    t.equal(await rotateKeyCli([], { ...env, KEY_ACTIVATION_DELAY_SEC: '3' }, () => undefined), 2);
    t.match(errors.at(-1), /KEY_ACTIVATION_DELAY_SEC: must be 0/);
  } finally {
    console.error = origError;
  }
  const out: string[] = [];
  t.equal(await rotateKeyCli(['--help'], env, (l) => out.push(l)), 0);
  t.match(out.join('\n'), /Usage: rotate-key/);
  t.match(out.join('\n'), /--now .*emergency/);
  t.match(out.join('\n'), /--activate-in <sec>/);

  // A delay that does not exceed the verifiers' cache age is allowed, with a warning.
  const warned: string[] = [];
  t.equal(await rotateKeyCli(['--activate-in', '30'], env, (l) => warned.push(l)), 0);
  t.match(warned.join('\n'), /warning: 25s is not more than the verifiers' JWKS cache age \(60s\)/);
});
