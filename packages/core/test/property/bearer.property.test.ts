/**
 * Property-based tests (fast-check) of the RFC 6750 §2.1 Bearer parser, `extractBearer`.
 *
 * Properties:
 * 1. Whatever the headers (any strings, including lone surrogates and control characters, any
 *    arrays, other header names), it returns a string or throws an AuthError whose code is one
 *    of `credentials_*`. Nothing else escapes.
 * 2. `Bearer <x>` is accepted exactly when `x` (less the separating spaces and trailing OWS) is
 *    a `b64token`: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`. The oracle is
 *    a hand-written scanner, independent of the regex in bearer.ts.
 * 3. The scheme name is case-insensitive: any casing of `bearer` gives the same answer.
 * 4. A Bearer credential joined to anything by a comma, or any two or more header values, is
 *    always `credentials_multiple`.
 *
 * A failure prints fast-check's seed and path; replay with `{ seed, path }` in `fc.assert`.
 */
import fc from 'fast-check';
import t from 'tap';
import { extractBearer } from '../../src/bearer.js';
import { AuthError, type AuthErrorCode } from '../../src/errors.js';
import type { AuthRequest } from '../../src/types.js';

const RUNS = Number(process.env['FC_RUNS'] ?? 2000);

type Outcome = { ok: string } | { code: AuthErrorCode };

/** Runs the parser; anything thrown that is not an AuthError is re-thrown (fails the property). */
function outcome(headers: AuthRequest['headers']): Outcome {
  try {
    return { ok: extractBearer(headers) };
  } catch (err) {
    if (err instanceof AuthError) return { code: err.code };
    throw new Error(`unmapped error from extractBearer: ${String(err)}`, { cause: err });
  }
}

const B64TOKEN_CHARS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/';

/** The RFC 6750 b64token grammar, as a scanner: one or more token chars, then only `=`. */
function isB64token(s: string): boolean {
  let i = 0;
  while (i < s.length && B64TOKEN_CHARS.includes(s[i] as string)) i++;
  if (i === 0) return false;
  while (i < s.length && s[i] === '=') i++;
  return i === s.length;
}

/** Removes trailing SP / HTAB (optional whitespace after a field value, RFC 9110 §5.5). */
function trimTrailingOws(s: string): string {
  let end = s.length;
  while (end > 0 && (s[end - 1] === ' ' || s[end - 1] === '\t')) end--;
  return s.slice(0, end);
}

/** Any casing of "bearer". */
const bearerScheme = fc
  .array(fc.boolean(), { minLength: 6, maxLength: 6 })
  .map((upper) => [...'bearer'].map((c, i) => (upper[i] ? c.toUpperCase() : c)).join(''));

/** Characters that stress the grammar: token chars, `=`, separators, controls, non-ASCII. */
const hostileChar = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(...B64TOKEN_CHARS) },
  { weight: 2, arbitrary: fc.constant('=') },
  { weight: 1, arbitrary: fc.constantFrom(' ', '\t', ',', ';', '"', '\\', ':', '@', '%', '!', '#', '*') },
  { weight: 1, arbitrary: fc.constantFrom('\u0000', '\r', '\n', '\u000b', '\u007f', '\u0085', '\u00a0', '\u2028', '\ufeff') },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }) },
);
const hostileString = fc.array(hostileChar, { maxLength: 80 }).map((cs) => cs.join(''));
/** A valid b64token (what a compact JWT always is). */
const b64token = fc
  .tuple(fc.array(fc.constantFrom(...B64TOKEN_CHARS), { minLength: 1, maxLength: 120 }), fc.nat({ max: 3 }))
  .map(([cs, pad]) => cs.join('') + '='.repeat(pad));
const ows = fc.array(fc.constantFrom(' ', '\t'), { maxLength: 3 }).map((cs) => cs.join(''));
/** Any string at all, including lone surrogates. */
const anyString = fc.oneof(fc.string({ unit: 'binary', maxLength: 200 }), hostileString);
const headerValue = fc.oneof(
  anyString,
  fc.array(anyString, { maxLength: 4 }),
  fc.constant(undefined),
  bearerScheme.chain((s) => hostileString.map((x) => `${s} ${x}`)),
);

t.test('never throws anything but AuthError credentials_* (arbitrary headers)', async (t) => {
  fc.assert(
    fc.property(
      fc.dictionary(fc.oneof(fc.constant('authorization'), fc.string({ maxLength: 20 })), headerValue, { maxKeys: 5 }),
      headerValue,
      (headers, authorization) => {
        for (const h of [headers, { ...headers, authorization }]) {
          const o = outcome(h as AuthRequest['headers']);
          if ('code' in o) {
            if (!o.code.startsWith('credentials_')) throw new Error(`unexpected code ${o.code}`);
          } else if (typeof o.ok !== 'string' || !isB64token(o.ok)) {
            throw new Error(`returned a non-b64token credential ${JSON.stringify(o.ok)}`);
          }
        }
      },
    ),
    { numRuns: RUNS },
  );
  t.pass(`${RUNS} runs`);
});

t.test('Bearer <x> is accepted exactly when x is a b64token (RFC 6750 §2.1)', async (t) => {
  fc.assert(
    fc.property(bearerScheme, fc.oneof(hostileString, b64token), ows, fc.integer({ min: 1, max: 3 }), (scheme, x, lead, spaces) => {
      const value = `${lead}${scheme}${' '.repeat(spaces)}${x}`;
      const o = outcome({ authorization: value });
      const candidate = trimTrailingOws(x).replace(/^ +/, '');
      if (x.includes(',')) {
        if (!('code' in o) || o.code !== 'credentials_multiple') throw new Error(`comma: expected credentials_multiple, got ${JSON.stringify(o)}`);
        return;
      }
      if (isB64token(candidate)) {
        if (!('ok' in o) || o.ok !== candidate) throw new Error(`expected ${JSON.stringify(candidate)}, got ${JSON.stringify(o)}`);
      } else if (!('code' in o) || o.code !== 'credentials_malformed') {
        throw new Error(`expected credentials_malformed for ${JSON.stringify(value)}, got ${JSON.stringify(o)}`);
      }
    }),
    { numRuns: RUNS },
  );
  t.pass(`${RUNS} runs`);
});

t.test('the scheme is case-insensitive: every casing gives the same answer', async (t) => {
  fc.assert(
    fc.property(bearerScheme, bearerScheme, fc.oneof(b64token, hostileString), (a, b, x) => {
      const left = outcome({ authorization: `${a} ${x}` });
      const right = outcome({ authorization: `${b} ${x}` });
      if (JSON.stringify(left) !== JSON.stringify(right)) throw new Error(`${a} vs ${b}: ${JSON.stringify(left)} != ${JSON.stringify(right)}`);
    }),
    { numRuns: RUNS },
  );
  fc.assert(
    fc.property(bearerScheme, b64token, ows, ows, (scheme, token, lead, trail) => {
      const o = outcome({ authorization: `${lead}${scheme} ${token}${trail}` });
      if (!('ok' in o) || o.ok !== token) throw new Error(`expected the token back, got ${JSON.stringify(o)}`);
    }),
    { numRuns: RUNS },
  );
  t.pass(`${RUNS * 2} runs`);
});

t.test('a comma-joined Bearer credential or two header values is always credentials_multiple', async (t) => {
  const bearerValue = fc.tuple(bearerScheme, fc.oneof(b64token, hostileString)).map(([s, x]) => `${s} ${x}`);
  fc.assert(
    fc.property(bearerValue, anyString, fc.boolean(), ows, (bearer, other, bearerFirst, space) => {
      const value = bearerFirst ? `${bearer},${space}${other}` : `${other},${space.replace(/\t/g, ' ')}${bearer}`;
      const o = outcome({ authorization: value });
      if (!('code' in o) || o.code !== 'credentials_multiple') throw new Error(`${JSON.stringify(value)}: ${JSON.stringify(o)}`);
    }),
    { numRuns: RUNS },
  );
  fc.assert(
    fc.property(fc.array(fc.oneof(anyString, bearerValue), { minLength: 2, maxLength: 5 }), (values) => {
      const o = outcome({ authorization: values });
      if (!('code' in o) || o.code !== 'credentials_multiple') throw new Error(`${JSON.stringify(values)}: ${JSON.stringify(o)}`);
    }),
    { numRuns: RUNS },
  );
  t.pass(`${RUNS * 2} runs`);
});

t.test('a one-element array means the same as the plain value', async (t) => {
  fc.assert(
    fc.property(fc.oneof(anyString, bearerScheme.chain((s) => fc.oneof(b64token, hostileString).map((x) => `${s} ${x}`))), (v) => {
      const a = outcome({ authorization: v });
      const b = outcome({ authorization: [v] });
      if (JSON.stringify(a) !== JSON.stringify(b)) throw new Error(`${JSON.stringify(v)}: ${JSON.stringify(a)} != ${JSON.stringify(b)}`);
    }),
    { numRuns: RUNS },
  );
  t.pass(`${RUNS} runs`);
});
