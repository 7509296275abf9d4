/**
 * The verifier settings of a service from the environment: the shared variables every verifier
 * reads through the core's `loadVerifierConfig` (`JWT_ISSUER`, `JWT_AUDIENCE`, `JWT_ALGORITHMS`,
 * `JWT_CLOCK_TOLERANCE_SEC`, `ACCESS_TOKEN_TTL_SEC`, `JWT_MAX_TOKEN_BYTES`, `JWKS_URL`,
 * `JWKS_CA_FILE`, `JWKS_CERT_FILE`, `JWKS_KEY_FILE`, `JWKS_SERVER_ID`, `REDIS_URL`, `REDIS_USERNAME`,
 * `REDIS_PASSWORD_FILE`, `REDIS_TLS_CA_FILE`, `REDIS_PREFIX`,
 * `REVOCATION_FAIL_MODE`, `REVOCATION_CACHE_TTL_MS`), mapped onto
 * {@link VerifierStackOptions}. Separate from `index.ts` so that building apps in tests never
 * reads the environment.
 */
import { loadVerifierConfig, readJwksTlsFiles, type VerifierConfig } from '@jwt-mesh/core';
import type { VerifierStackOptions } from './stack.js';

/**
 * @param env - the environment (read once, at start-up)
 * @returns the stack options, frozen
 * @throws ConfigError from `loadVerifierConfig` naming the bad variable, or from `readJwksTlsFiles`
 *   naming a `JWKS_*_FILE` that cannot be read
 */
export function verifierStackOptionsFromEnv(env: NodeJS.ProcessEnv): Readonly<VerifierStackOptions> {
  return verifierStackOptionsOf(loadVerifierConfig(env));
}

/**
 * The stack options of settings already read (`loadVerifierConfig`): reads the `JWKS_*_FILE` PEM files.
 *
 * @throws ConfigError naming a `JWKS_*_FILE` that cannot be read
 */
export function verifierStackOptionsOf(v: VerifierConfig): Readonly<VerifierStackOptions> {
  const jwksTls = readJwksTlsFiles(v.jwksTls);
  return Object.freeze({
    issuer: v.issuer,
    audience: v.audience,
    algorithms: [...v.algorithms],
    clockToleranceSec: v.clockToleranceSec,
    // The longest accepted `exp - iat` is the issuer's access-token lifetime.
    maxLifetimeSec: v.accessTokenTtlSec,
    maxTokenBytes: v.maxTokenBytes,
    jwksUrl: String(v.jwksUrl),
    ...(jwksTls !== undefined ? { jwksTls } : {}),
    redisUrl: v.redisUrl,
    redisConnection: v.redisConnection,
    revocationPrefix: v.redisPrefix,
    revocationOnUnavailable: v.revocationFailMode === 'open' ? ('allow' as const) : ('deny' as const),
    revocationCacheTtlMs: v.revocationCacheTtlMs,
  });
}
