// Differential test: for every alg, jose.jwtVerify (WebCrypto) and our node:crypto signature
// check agree on valid tokens and on tampered ones. Catches any drift in encodings
// (ECDSA r||s vs DER, RSA padding, base64url handling).
import { randomInt } from 'node:crypto';
import t from 'tap';
import { SignJWT, importJWK, jwtVerify } from 'jose';
import type { JwsAlgorithm } from '../src/algorithms.js';
import { AuthError } from '../src/errors.js';
import { createLocalKeySource } from '../src/jwks.js';
import { createVerifier } from '../src/verify.js';
import { AUDIENCE, ISSUER, makeKey } from './fixtures/tokens.js';

const ALL: JwsAlgorithm[] = ['RS256', 'ES256', 'EdDSA'];

function tamper(token: string, i: number): string {
  const parts = token.split('.') as [string, string, string];
  const which = i % 3;
  const seg = Buffer.from(parts[which]!, 'base64url');
  const pos = randomInt(seg.length);
  seg[pos] = seg[pos]! ^ (1 << randomInt(8));
  parts[which] = seg.toString('base64url');
  return parts.join('.');
}

for (const alg of ALL) {
  t.test(`${alg}: jose.jwtVerify and the core agree`, async (t) => {
    const key = makeKey(alg);
    const joseKey = await importJWK(key.jwk, alg);
    const verifier = createVerifier({ issuer: ISSUER, audience: AUDIENCE, algorithms: [alg], keys: createLocalKeySource({ keys: [key.jwk] }) });
    const ours = async (token: string) => {
      try {
        await verifier.verify(token);
        return true;
      } catch (err) {
        t.ok(err instanceof AuthError, 'mapped error');
        return false;
      }
    };
    const theirs = async (token: string) => {
      try {
        await jwtVerify(token, joseKey, { issuer: ISSUER, audience: AUDIENCE, algorithms: [alg], typ: 'at+jwt' });
        return true;
      } catch {
        return false;
      }
    };
    let agreeValid = 0;
    let agreeTampered = 0;
    for (let i = 0; i < 30; i++) {
      const now = Math.floor(Date.now() / 1000);
      const token = await new SignJWT({ scope: 'a b', sid: `s${i}`, client_id: 'c' })
        .setProtectedHeader({ alg, kid: key.kid, typ: 'at+jwt' })
        .setIssuer(ISSUER)
        .setAudience(AUDIENCE)
        .setSubject(`u${i}`)
        .setJti(`j${i}`)
        .setIssuedAt(now)
        .setExpirationTime(now + 120)
        .sign(key.privateKey);
      const [a, b] = [await ours(token), await theirs(token)];
      if (a && b) agreeValid++;
      else t.fail(`valid token: ours=${a} jose=${b}`);
      const bad = tamper(token, i);
      if (bad === token) continue;
      const [c, d] = [await ours(bad), await theirs(bad)];
      if (c === d && !c) agreeTampered++;
      else if (c === d) t.pass('tamper produced an equivalent token (both accept)');
      else t.fail(`tampered token: ours=${c} jose=${d}`);
    }
    t.equal(agreeValid, 30, 'both accept every valid token');
    t.ok(agreeTampered >= 25, `both reject tampered tokens (${agreeTampered})`);
  });
}
