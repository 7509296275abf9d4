import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import type { JwsAlgorithm } from '../src/algorithms.js';
import { AuthError, type AuthErrorCode } from '../src/errors.js';
import { createLocalKeySource, createRemoteKeySource, type KeySource } from '../src/jwks.js';
import { createVerifier, identityOf, type VerifierOptions } from '../src/verify.js';
import { AUDIENCE, ISSUER, atHeader, b64url, claims, fakeClock, makeKey, signHs256, signWith } from './fixtures/tokens.js';

const rsa = makeKey('RS256', 'rsa-1');
const ec = makeKey('ES256', 'ec-1');
const ed = makeKey('EdDSA', 'ed-1');
const KEYS = { RS256: rsa, ES256: ec, EdDSA: ed } as const;
const ALL: JwsAlgorithm[] = ['RS256', 'ES256', 'EdDSA'];
const clock = fakeClock();
const keys = createLocalKeySource({ keys: [rsa.jwk, ec.jwk, ed.jwk] });

function verifier(over: Partial<VerifierOptions> = {}) {
  return createVerifier({ issuer: ISSUER, audience: AUDIENCE, algorithms: ALL, keys, now: clock.now, ...over });
}

async function codeOf(token: string, v = verifier()): Promise<AuthErrorCode | 'ok'> {
  try {
    await v.verify(token);
    return 'ok';
  } catch (err) {
    if (!(err instanceof AuthError)) throw new Error(`unmapped error: ${String(err)}`, { cause: err });
    return err.code;
  }
}

const good = (over: Record<string, unknown> = {}, key = rsa, header: Record<string, unknown> = {}) =>
  signWith(key, atHeader(key, header), claims(clock.sec, over));

t.test('a valid access token of every alg verifies', async (t) => {
  for (const alg of ALL) {
    const key = KEYS[alg];
    const v = await verifier().verify(good({ sub: `s-${alg}` }, key));
    t.equal(v.claims.sub, `s-${alg}`);
    t.same(v.header, { alg, kid: key.kid, typ: 'at+jwt' });
    t.ok(Object.isFrozen(v.claims));
  }
  t.equal(await codeOf(good({}, rsa, { typ: 'application/at+jwt' })), 'ok', 'application/at+jwt (RFC 9068 §2.1)');
  t.equal(await codeOf(good({}, rsa, { typ: 'AT+JWT' })), 'ok', 'typ case-insensitive');
  t.equal(await codeOf(good({ aud: ['other', AUDIENCE] })), 'ok', 'audience array containing ours');
});

t.test('the default allowlist is RS256 only', async (t) => {
  const v = createVerifier({ issuer: ISSUER, audience: AUDIENCE, keys, now: clock.now });
  t.equal(await codeOf(good({}, rsa), v), 'ok');
  t.equal(await codeOf(good({}, ec), v), 'token_alg_not_allowed');
  t.equal(await codeOf(good({}, ed), v), 'token_alg_not_allowed');
});

t.test('alg none in any spelling is rejected', async (t) => {
  for (const alg of ['none', 'None', 'NONE', 'nOnE']) {
    const unsigned = `${b64url({ alg, typ: 'at+jwt', kid: rsa.kid })}.${b64url(claims(clock.sec))}.`;
    t.equal(await codeOf(unsigned), 'token_alg_not_allowed', `${alg}, empty signature`);
    const withSig = `${unsigned}c2lnbmF0dXJl`;
    t.equal(await codeOf(withSig), 'token_alg_not_allowed', `${alg}, junk signature`);
    t.throws(() => verifier({ algorithms: [alg as JwsAlgorithm] }), TypeError, `${alg} cannot be configured`);
  }
  for (const alg of ['HS256', 'HS384', 'HS512', 'PS256', 'RS512', '']) {
    t.throws(() => verifier({ algorithms: ['RS256', alg as JwsAlgorithm] }), TypeError, `${alg} cannot be configured`);
  }
});

t.test('HS256 signed with the public key as the HMAC secret is rejected', async (t) => {
  const pem = rsa.publicKey.export({ type: 'spki', format: 'pem' }) as string;
  const secrets = {
    pem,
    'pem with leading whitespace': `  \n${pem}`,
    'pkcs1 pem': rsa.publicKey.export({ type: 'pkcs1', format: 'pem' }) as string,
    'jwk json': JSON.stringify(rsa.jwk),
    'ec pem': ec.publicKey.export({ type: 'spki', format: 'pem' }) as string,
  };
  for (const [name, secret] of Object.entries(secrets)) {
    for (const alg of ['HS256', 'hs256']) {
      const token = signHs256(secret, { alg, typ: 'at+jwt', kid: rsa.kid }, claims(clock.sec));
      t.equal(await codeOf(token), 'token_alg_not_allowed', `${alg} with ${name}`);
    }
  }
});

t.test('a key embedded in the header (jwk) is never used', async (t) => {
  const attacker = makeKey('RS256', rsa.kid);
  const withOurKid = signWith(attacker, atHeader(rsa, { jwk: attacker.jwk }), claims(clock.sec));
  t.equal(await codeOf(withOurKid), 'token_signature_invalid', 'our kid: checked against our key');
  const withOwnKid = signWith(attacker, atHeader({ alg: 'RS256', kid: 'attacker' }, { jwk: attacker.jwk }), claims(clock.sec));
  t.equal(await codeOf(withOwnKid), 'token_key_unknown', 'unknown kid: no key');
  const x5c = signWith(attacker, atHeader({ alg: 'RS256', kid: 'attacker' }, { x5c: ['MIIB'] }), claims(clock.sec));
  t.equal(await codeOf(x5c), 'token_key_unknown', 'x5c ignored');
});

t.test('jku and x5u pointing at a local listener: the listener receives no request', async (t) => {
  let attackerHits = 0;
  const attacker = makeKey('RS256', 'attacker-kid');
  const evil = createServer((_req, res) => {
    attackerHits++;
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ keys: [attacker.jwk] }));
  });
  let jwksHits = 0;
  const jwks = createServer((_req, res) => {
    jwksHits++;
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ keys: [rsa.jwk] }));
  });
  const listen = (s: Server) => new Promise<number>((r) => s.listen(0, '127.0.0.1', () => r((s.address() as AddressInfo).port)));
  const evilPort = await listen(evil);
  const jwksPort = await listen(jwks);
  t.teardown(() => {
    evil.closeAllConnections();
    evil.close();
    jwks.closeAllConnections();
    jwks.close();
  });
  const remote = createRemoteKeySource({ url: `http://127.0.0.1:${jwksPort}/.well-known/jwks.json` });
  const v = verifier({ keys: remote });
  const jku = `http://127.0.0.1:${evilPort}/jwks.json`;
  for (const kid of ['attacker-kid', rsa.kid]) {
    const token = signWith(attacker, atHeader({ alg: 'RS256', kid }, { jku }), claims(clock.sec));
    t.equal(await codeOf(token, v), kid === rsa.kid ? 'token_signature_invalid' : 'token_key_unknown', `jku, kid ${kid}`);
    const x5u = signWith(attacker, atHeader({ alg: 'RS256', kid }, { x5u: jku }), claims(clock.sec));
    t.equal(await codeOf(x5u, v), kid === rsa.kid ? 'token_signature_invalid' : 'token_key_unknown', `x5u, kid ${kid}`);
  }
  t.equal(await codeOf(good({}, rsa, { jku }), v), 'ok', 'a genuine token carrying jku still uses our key');
  t.equal(attackerHits, 0, 'the jku/x5u listener got no request');
  t.equal(jwksHits, 2, 'only our JWKS was fetched: the first load, then one refetch for the unknown kid (then the cooldown)');
});

t.test('exp, iat, nbf must be integers in seconds', async (t) => {
  const bad: Array<[string, Record<string, unknown>]> = [
    ['exp missing', { exp: undefined }],
    ['exp as a string', { exp: String(clock.sec + 60) }],
    ['exp null', { exp: null }],
    ['exp true', { exp: true }],
    ['exp false', { exp: false }],
    ['exp a float', { exp: clock.sec + 60.5 }],
    ['exp in milliseconds-ish huge', { exp: 1e300 }],
    ['exp an array', { exp: [clock.sec + 60] }],
    ['iat missing', { iat: undefined }],
    ['iat as a string', { iat: String(clock.sec) }],
    ['iat null', { iat: null }],
    ['nbf as a string', { nbf: String(clock.sec) }],
    ['nbf null', { nbf: null }],
    ['nbf boolean', { nbf: true }],
    ['sub missing', { sub: undefined }],
    ['sub empty', { sub: '' }],
    ['sub a number', { sub: 42 }],
    ['jti missing', { jti: undefined }],
    ['jti empty', { jti: '' }],
    ['scope a list', { scope: ['a', 'b'] }],
    ['roles a string', { roles: 'admin' }],
    ['roles with a number', { roles: ['admin', 1] }],
    ['sid a number', { sid: 7 }],
    ['sid empty', { sid: '' }],
    ['client_id an object', { client_id: {} }],
    ['exp before iat', { exp: clock.sec - 10, iat: clock.sec }],
  ];
  for (const [name, over] of bad) t.equal(await codeOf(good(over)), 'token_claims_invalid', name);
});

t.test('clock tolerance just inside and just outside, with a fake clock', async (t) => {
  const tol = 30;
  const v = verifier({ clockToleranceSec: tol });
  const base = clock.now();
  t.teardown(() => clock.set(base));
  const iat = clock.sec;
  const exp = iat + 300;
  const token = good({ iat, exp });
  clock.set((exp + tol) * 1000 - 1);
  t.equal(await codeOf(token, v), 'ok', 'exp: 1 ms inside the tolerance');
  clock.set((exp + tol) * 1000);
  t.equal(await codeOf(token, v), 'token_expired', 'exp: at the edge of the tolerance');
  clock.set((exp + tol + 1) * 1000);
  t.equal(await codeOf(token, v), 'token_expired', 'exp: 1 s outside');

  clock.set(base);
  const nbf = clock.sec + 100;
  const early = good({ nbf, iat: clock.sec, exp: clock.sec + 300 });
  clock.set((nbf - tol) * 1000);
  t.equal(await codeOf(early, v), 'ok', 'nbf: exactly at the tolerance');
  clock.set((nbf - tol) * 1000 - 1);
  t.equal(await codeOf(early, v), 'token_not_yet_valid', 'nbf: 1 ms outside');

  clock.set(base);
  const futureIat = good({ iat: clock.sec + tol + 1, exp: clock.sec + tol + 200 });
  t.equal(await codeOf(futureIat, v), 'token_not_yet_valid', 'iat beyond the tolerance');
  const nearIat = good({ iat: clock.sec + tol, exp: clock.sec + tol + 200 });
  t.equal(await codeOf(nearIat, v), 'ok', 'iat within the tolerance');

  const strict = verifier({ clockToleranceSec: 0 });
  clock.set(exp * 1000 - 1);
  t.equal(await codeOf(token, strict), 'ok', 'no tolerance: 1 ms before exp');
  clock.set(exp * 1000);
  t.equal(await codeOf(token, strict), 'token_expired', 'no tolerance: at exp (RFC 7519 §4.1.4)');
});

t.test('issuer and audience', async (t) => {
  t.equal(await codeOf(good({ iss: 'https://evil.test' })), 'token_issuer_invalid');
  t.equal(await codeOf(good({ iss: `${ISSUER}/` })), 'token_issuer_invalid', 'exact match, no slash folding');
  t.equal(await codeOf(good({ iss: undefined })), 'token_issuer_invalid', 'missing iss');
  t.equal(await codeOf(good({ iss: 1 })), 'token_issuer_invalid');
  t.equal(await codeOf(good({ aud: undefined })), 'token_audience_invalid', 'missing aud');
  t.equal(await codeOf(good({ aud: 'other-api' })), 'token_audience_invalid', 'foreign aud');
  t.equal(await codeOf(good({ aud: ['a', 'b'] })), 'token_audience_invalid', 'array without ours');
  t.equal(await codeOf(good({ aud: [] })), 'token_audience_invalid', 'empty array');
  t.equal(await codeOf(good({ aud: `${AUDIENCE} other` })), 'token_audience_invalid', 'no substring match');
  t.equal(await codeOf(good({ aud: [AUDIENCE] })), 'ok', 'array of ours');
  t.equal(await codeOf(good({ aud: ['x', AUDIENCE] })), 'ok', 'array containing ours');
});

t.test('a refresh token or a wrong typ presented as an access token', async (t) => {
  t.equal(await codeOf('rt_9QWb7x3Hk2LmN4pR8sT1vY6zA0cE5fG'), 'token_typ_invalid', 'opaque refresh token');
  t.equal(await codeOf('Zm9vYmFyYmF6cXV4'), 'token_typ_invalid', 'opaque base64 token');
  t.equal(await codeOf(good({}, rsa, { typ: 'JWT' })), 'token_typ_invalid', 'typ JWT');
  t.equal(await codeOf(good({}, rsa, { typ: undefined })), 'token_typ_invalid', 'no typ');
  t.equal(await codeOf(good({}, rsa, { typ: 'at+jwt+x' })), 'token_typ_invalid');
  t.equal(await codeOf(good({}, rsa, { typ: 'application/jwt' })), 'token_typ_invalid');
  const idToken = signWith(rsa, { alg: 'RS256', kid: rsa.kid, typ: 'JWT' }, { ...claims(clock.sec), aud: 'web', nonce: 'n', auth_time: clock.sec });
  t.equal(await codeOf(idToken), 'token_typ_invalid', 'an ID token');
  const refreshJwt = signWith(rsa, { alg: 'RS256', kid: rsa.kid, typ: 'refresh+jwt' }, claims(clock.sec));
  t.equal(await codeOf(refreshJwt), 'token_typ_invalid', 'a JWT refresh token');
});

t.test('size cap before decoding', async (t) => {
  const huge = good({ pad: 'x'.repeat(9000) });
  t.ok(huge.length > 8192);
  t.equal(await codeOf(huge), 'token_too_large');
  t.equal(await codeOf('a'.repeat(8193)), 'token_too_large', 'even garbage is rejected by size first');
  t.equal(await codeOf(`${'!'.repeat(8193)}`), 'token_too_large');
  const small = good();
  t.equal(await codeOf(small, verifier({ maxTokenBytes: small.length })), 'ok', 'exactly at the cap');
  t.equal(await codeOf(small, verifier({ maxTokenBytes: small.length - 1 })), 'token_too_large', 'one byte over');
});

t.test('lifetime: exp - iat at most maxLifetimeSec', async (t) => {
  t.equal(await codeOf(good({ iat: clock.sec, exp: clock.sec + 300 })), 'ok', 'exactly 300 s');
  t.equal(await codeOf(good({ iat: clock.sec, exp: clock.sec + 301 })), 'token_lifetime_exceeded');
  t.equal(await codeOf(good({ iat: clock.sec, exp: clock.sec + 86400 })), 'token_lifetime_exceeded', 'a day');
  t.equal(await codeOf(good({ iat: clock.sec, exp: clock.sec + 600 }), verifier({ maxLifetimeSec: 600 })), 'ok', 'configured');
});

t.test('malformed tokens', async (t) => {
  const valid = good();
  const [h, p, s] = valid.split('.') as [string, string, string];
  const cases: Array<[string, string, AuthErrorCode]> = [
    ['two segments', `${h}.${p}`, 'token_malformed'],
    ['four segments', `${valid}.${s}`, 'token_malformed'],
    ['five segments (JWE)', `${h}.${p}.${s}.${s}.${s}`, 'token_malformed'],
    ['empty header', `.${p}.${s}`, 'token_malformed'],
    ['empty payload', `${h}..${s}`, 'token_malformed'],
    ['padding', `${h}=.${p}.${s}`, 'token_malformed'],
    ['base64 not base64url', `${h}.${p}.${s.replace(/-/g, '+')}+/`, 'token_malformed'],
    ['header not JSON', `${b64url('not json')}.${p}.${s}`, 'token_malformed'],
    ['header an array', `${b64url([1])}.${p}.${s}`, 'token_malformed'],
    ['header null', `${b64url('null')}.${p}.${s}`, 'token_malformed'],
    ['empty signature', `${h}.${p}.`, 'token_malformed'],
    ['crit header', signWith(rsa, atHeader(rsa, { crit: ['exp'], exp: 1 }), claims(clock.sec)), 'token_malformed'],
    ['payload not JSON', signWith(rsa, atHeader(rsa), 'not json'), 'token_malformed'],
    ['payload an array', signWith(rsa, atHeader(rsa), [claims(clock.sec)]), 'token_malformed'],
    ['payload a string', signWith(rsa, atHeader(rsa), '"x"'), 'token_malformed'],
    ['payload null', signWith(rsa, atHeader(rsa), 'null'), 'token_malformed'],
    ['alg missing', signWith(rsa, { typ: 'at+jwt', kid: rsa.kid }, claims(clock.sec)), 'token_alg_not_allowed'],
    ['alg a number', signWith(rsa, { alg: 256, typ: 'at+jwt', kid: rsa.kid }, claims(clock.sec)), 'token_alg_not_allowed'],
    ['alg lower-case', signWith(rsa, atHeader(rsa, { alg: 'rs256' }), claims(clock.sec)), 'token_alg_not_allowed'],
    ['kid missing', signWith(rsa, atHeader(rsa, { kid: undefined }), claims(clock.sec)), 'token_key_unknown'],
    ['kid empty', signWith(rsa, atHeader(rsa, { kid: '' }), claims(clock.sec)), 'token_key_unknown'],
    ['kid a number', signWith(rsa, atHeader(rsa, { kid: 1 }), claims(clock.sec)), 'token_key_unknown'],
    ['kid unknown', signWith(rsa, atHeader(rsa, { kid: 'nope' }), claims(clock.sec)), 'token_key_unknown'],
  ];
  for (const [name, token, code] of cases) t.equal(await codeOf(token), code, name);
});

t.test('signatures and key types', async (t) => {
  const valid = good();
  const [h, p, s] = valid.split('.') as [string, string, string];
  const flipped = Buffer.from(s, 'base64url');
  flipped[10] = flipped[10]! ^ 1;
  t.equal(await codeOf(`${h}.${p}.${flipped.toString('base64url')}`), 'token_signature_invalid', 'one bit flipped');
  t.equal(await codeOf(`${h}.${b64url(claims(clock.sec, { sub: 'admin' }))}.${s}`), 'token_signature_invalid', 'payload swapped');
  t.equal(await codeOf(`${h}.${p}.${s.slice(0, 20)}`), 'token_signature_invalid', 'truncated signature');
  const es = good({}, ec);
  const [eh, ep, esig] = es.split('.') as [string, string, string];
  t.equal(await codeOf(`${eh}.${ep}.${esig}AAAA`), 'token_signature_invalid', 'ES256 signature of the wrong length');

  // An ES256 token naming the RSA key's kid: no EC key with that kid, so no key.
  t.equal(await codeOf(signWith(ec, atHeader({ alg: 'ES256', kid: rsa.kid }), claims(clock.sec))), 'token_key_unknown', 'ES256 with an RSA kid');
  t.equal(await codeOf(signWith(ed, atHeader({ alg: 'EdDSA', kid: ec.kid }), claims(clock.sec))), 'token_key_unknown', 'EdDSA with an EC kid');
  t.equal(await codeOf(signWith(rsa, atHeader({ alg: 'RS256', kid: ed.kid }), claims(clock.sec))), 'token_key_unknown', 'RS256 with an Ed25519 kid');

  // A key source that hands back the wrong key type is caught by the verifier too.
  const wrong: KeySource = { getKey: async () => rsa.publicKey };
  t.equal(await codeOf(good({}, ec), verifier({ keys: wrong })), 'token_key_unknown', 'RSA key for an ES256 token');
  const priv: KeySource = { getKey: async () => rsa.privateKey };
  t.equal(await codeOf(good(), verifier({ keys: priv })), 'token_key_unknown', 'a private key is refused');

  // A small RSA key is ignored even if published.
  const { generateKeyPairSync } = await import('node:crypto');
  const weak = generateKeyPairSync('rsa', { modulusLength: 1024 });
  const weakKey = { alg: 'RS256' as const, kid: 'weak', privateKey: weak.privateKey };
  const weakJwks = createLocalKeySource({ keys: [{ ...weak.publicKey.export({ format: 'jwk' }), kid: 'weak' }] });
  t.equal(await codeOf(signWith(weakKey, atHeader(weakKey), claims(clock.sec)), verifier({ keys: weakJwks })), 'token_key_unknown', 'RSA-1024');
});

t.test('JWK selection: use, key_ops, alg, private members', async (t) => {
  const k = makeKey('RS256', 'sel');
  const { use: _u, alg: _a, ...bare } = k.jwk;
  const tokenFor = () => signWith(k, atHeader(k), claims(clock.sec));
  const check = async (jwks: Record<string, unknown>[]) => codeOf(tokenFor(), verifier({ keys: createLocalKeySource({ keys: jwks }) }));
  t.equal(await check([bare]), 'ok', 'no use, no alg');
  t.equal(await check([{ ...bare, use: 'enc' }]), 'token_key_unknown', 'use enc');
  t.equal(await check([{ ...bare, key_ops: ['encrypt'] }]), 'token_key_unknown', 'key_ops without verify');
  t.equal(await check([{ ...bare, key_ops: ['verify'] }]), 'ok', 'key_ops verify');
  t.equal(await check([{ ...bare, alg: 'PS256' }]), 'token_key_unknown', 'jwk alg differs');
  t.equal(await check([{ ...bare, use: 'enc' }, { ...bare }]), 'ok', 'same kid: the sig entry is chosen');
  t.equal(await check([{ kty: 'oct', kid: 'sel', k: 'c2VjcmV0' }]), 'token_key_unknown', 'oct key');
  t.equal(await check([{ kty: 'RSA', kid: 'sel', n: 'AQAB' }]), 'token_key_unknown', 'broken RSA key');
  const privJwk = k.privateKey.export({ format: 'jwk' });
  t.equal(await check([{ ...privJwk, kid: 'sel' }]), 'ok', 'private members are dropped, public part used');
  t.throws(() => createLocalKeySource({} as never), TypeError);

  const src = createLocalKeySource({ keys: [] });
  t.equal(await codeOf(tokenFor(), verifier({ keys: src })), 'token_key_unknown');
  src.update({ keys: [k.jwk] });
  t.equal(await codeOf(tokenFor(), verifier({ keys: src })), 'ok', 'update() swaps the set');
});

t.test('identityOf', async (t) => {
  const v = await verifier().verify(good({ scope: ' orders:read  orders:write ', roles: ['admin'], sid: 's9', client_id: 'cli' }));
  const id = identityOf(v);
  t.same(id.scopes, ['orders:read', 'orders:write']);
  t.same(id.roles, ['admin']);
  t.equal(id.sid, 's9');
  t.equal(id.clientId, 'cli');
  t.equal(id.sub, 'user-1');
  t.equal(id.exp, v.claims.exp);
  const bare = identityOf(await verifier().verify(good({ scope: undefined, roles: undefined, sid: undefined, client_id: undefined })));
  t.same(bare.scopes, []);
  t.same(bare.roles, []);
  t.equal(bare.sid, undefined);
  t.equal(bare.clientId, undefined);
});

t.test('bad options are refused at construction', async (t) => {
  t.throws(() => verifier({ issuer: '' }), TypeError);
  t.throws(() => verifier({ audience: '' }), TypeError);
  t.throws(() => verifier({ algorithms: [] }), TypeError);
  t.throws(() => verifier({ clockToleranceSec: -1 }), RangeError);
  t.throws(() => verifier({ maxLifetimeSec: 1.5 }), RangeError);
  t.throws(() => verifier({ keys: {} as KeySource }), TypeError);
});
