/**
 * Verification of RFC 9068 JWT access tokens (JWS compact serialization, RFC 7515 §7.1),
 * following the JWT BCP (RFC 8725): a pinned asymmetric algorithm allowlist, explicit `typ`
 * (RFC 9068 §2.1, RFC 8725 §3.11), issuer and audience (RFC 7519 §4.1.1, §4.1.3), required
 * claims, numeric dates as integers in seconds and one clock tolerance.
 *
 * The protected header is decoded with jose's `decodeProtectedHeader`; the signature is checked
 * synchronously with `node:crypto.verify` on a `KeyObject` (jose's `jwtVerify` goes through
 * WebCrypto and is several times slower). A differential test keeps the two in agreement.
 */
import { verify as cryptoVerify, type KeyObject } from 'node:crypto';
import { decodeProtectedHeader } from 'jose';
import { NODE_VERIFY, SUPPORTED_ALGORITHMS, isSupportedAlgorithm, keyObjectMatchesAlg, type JwsAlgorithm } from './algorithms.js';
import { AuthError } from './errors.js';
import type { KeySource } from './jwks.js';
import type { AccessTokenClaims, Identity, VerifiedToken } from './types.js';

export type { JwsAlgorithm } from './algorithms.js';
export { SUPPORTED_ALGORITHMS } from './algorithms.js';

/** Options of {@link createVerifier}. */
export interface VerifierOptions {
  /** Expected `iss`, compared exactly (no trailing-slash folding). */
  issuer: string;
  /** Our audience: `aud` must equal it or be an array containing it. */
  audience: string;
  /**
   * Allowed `alg` values. Default `['RS256']`. Only `RS256`, `ES256` and `EdDSA` (Ed25519)
   * exist; anything else (`none`, `HS256`, ...) makes {@link createVerifier} throw.
   */
  algorithms?: Array<JwsAlgorithm>;
  /** Clock tolerance for `exp`, `nbf` and `iat`, in seconds. Default 30. */
  clockToleranceSec?: number;
  /** Longest accepted `exp - iat`, in seconds (the access-token lifetime). Default 300. */
  maxLifetimeSec?: number;
  /** Size cap of the compact token, in bytes, checked before any decoding. Default 8192. */
  maxTokenBytes?: number;
  /** Where keys come from: {@link createLocalKeySource} or {@link createRemoteKeySource}. */
  keys: KeySource;
  /** Clock, epoch milliseconds. Default `Date.now`. Injected by tests. */
  now?: () => number;
}

/** Defaults of {@link VerifierOptions}. */
export const VERIFIER_DEFAULTS = Object.freeze({
  algorithms: Object.freeze(['RS256'] as const),
  clockToleranceSec: 30,
  maxLifetimeSec: 300,
  maxTokenBytes: 8192,
});

/** A configured access-token verifier. */
export interface Verifier {
  /**
   * Verifies one compact JWT access token: size, structure, header, key, signature, claims.
   * Does not check revocation (see `createAuthenticator`).
   *
   * @param token - the credential from `extractBearer`
   * @returns the verified header and claims (frozen)
   * @throws AuthError with a `token_*` code, or `jwks_unavailable` from the key source
   */
  verify(token: string): Promise<VerifiedToken>;
}

/** Three base64url segments; the signature may be empty only so that `alg: none` gets its own code. */
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

/**
 * Exactly two dots, non-empty base64url header and payload, a base64url (possibly empty)
 * signature. (A regex: V8 compiles it to a tighter loop than hand-written charCodeAt code.)
 * @returns the positions of the two dots, or `null`
 */
function splitCompact(token: string): { d1: number; d2: number } | null {
  if (!COMPACT_JWS.test(token)) return null;
  const d1 = token.indexOf('.');
  return { d1, d2: token.indexOf('.', d1 + 1) };
}

/** Validated headers by their base64url segment (tokens of one key share it). Bounded. */
const HEADER_CACHE_MAX = 1024;

/** (key, alg) pairs already checked by keyObjectMatchesAlg; `asymmetricKeyDetails` is not free. */
const keyFits = new WeakMap<KeyObject, Set<JwsAlgorithm>>();
function keyFitsAlg(key: KeyObject, alg: JwsAlgorithm): boolean {
  const known = keyFits.get(key);
  if (known?.has(alg)) return true;
  if (!keyObjectMatchesAlg(key, alg)) return false;
  if (known) known.add(alg);
  else keyFits.set(key, new Set([alg]));
  return true;
}
/** `typ` per RFC 9068 §2.1, media type names compared case-insensitively (RFC 7515 §4.1.9). */
const AT_JWT = /^(?:application\/)?at\+jwt$/i;
const MAX_KID_LENGTH = 256;

function fail(code: ConstructorParameters<typeof AuthError>[0], message: string): never {
  throw new AuthError(code, message);
}

function isInt(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v);
}

function isNonEmptyString(v: unknown): v is string {
  return typeof v === 'string' && v.length > 0;
}

function checkPositiveInt(name: string, v: number): number {
  if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`${name} must be an integer >= 0`);
  return v;
}

/**
 * Builds a verifier. Options are validated once here.
 *
 * Checks, in order (each failure has its own code, see `errors.ts`):
 * 1. length <= `maxTokenBytes` (`token_too_large`), before any decoding;
 * 2. a credential without any `.` is an opaque token, e.g. a refresh token (`token_typ_invalid`);
 *    otherwise exactly three base64url segments (`token_malformed`);
 * 3. header: JSON object (`token_malformed`), no `crit` (`token_malformed`), `alg` in the
 *    allowlist (`token_alg_not_allowed`), `typ` `at+jwt` or `application/at+jwt`
 *    (`token_typ_invalid`), `kid` a non-empty string (`token_key_unknown`);
 * 4. key by `kid` + `alg` from the key source, whose type must fit `alg`
 *    (`token_key_unknown`, `jwks_unavailable`);
 * 5. signature with node:crypto (`token_signature_invalid`);
 * 6. payload a JSON object (`token_malformed`); claim types (`token_claims_invalid`):
 *    `sub` `jti` non-empty strings, `exp` `iat` (and `nbf`) integers, `scope` `sid`
 *    `client_id` strings, `roles` an array of strings; `iss` (`token_issuer_invalid`); `aud`
 *    (`token_audience_invalid`); `exp` (`token_expired`); `nbf` and `iat` not in the future
 *    (`token_not_yet_valid`); `exp - iat` (`token_lifetime_exceeded`).
 *
 * Time rules (T = now in seconds, tol = clockToleranceSec): valid while T < exp + tol
 * (RFC 7519 §4.1.4); not before nbf - tol; `iat` <= T + tol.
 *
 * @throws TypeError / RangeError for bad options (unsupported algorithm, negative durations)
 */
export function createVerifier(opts: VerifierOptions): Verifier {
  const issuer = opts.issuer;
  const audience = opts.audience;
  if (!isNonEmptyString(issuer)) throw new TypeError('issuer must be a non-empty string');
  if (!isNonEmptyString(audience)) throw new TypeError('audience must be a non-empty string');
  const algorithms = opts.algorithms ?? [...VERIFIER_DEFAULTS.algorithms];
  if (!Array.isArray(algorithms) || algorithms.length === 0) throw new TypeError('algorithms must be a non-empty array');
  for (const alg of algorithms as unknown[]) {
    if (!isSupportedAlgorithm(alg)) {
      throw new TypeError(`algorithm ${JSON.stringify(alg)} is not supported; only ${SUPPORTED_ALGORITHMS.join(', ')} (never none or HS*)`);
    }
  }
  const allowed = new Set<string>(algorithms);
  const toleranceMs = checkPositiveInt('clockToleranceSec', opts.clockToleranceSec ?? VERIFIER_DEFAULTS.clockToleranceSec) * 1000;
  const maxLifetimeSec = checkPositiveInt('maxLifetimeSec', opts.maxLifetimeSec ?? VERIFIER_DEFAULTS.maxLifetimeSec);
  const maxTokenBytes = checkPositiveInt('maxTokenBytes', opts.maxTokenBytes ?? VERIFIER_DEFAULTS.maxTokenBytes);
  const keys = opts.keys;
  if (typeof keys?.getKey !== 'function') throw new TypeError('keys must be a KeySource');
  const now = opts.now ?? Date.now;

  const headerCache = new Map<string, { alg: JwsAlgorithm; kid: string; typ: string }>();

  function parseHeader(token: string, d1: number): { alg: JwsAlgorithm; kid: string; typ: string } {
    const segment = token.slice(0, d1);
    const hit = headerCache.get(segment);
    if (hit !== undefined) return hit;
    const checked = Object.freeze(checkHeader(token));
    if (headerCache.size >= HEADER_CACHE_MAX) headerCache.clear();
    headerCache.set(segment, checked);
    return checked;
  }

  function checkHeader(token: string): { alg: JwsAlgorithm; kid: string; typ: string } {
    let header: Record<string, unknown>;
    try {
      header = decodeProtectedHeader(token) as Record<string, unknown>;
    } catch (err) {
      throw new AuthError('token_malformed', 'the JWS header is not a base64url JSON object', { cause: err });
    }
    const { alg, typ, kid } = header;
    // RFC 7515 §4.1.11: an extension we do not understand must be rejected.
    if (header['crit'] !== undefined) fail('token_malformed', 'crit header parameters are not supported');
    if (typeof alg !== 'string' || !allowed.has(alg) || !isSupportedAlgorithm(alg)) {
      fail('token_alg_not_allowed', 'alg is not in the allowlist');
    }
    if (typeof typ !== 'string' || !AT_JWT.test(typ)) fail('token_typ_invalid', 'typ is not at+jwt');
    if (!isNonEmptyString(kid) || kid.length > MAX_KID_LENGTH) fail('token_key_unknown', 'kid is missing');
    return { alg, kid, typ };
  }

  function checkSignature(token: string, dot: number, alg: JwsAlgorithm, key: KeyObject): void {
    if (!keyFitsAlg(key, alg)) fail('token_key_unknown', 'the key type does not fit alg');
    const signature = token.slice(dot + 1);
    if (signature.length === 0) fail('token_malformed', 'empty signature');
    const p = NODE_VERIFY[alg];
    let ok = false;
    try {
      ok = cryptoVerify(
        p.digest,
        Buffer.from(token.slice(0, dot), 'latin1'),
        p.dsaEncoding !== undefined ? { key, dsaEncoding: p.dsaEncoding } : p.padding !== undefined ? { key, padding: p.padding } : key,
        Buffer.from(signature, 'base64url'),
      );
    } catch {
      ok = false; // e.g. an ECDSA signature of the wrong length
    }
    if (!ok) fail('token_signature_invalid', 'signature does not verify');
  }

  function parsePayload(token: string, first: number, second: number): Record<string, unknown> {
    let payload: unknown;
    try {
      payload = JSON.parse(Buffer.from(token.slice(first + 1, second), 'base64url').toString('utf8'));
    } catch (err) {
      throw new AuthError('token_malformed', 'the payload is not JSON', { cause: err });
    }
    if (typeof payload !== 'object' || payload === null || Array.isArray(payload)) {
      fail('token_malformed', 'the payload is not a JSON object');
    }
    return payload as Record<string, unknown>;
  }

  function checkClaims(c: Record<string, unknown>): AccessTokenClaims {
    // Types first: a claim of the wrong type is never compared.
    if (!isNonEmptyString(c['sub'])) fail('token_claims_invalid', 'sub must be a non-empty string');
    if (!isNonEmptyString(c['jti'])) fail('token_claims_invalid', 'jti must be a non-empty string');
    const { exp, iat, nbf } = c;
    if (!isInt(exp)) fail('token_claims_invalid', 'exp must be an integer (seconds)');
    if (!isInt(iat)) fail('token_claims_invalid', 'iat must be an integer (seconds)');
    if (nbf !== undefined && !isInt(nbf)) fail('token_claims_invalid', 'nbf must be an integer (seconds)');
    if (c['scope'] !== undefined && typeof c['scope'] !== 'string') fail('token_claims_invalid', 'scope must be a string');
    if (c['sid'] !== undefined && !isNonEmptyString(c['sid'])) fail('token_claims_invalid', 'sid must be a non-empty string');
    if (c['client_id'] !== undefined && typeof c['client_id'] !== 'string') fail('token_claims_invalid', 'client_id must be a string');
    const roles = c['roles'];
    if (roles !== undefined && !(Array.isArray(roles) && roles.every((r) => typeof r === 'string'))) {
      fail('token_claims_invalid', 'roles must be an array of strings');
    }

    if (c['iss'] !== issuer) fail('token_issuer_invalid', 'iss does not match');
    const aud = c['aud'];
    if (!(aud === audience || (Array.isArray(aud) && aud.includes(audience)))) {
      fail('token_audience_invalid', 'aud does not contain our audience');
    }

    const nowMs = now();
    if (nowMs >= exp * 1000 + toleranceMs) fail('token_expired', 'exp has passed');
    if (nbf !== undefined && nowMs < nbf * 1000 - toleranceMs) fail('token_not_yet_valid', 'nbf is in the future');
    if (iat * 1000 - toleranceMs > nowMs) fail('token_not_yet_valid', 'iat is in the future');
    if (exp < iat) fail('token_claims_invalid', 'exp is before iat');
    if (exp - iat > maxLifetimeSec) fail('token_lifetime_exceeded', 'exp - iat is longer than the access-token lifetime');
    return c as AccessTokenClaims;
  }

  return {
    async verify(token: string): Promise<VerifiedToken> {
      if (typeof token !== 'string') fail('token_malformed', 'the token is not a string');
      // Size before anything else. Every accepted character is ASCII, so length == bytes for
      // tokens that can pass; a longer non-ASCII string is too large or malformed anyway.
      if (token.length > maxTokenBytes) fail('token_too_large', `the token is over ${maxTokenBytes} bytes`);
      if (!token.includes('.')) fail('token_typ_invalid', 'an opaque token (e.g. a refresh token) is not an access token');
      const dots = splitCompact(token);
      if (dots === null) fail('token_malformed', 'not a JWS compact serialization');
      const header = parseHeader(token, dots.d1);
      const key = await keys.getKey({ kid: header.kid, alg: header.alg });
      checkSignature(token, dots.d2, header.alg, key);
      const claims = checkClaims(parsePayload(token, dots.d1, dots.d2));
      if (Array.isArray(claims.aud)) Object.freeze(claims.aud);
      if (Array.isArray(claims.roles)) Object.freeze(claims.roles);
      return Object.freeze({ token, header, claims: Object.freeze(claims) });
    },
  };
}

/**
 * The identity of a verified token: `scope` split on spaces (RFC 9068 §2.2.3, RFC 6749 §3.3),
 * `roles` as given, `client_id` as `clientId`. Pure; throws nothing for a {@link VerifiedToken}.
 */
export function identityOf(v: VerifiedToken): Identity {
  const c = v.claims;
  const scope = typeof c.scope === 'string' ? c.scope : '';
  return Object.freeze({
    sub: c.sub,
    jti: c.jti,
    sid: typeof c.sid === 'string' ? c.sid : undefined,
    clientId: typeof c.client_id === 'string' ? c.client_id : undefined,
    scopes: Object.freeze(scope.split(' ').filter((s) => s.length > 0)),
    roles: Object.freeze(Array.isArray(c.roles) ? [...c.roles] : []),
    exp: c.exp,
    iat: c.iat,
    claims: c,
  });
}
