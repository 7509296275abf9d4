/**
 * Property-based tests (fast-check) of the RFC 9068 claims checks in `createVerifier`, with
 * payloads signed by real keys (so every case gets past the signature and exercises the claims).
 *
 * Properties:
 * 1. For any payload JSON (objects built from valid claims with any claim dropped or replaced
 *    by any JSON value, plus arbitrary extra claims; and arbitrary JSON documents), `verify`
 *    either returns a token whose claims satisfy every rule (checked here by an independent
 *    oracle) or throws an AuthError with a `token_*` code. Never another error.
 * 2. `exp`, `iat` or `nbf` of any non-integer type (string, float, boolean, null, array, object,
 *    numbers outside the safe-integer range) is always rejected with `token_claims_invalid`.
 * 3. Arbitrary headers (any `alg`, `typ`, `kid`, extra members such as `jku`/`jwk`/`x5u`/`crit`)
 *    over a valid payload: accepted only with an allowed alg, the matching key, `typ` at+jwt and
 *    no `crit`; otherwise a `token_*` AuthError.
 * 4. Arbitrary strings as tokens: never anything but a `token_*` AuthError (or a verified token,
 *    which a random string never is).
 *
 * Time is a fake clock. A failure prints fast-check's seed and path for replay.
 */
import fc from 'fast-check';
import t from 'tap';
import { AuthError, type AuthErrorCode } from '../../src/errors.js';
import { createLocalKeySource } from '../../src/jwks.js';
import { createVerifier } from '../../src/verify.js';
import type { VerifiedToken } from '../../src/types.js';
import { AUDIENCE, ISSUER, atHeader, b64url, claims, fakeClock, makeKey, signWith } from '../fixtures/tokens.js';

const RUNS = Number(process.env['FC_RUNS'] ?? 1000);
const TOLERANCE_SEC = 30;
const MAX_LIFETIME_SEC = 300;

const ed = makeKey('EdDSA', 'prop-ed');
const ec = makeKey('ES256', 'prop-ec');
const rsa = makeKey('RS256', 'prop-rsa');
const clock = fakeClock();
const NOW = clock.sec;
const verifier = createVerifier({
  issuer: ISSUER,
  audience: AUDIENCE,
  algorithms: ['EdDSA', 'ES256', 'RS256'],
  clockToleranceSec: TOLERANCE_SEC,
  maxLifetimeSec: MAX_LIFETIME_SEC,
  keys: createLocalKeySource({ keys: [ed.jwk, ec.jwk, rsa.jwk] }),
  now: clock.now,
});

type Outcome = { ok: VerifiedToken } | { code: AuthErrorCode };

async function outcome(token: string): Promise<Outcome> {
  try {
    return { ok: await verifier.verify(token) };
  } catch (err) {
    if (err instanceof AuthError) return { code: err.code };
    throw new Error(`unmapped error from verify: ${String(err)}`, { cause: err });
  }
}

const isSafeInt = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v);
const isNonEmpty = (v: unknown): v is string => typeof v === 'string' && v.length > 0;

/** Every rule of verify.ts's contract, written out independently. Returns the broken rule or null. */
function brokenRule(c: Record<string, unknown>): string | null {
  if (c['iss'] !== ISSUER) return 'iss';
  const aud = c['aud'];
  if (!(aud === AUDIENCE || (Array.isArray(aud) && aud.includes(AUDIENCE)))) return 'aud';
  if (!isNonEmpty(c['sub'])) return 'sub';
  if (!isNonEmpty(c['jti'])) return 'jti';
  const { exp, iat, nbf } = c;
  if (!isSafeInt(exp)) return 'exp type';
  if (!isSafeInt(iat)) return 'iat type';
  if (nbf !== undefined && !isSafeInt(nbf)) return 'nbf type';
  if (!(NOW < exp + TOLERANCE_SEC)) return 'exp passed';
  if (typeof nbf === 'number' && NOW < nbf - TOLERANCE_SEC) return 'nbf future';
  if (iat - TOLERANCE_SEC > NOW) return 'iat future';
  if (exp < iat) return 'exp before iat';
  if (exp - iat > MAX_LIFETIME_SEC) return 'lifetime';
  if (c['scope'] !== undefined && typeof c['scope'] !== 'string') return 'scope';
  if (c['sid'] !== undefined && !isNonEmpty(c['sid'])) return 'sid';
  if (c['client_id'] !== undefined && typeof c['client_id'] !== 'string') return 'client_id';
  const roles = c['roles'];
  if (roles !== undefined && !(Array.isArray(roles) && roles.every((r) => typeof r === 'string'))) return 'roles';
  return null;
}

/** Numbers near the rule boundaries (now, tolerance, lifetime) and far from them. */
const timeValue = fc.oneof(
  fc.integer({ min: NOW - 2 * MAX_LIFETIME_SEC, max: NOW + 2 * MAX_LIFETIME_SEC }),
  fc.constantFrom(NOW - TOLERANCE_SEC, NOW - TOLERANCE_SEC - 1, NOW + TOLERANCE_SEC, NOW + TOLERANCE_SEC + 1, 0, -1, Number.MAX_SAFE_INTEGER),
  fc.integer(),
);
/** Values of any JSON type, biased towards the confusing ones (numeric strings, floats, big numbers). */
const nonIntegerTime = fc.oneof(
  fc.double({ noNaN: true, noDefaultInfinity: true }).filter((d) => !Number.isSafeInteger(d)),
  fc.integer({ min: NOW - 100, max: NOW + 100 }).map((n) => n + 0.5),
  fc.integer({ min: NOW - 100, max: NOW + 100 }).map(String),
  fc.constantFrom(1e21, -1e21, 2 ** 53, -(2 ** 53), 9007199254740993, true, false, null, '', '1e3', [], {}),
  fc.array(fc.integer(), { minLength: 1, maxLength: 2 }),
  fc.dictionary(fc.string({ maxLength: 4 }), fc.integer(), { maxKeys: 2 }),
);
const anyJson = fc.jsonValue({ maxDepth: 3 });

/** A hostile value for one claim: near-valid, of another type, or dropped (undefined). */
function claimArb(name: string): fc.Arbitrary<unknown> {
  const specific: Record<string, fc.Arbitrary<unknown>> = {
    iss: fc.constantFrom(ISSUER, `${ISSUER}/`, ISSUER.toUpperCase(), '', 'https://evil.test'),
    aud: fc.oneof(
      fc.constantFrom(AUDIENCE, [AUDIENCE], ['other', AUDIENCE], ['other'], [], `${AUDIENCE} `, AUDIENCE.toUpperCase()),
      fc.array(fc.oneof(fc.constant(AUDIENCE), anyJson), { maxLength: 3 }),
    ),
    exp: fc.oneof(timeValue, nonIntegerTime),
    iat: fc.oneof(timeValue, nonIntegerTime),
    nbf: fc.oneof(timeValue, nonIntegerTime),
    sub: fc.oneof(fc.string({ maxLength: 8 }), anyJson),
    jti: fc.oneof(fc.string({ maxLength: 8 }), anyJson),
    sid: fc.oneof(fc.string({ maxLength: 8 }), anyJson),
    scope: fc.oneof(fc.string({ maxLength: 8 }), anyJson),
    client_id: fc.oneof(fc.string({ maxLength: 8 }), anyJson),
    roles: fc.oneof(fc.array(fc.string({ maxLength: 6 }), { maxLength: 3 }), fc.array(anyJson, { maxLength: 3 }), anyJson),
  };
  return fc.oneof({ weight: 1, arbitrary: fc.constant(undefined) }, { weight: 4, arbitrary: specific[name] ?? anyJson });
}

const CLAIM_NAMES = ['iss', 'sub', 'aud', 'exp', 'iat', 'nbf', 'jti', 'client_id', 'scope', 'sid', 'roles'] as const;
/**
 * A payload: valid claims (with `nbf`), zero to four of them dropped or replaced by a hostile
 * value, plus arbitrary extra claims.
 */
const payloadArb = fc
  .tuple(
    fc.subarray([...CLAIM_NAMES], { maxLength: 4 }).chain((names) => fc.tuple(fc.constant(names), fc.tuple(...names.map((n) => claimArb(n))))),
    fc.dictionary(fc.string({ maxLength: 10 }), anyJson, { maxKeys: 3 }),
  )
  .map(([[names, values], extra]) => {
    const p: Record<string, unknown> = { ...extra, ...claims(NOW, { nbf: NOW - 10 }) };
    names.forEach((n, i) => {
      if (values[i] !== undefined) p[n] = values[i];
      else delete p[n];
    });
    return p;
  });
const keyArb = fc.constantFrom(ed, ec, rsa);

t.test('any payload: a verified token satisfies every rule, anything else is a token_* AuthError', async (t) => {
  const seen = new Map<string, number>();
  await fc.assert(
    fc.asyncProperty(fc.oneof({ weight: 5, arbitrary: payloadArb }, { weight: 1, arbitrary: anyJson }), fc.constantFrom(ed, ec), async (payload, key) => {
      const token = signWith(key, atHeader(key), payload);
      const o = await outcome(token);
      // What the verifier saw: the payload after a JSON round trip.
      const wire = JSON.parse(JSON.stringify(payload)) as unknown;
      if ('ok' in o) {
        seen.set('ok', (seen.get('ok') ?? 0) + 1);
        if (typeof wire !== 'object' || wire === null || Array.isArray(wire)) throw new Error('accepted a non-object payload');
        const broken = brokenRule(o.ok.claims as Record<string, unknown>);
        if (broken !== null) throw new Error(`accepted a token breaking rule "${broken}": ${JSON.stringify(payload)}`);
        if (JSON.stringify(o.ok.claims) !== JSON.stringify(wire)) throw new Error('the returned claims differ from the signed payload');
      } else {
        seen.set(o.code, (seen.get(o.code) ?? 0) + 1);
        if (!o.code.startsWith('token_')) throw new Error(`unexpected code ${o.code} for ${JSON.stringify(payload)}`);
        // The oracle agrees that something is wrong.
        if (typeof wire === 'object' && wire !== null && !Array.isArray(wire) && brokenRule(wire as Record<string, unknown>) === null) {
          throw new Error(`rejected (${o.code}) a payload that satisfies every rule: ${JSON.stringify(payload)}`);
        }
      }
    }),
    { numRuns: RUNS },
  );
  t.ok((seen.get('ok') ?? 0) > 0, 'some payloads were valid');
  t.comment(`outcomes: ${JSON.stringify(Object.fromEntries([...seen].sort()))}`);
});

t.test('exp, iat or nbf of a non-integer type is always token_claims_invalid', async (t) => {
  await fc.assert(
    fc.asyncProperty(fc.constantFrom('exp', 'iat', 'nbf'), nonIntegerTime, keyArb, async (name, value, key) => {
      const wireValue = JSON.parse(JSON.stringify({ v: value })).v as unknown;
      if (isSafeInt(wireValue)) return; // e.g. 2**53 - 1 after a round trip: not a non-integer on the wire
      const token = signWith(key, atHeader(key), { ...claims(NOW), nbf: NOW - 10, [name]: value });
      const o = await outcome(token);
      if (!('code' in o) || o.code !== 'token_claims_invalid') throw new Error(`${name}=${JSON.stringify(value)}: ${JSON.stringify('ok' in o ? 'accepted' : o)}`);
    }),
    { numRuns: RUNS },
  );
  t.pass(`${RUNS} runs`);
});

t.test('arbitrary headers over a valid payload: only an allowed alg with its key and typ at+jwt passes', async (t) => {
  /** Mostly the right value for the signing key, sometimes a hostile one; key-bearing extras that must be ignored. */
  const headerArb = (key: typeof ed) =>
    fc.record(
      {
        alg: fc.oneof(
          { weight: 3, arbitrary: fc.constant<unknown>(key.alg) },
          { weight: 2, arbitrary: fc.oneof(fc.constantFrom('EdDSA', 'ES256', 'RS256', 'none', 'None', 'HS256', 'RS512', 'PS256', 'ES384', 'eddsa', ''), anyJson) },
        ),
        kid: fc.oneof(
          { weight: 3, arbitrary: fc.constant<unknown>(key.kid) },
          { weight: 2, arbitrary: fc.oneof(fc.constantFrom(ed.kid, ec.kid, rsa.kid, 'unknown', '', '../../etc/passwd', 'x'.repeat(300)), anyJson) },
        ),
        typ: fc.oneof(
          { weight: 3, arbitrary: fc.constantFrom<unknown>('at+jwt', 'AT+JWT', 'application/at+jwt') },
          { weight: 2, arbitrary: fc.oneof(fc.constantFrom('JWT', 'jwt', 'at+jwt ', '', 'application/jwt'), anyJson) },
        ),
        jku: fc.constant('http://127.0.0.1:1/jwks.json'),
        x5u: fc.constant('http://127.0.0.1:1/cert.pem'),
        jwk: fc.constant(key.jwk),
        x5c: fc.constant(['MIIB']),
        extra: anyJson,
        crit: fc.constantFrom(['exp'], []),
      },
      { requiredKeys: ['alg', 'kid', 'typ'] },
    ).map((h) => {
      // crit only now and then: it makes everything else moot.
      if (h.crit !== undefined && (JSON.stringify(h.extra ?? 0).length & 3) !== 0) delete h.crit;
      return h;
    });
  const seen = new Map<string, number>();
  await fc.assert(
    fc.asyncProperty(keyArb.chain((key) => fc.tuple(headerArb(key), fc.constant(key))), async ([header, key]) => {
      const token = signWith(key, header, claims(NOW));
      const o = await outcome(token);
      const name = 'ok' in o ? 'ok' : o.code;
      seen.set(name, (seen.get(name) ?? 0) + 1);
      if ('code' in o) {
        if (!o.code.startsWith('token_')) throw new Error(`unexpected code ${o.code}`);
        return;
      }
      const h = header as Record<string, unknown>;
      const fits = h['alg'] === key.alg && h['kid'] === key.kid && typeof h['typ'] === 'string' && /^(application\/)?at\+jwt$/i.test(h['typ']);
      if (!fits || h['crit'] !== undefined) throw new Error(`accepted header ${JSON.stringify(header)} signed with ${key.kid}`);
    }),
    { numRuns: RUNS },
  );
  t.ok((seen.get('ok') ?? 0) > 0, 'some headers were valid');
  t.comment(`outcomes: ${JSON.stringify(Object.fromEntries([...seen].sort()))}`);
});

t.test('arbitrary strings and segment soups as tokens: only token_* AuthErrors', async (t) => {
  const validToken = signWith(ed, atHeader(ed), claims(NOW));
  const [h, p, s] = validToken.split('.') as [string, string, string];
  const segment = fc.oneof(
    fc.constantFrom(h, p, s, '', '=', '==', 'e30', b64url('null'), b64url('[]'), b64url('"x"'), `${h}=`, h.replace(/-/g, '+').replace(/_/g, '/')),
    fc.base64String({ maxLength: 40 }),
    fc.string({ unit: 'binary', maxLength: 20 }),
  );
  const soup = fc.array(segment, { minLength: 1, maxLength: 5 }).map((parts) => parts.join('.'));
  await fc.assert(
    fc.asyncProperty(fc.oneof(soup, fc.string({ unit: 'binary', maxLength: 300 }), fc.string({ minLength: 8000, maxLength: 9000 })), async (token) => {
      const o = await outcome(token);
      if ('code' in o) {
        if (!o.code.startsWith('token_')) throw new Error(`unexpected code ${o.code}`);
      } else if (token !== validToken) {
        throw new Error(`accepted ${JSON.stringify(token.slice(0, 200))}`);
      }
    }),
    { numRuns: RUNS },
  );
  t.pass(`${RUNS} runs`);
});
