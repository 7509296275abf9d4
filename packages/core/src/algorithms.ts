/**
 * The asymmetric JWS algorithms the core accepts, and how each one is checked with
 * `node:crypto` (RFC 7518 §3.3 RS256, §3.4 ES256; RFC 8037 §3.1 EdDSA with Ed25519).
 *
 * `none` (in any spelling) and every HMAC algorithm (HS256/384/512) are absent on purpose:
 * RFC 8725 §2.1 and §3.1. With HS* a verifier holding only public keys could be fooled into
 * using a public key as an HMAC secret.
 */
import { constants, type KeyObject } from 'node:crypto';
import type { JWK } from 'jose';

/** A JWS `alg` the core can verify. */
export type JwsAlgorithm = 'RS256' | 'ES256' | 'EdDSA';

/** Every supported algorithm, in the order of preference used by documentation. */
export const SUPPORTED_ALGORITHMS: readonly JwsAlgorithm[] = Object.freeze(['RS256', 'ES256', 'EdDSA']);

/** Type guard: `alg` is one of {@link SUPPORTED_ALGORITHMS} (exact, case-sensitive match). */
export function isSupportedAlgorithm(alg: unknown): alg is JwsAlgorithm {
  return alg === 'RS256' || alg === 'ES256' || alg === 'EdDSA';
}

/** Minimum RSA modulus for RS256 (RFC 7518 §3.3: 2048 bits or larger). */
export const MIN_RSA_MODULUS_BITS = 2048;

/** Arguments for `crypto.verify(algorithm, data, key, signature)` per JWS `alg`. */
export interface NodeVerifyParams {
  /** Digest name for `crypto.verify`, or `null` for EdDSA (the digest is part of the scheme). */
  readonly digest: 'sha256' | null;
  /** `dsaEncoding` for ECDSA: JWS carries `r || s` (IEEE P1363), not DER (RFC 7518 §3.4). */
  readonly dsaEncoding?: 'ieee-p1363';
  /** RSA padding: PKCS#1 v1.5 for RS256. */
  readonly padding?: number;
}

export const NODE_VERIFY: Readonly<Record<JwsAlgorithm, NodeVerifyParams>> = Object.freeze({
  RS256: { digest: 'sha256', padding: constants.RSA_PKCS1_PADDING },
  ES256: { digest: 'sha256', dsaEncoding: 'ieee-p1363' },
  EdDSA: { digest: null },
});

/**
 * Whether a JWK may be used with `alg`: key type and curve match, the JWK's own `alg` (when
 * present) names the same algorithm, `use` (when present) is `sig`, and `key_ops` (when
 * present) includes `verify` (RFC 7517 §4.2-4.4).
 */
export function jwkMatchesAlg(jwk: JWK, alg: JwsAlgorithm): boolean {
  if (jwk.use !== undefined && jwk.use !== 'sig') return false;
  if (jwk.key_ops !== undefined && !(Array.isArray(jwk.key_ops) && jwk.key_ops.includes('verify'))) return false;
  switch (alg) {
    case 'RS256':
      return jwk.kty === 'RSA' && (jwk.alg === undefined || jwk.alg === 'RS256');
    case 'ES256':
      return jwk.kty === 'EC' && jwk.crv === 'P-256' && (jwk.alg === undefined || jwk.alg === 'ES256');
    case 'EdDSA':
      // RFC 9864 also names this key's algorithm `Ed25519`.
      return jwk.kty === 'OKP' && jwk.crv === 'Ed25519' && (jwk.alg === undefined || jwk.alg === 'EdDSA' || jwk.alg === 'Ed25519');
  }
}

/**
 * Whether a node:crypto public key can verify `alg`: RSA (not RSA-PSS) of at least 2048 bits
 * for RS256, P-256 for ES256, Ed25519 for EdDSA. A private key is refused: verifiers hold
 * public keys only.
 */
export function keyObjectMatchesAlg(key: KeyObject, alg: JwsAlgorithm): boolean {
  if (key.type !== 'public') return false;
  const details = key.asymmetricKeyDetails;
  switch (alg) {
    case 'RS256':
      return key.asymmetricKeyType === 'rsa' && (details?.modulusLength ?? 0) >= MIN_RSA_MODULUS_BITS;
    case 'ES256':
      return key.asymmetricKeyType === 'ec' && details?.namedCurve === 'prime256v1';
    case 'EdDSA':
      return key.asymmetricKeyType === 'ed25519';
  }
}
