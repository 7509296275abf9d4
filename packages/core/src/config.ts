/**
 * The verifier settings shared by every verifier (ext_authz server, services) and the issuer,
 * read from the environment once at start-up, validated with zod, frozen (CONTRIBUTING.md, "Config is read once, validated, frozen").
 * Reading (`loadVerifierConfig`) is separate from using: callers map the result onto
 * `createVerifier`, `createRemoteKeySource` and `createRedisRevocation` options.
 */
import { z } from 'zod';
import { SUPPORTED_ALGORITHMS, type JwsAlgorithm } from './algorithms.js';
import { envEnum, envInt, envList, envText, envUrl, parseEnv, readConfigParts } from './env.js';
import { redisConnectionFromEnv, type RedisConnectionOptions } from './redis-connection.js';

/** The shared verifier settings. Durations carry their unit in the name. */
export interface VerifierConfig {
  /** `JWT_ISSUER`: expected `iss`, and the issuer's own `iss`: an http(s) URL (RFC 9068 section 2.2). Default `http://localhost:4000`. */
  readonly issuer: string;
  /** `JWT_AUDIENCE`: expected `aud`. Default `jwt-mesh`. */
  readonly audience: string;
  /** `JWT_ALGORITHMS`: comma- or space-separated allowlist of RS256, ES256, EdDSA. Default `RS256`. */
  readonly algorithms: readonly JwsAlgorithm[];
  /** `JWT_CLOCK_TOLERANCE_SEC`: seconds, 0..300. Default 30. */
  readonly clockToleranceSec: number;
  /** `ACCESS_TOKEN_TTL_SEC`: access-token lifetime in seconds (issuer), the longest `exp - iat` accepted (verifiers), 10..86400. Default 300. */
  readonly accessTokenTtlSec: number;
  /** `JWT_MAX_TOKEN_BYTES`: size cap of a token in bytes, 512..65536. Default 8192. */
  readonly maxTokenBytes: number;
  /**
   * `JWKS_URL`: the issuer's JWK Set: https, or http to a loopback address only. Default
   * `http://localhost:4000/.well-known/jwks.json`.
   */
  readonly jwksUrl: string;
  /**
   * TLS of the JWK Set fetch, from `JWKS_CA_FILE` (PEM file of the CA the server must chain to,
   * replacing the system CAs), `JWKS_CERT_FILE` + `JWKS_KEY_FILE` (PEM client certificate and key,
   * for mTLS) and `JWKS_SERVER_ID` (the URI SAN, e.g. SPIFFE ID, the server's certificate must
   * carry, checked instead of the host name). File names: read them with `readJwksTlsFiles`.
   * `undefined` when none is set. Any of them needs an https `JWKS_URL`.
   */
  readonly jwksTls?: Readonly<{ caFile?: string; certFile?: string; keyFile?: string; serverId?: string }>;
  /** `REDIS_URL`: revocation store. Default `redis://127.0.0.1:6379/0`. */
  readonly redisUrl: string;
  /**
   * `REDIS_USERNAME`, `REDIS_PASSWORD_FILE`, `REDIS_TLS_CA_FILE` (no defaults): the Redis ACL
   * user and password when they are not in `REDIS_URL`, and the CA of a `rediss://` server
   * (see `redisConnectionFromEnv`). The password is a non-enumerable property.
   */
  readonly redisConnection: RedisConnectionOptions;
  /**
   * `REDIS_PREFIX`: prefix of every Redis key and of the revocation channel (`<prefix>rv:jti:<jti>`,
   * `<prefix>revocations`), 1-64 characters of `A-Z a-z 0-9 : . _ -`. Must be the same in the issuer
   * and every verifier. Default `jwtmesh:`.
   */
  readonly redisPrefix: string;
  /**
   * `REVOCATION_FAIL_MODE`: `closed` (default: deny when Redis cannot answer) or `open`
   * (UNSAFE: allow, so a revoked token works until `exp` while Redis is down).
   */
  readonly revocationFailMode: 'closed' | 'open';
  /** `REVOCATION_CACHE_TTL_MS`: in-process cache of revocation lookups, milliseconds, 0..60000 (0 = off). Default 1000. */
  readonly revocationCacheTtlMs: number;
}

/** Shortest `ACCESS_TOKEN_TTL_SEC`, seconds: below it a token can expire in flight through the mesh. */
export const ACCESS_TOKEN_TTL_MIN_SEC = 10;

/** Defaults, in one place. */
export const VERIFIER_CONFIG_DEFAULTS = Object.freeze({
  JWT_ISSUER: 'http://localhost:4000',
  JWT_AUDIENCE: 'jwt-mesh',
  JWT_ALGORITHMS: 'RS256',
  JWT_CLOCK_TOLERANCE_SEC: '30',
  ACCESS_TOKEN_TTL_SEC: '300',
  JWT_MAX_TOKEN_BYTES: '8192',
  JWKS_URL: 'http://localhost:4000/.well-known/jwks.json',
  JWKS_CA_FILE: '',
  JWKS_CERT_FILE: '',
  JWKS_KEY_FILE: '',
  JWKS_SERVER_ID: '',
  REDIS_URL: 'redis://127.0.0.1:6379/0',
  REDIS_PREFIX: 'jwtmesh:',
  REVOCATION_FAIL_MODE: 'closed',
  REVOCATION_CACHE_TTL_MS: '1000',
});

/** The JWK Set URL: https, or plain http to a loopback address only. */
const jwksUrl = envUrl(['http:', 'https:']).refine((v) => {
  if (!URL.canParse(v)) return true; // reported by envUrl above
  const u = new URL(v);
  return u.protocol === 'https:' || /^(localhost|127\.\d+\.\d+\.\d+|\[::1\])$/.test(u.hostname);
}, 'must be https (plain http only to localhost, 127.0.0.0/8 or [::1]: anyone on the path could serve signing keys)');

/**
 * The variables the issuer and every verifier share, one rule each: the issuer (auth-service)
 * reads them through {@link loadSharedConfig}, the verifiers through {@link loadVerifierConfig}.
 */
const sharedSchema = z.object({
  JWT_ISSUER: envUrl(['http:', 'https:']),
  JWT_AUDIENCE: envText(),
  JWT_ALGORITHMS: envList(z.enum(SUPPORTED_ALGORITHMS as [JwsAlgorithm, ...JwsAlgorithm[]], { error: `each must be one of ${SUPPORTED_ALGORITHMS.join(', ')} (never none or HS*)` }), 1),
  JWT_CLOCK_TOLERANCE_SEC: envInt(0, 300, 's'),
  ACCESS_TOKEN_TTL_SEC: envInt(ACCESS_TOKEN_TTL_MIN_SEC, 86_400, 's'),
  JWT_MAX_TOKEN_BYTES: envInt(512, 65_536, 'bytes'),
  REDIS_URL: envUrl(['redis:', 'rediss:']),
  REDIS_PREFIX: z.string().regex(/^[A-Za-z0-9:._-]{1,64}$/, 'must be 1-64 characters of A-Z a-z 0-9 : . _ -'),
  REVOCATION_FAIL_MODE: envEnum(['closed', 'open']),
  REVOCATION_CACHE_TTL_MS: envInt(0, 60_000, 'ms'),
});

/** The verifiers' own variables: where and how they fetch the issuer's JWK Set. */
const jwksSchema = z
  .object({
    JWKS_URL: jwksUrl,
    JWKS_CA_FILE: z.string().trim(),
    JWKS_CERT_FILE: z.string().trim(),
    JWKS_KEY_FILE: z.string().trim(),
    JWKS_SERVER_ID: z
      .string()
      .trim()
      .refine((v) => v === '' || /^[a-z][a-z0-9+.-]*:\/\/\S+$/i.test(v), 'must be a URI, e.g. spiffe://jwt-mesh.local/ns/jwt-mesh/sa/auth'),
  })
  .superRefine((d, ctx) => {
    const tlsSet = (['JWKS_CA_FILE', 'JWKS_CERT_FILE', 'JWKS_KEY_FILE', 'JWKS_SERVER_ID'] as const).filter((k) => d[k] !== '');
    if (tlsSet.length > 0 && !d.JWKS_URL.startsWith('https:')) {
      ctx.addIssue({ code: 'custom', path: [tlsSet[0] as string], message: 'needs an https JWKS_URL' });
    }
    if ((d.JWKS_CERT_FILE === '') !== (d.JWKS_KEY_FILE === '')) {
      ctx.addIssue({ code: 'custom', path: [d.JWKS_CERT_FILE === '' ? 'JWKS_CERT_FILE' : 'JWKS_KEY_FILE'], message: 'JWKS_CERT_FILE and JWKS_KEY_FILE go together' });
    }
  });

/** The settings the issuer and every verifier share ({@link VerifierConfig} without the JWK Set fetch). */
export type SharedConfig = Omit<VerifierConfig, 'jwksUrl' | 'jwksTls'>;

/**
 * Reads the settings the issuer and every verifier share: `JWT_*`, `ACCESS_TOKEN_TTL_SEC`,
 * `REDIS_*` (with the credentials beside `REDIS_URL`) and `REVOCATION_*`, with the same rules as
 * {@link loadVerifierConfig}. The issuer (auth-service) reads these; it fetches no JWK Set, so the
 * `JWKS_*` variables (which a shared ConfigMap may set for the verifiers) are not read.
 *
 * @param env - the environment, default `process.env`; read once
 * @returns a frozen {@link SharedConfig}
 * @throws ConfigError naming every bad variable, or the first bad Redis credential variable
 */
export function loadSharedConfig(env: NodeJS.ProcessEnv = process.env): SharedConfig {
  const d = parseEnv(sharedSchema, env, VERIFIER_CONFIG_DEFAULTS);
  return Object.freeze({
    issuer: d.JWT_ISSUER,
    audience: d.JWT_AUDIENCE,
    algorithms: Object.freeze(d.JWT_ALGORITHMS),
    clockToleranceSec: d.JWT_CLOCK_TOLERANCE_SEC,
    accessTokenTtlSec: d.ACCESS_TOKEN_TTL_SEC,
    maxTokenBytes: d.JWT_MAX_TOKEN_BYTES,
    redisUrl: d.REDIS_URL,
    redisConnection: redisConnectionFromEnv({ ...env, REDIS_URL: d.REDIS_URL }),
    redisPrefix: d.REDIS_PREFIX,
    revocationFailMode: d.REVOCATION_FAIL_MODE,
    revocationCacheTtlMs: d.REVOCATION_CACHE_TTL_MS,
  });
}

/**
 * Reads the shared verifier settings. An unset or empty variable takes its default
 * ({@link VERIFIER_CONFIG_DEFAULTS}).
 *
 * @param env - the environment, default `process.env`; read once
 * @returns a frozen {@link VerifierConfig}
 * @throws ConfigError naming every bad variable, e.g. `invalid configuration: JWT_CLOCK_TOLERANCE_SEC:
 *   must be at most 300 s (got "3600")`, or the first bad Redis credential variable
 *   (`REDIS_PASSWORD_FILE: cannot read ...`)
 */
export function loadVerifierConfig(env: NodeJS.ProcessEnv = process.env): VerifierConfig {
  const [shared, d] = readConfigParts(
    () => loadSharedConfig(env),
    () => parseEnv(jwksSchema, env, VERIFIER_CONFIG_DEFAULTS),
  );
  return Object.freeze({
    ...shared,
    jwksUrl: d.JWKS_URL,
    ...(d.JWKS_CA_FILE || d.JWKS_CERT_FILE || d.JWKS_SERVER_ID
      ? {
          jwksTls: Object.freeze({
            ...(d.JWKS_CA_FILE ? { caFile: d.JWKS_CA_FILE } : {}),
            ...(d.JWKS_CERT_FILE ? { certFile: d.JWKS_CERT_FILE, keyFile: d.JWKS_KEY_FILE } : {}),
            ...(d.JWKS_SERVER_ID ? { serverId: d.JWKS_SERVER_ID } : {}),
          }),
        }
      : {}),
  });
}
