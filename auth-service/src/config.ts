/**
 * auth-service configuration: read once from the environment, validated with zod, frozen.
 * A bad value stops start-up with a message naming the variable (CONTRIBUTING.md, "Config is read once, validated, frozen").
 *
 * Reading (`process.env`) is separate from validating ({@link parseConfig}), so tests build a
 * config from a plain object. Every variable, its default and unit is listed in README.md.
 */
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { z } from 'zod';
import { ConfigError, LOG_LEVELS, envEnum, envInt, envPort, envText, envUrl, loadSharedConfig, parseEnv, readConfigParts, type RedisConnectionOptions } from '@jwt-mesh/core';

export { ConfigError } from '@jwt-mesh/core';

/** Algorithms the issuer can sign with (asymmetric only; RFC 9068 requires RS256 support). */
export const SIGNING_ALGORITHMS = ['RS256', 'ES256', 'EdDSA'] as const;
export type SigningAlgorithm = (typeof SIGNING_ALGORITHMS)[number];

/** The validated, frozen configuration. Durations carry their unit in the name. */
export interface Config {
  readonly port: number;
  readonly host: string;
  readonly databaseUrl: string;
  /** `DATABASE_POOL_MAX`: most PostgreSQL connections this process opens, 1..100. Default 10. */
  readonly databasePoolMax: number;
  readonly redisUrl: string;
  /**
   * `REDIS_USERNAME`, `REDIS_PASSWORD_FILE`, `REDIS_TLS_CA_FILE`: the issuer's Redis ACL user and
   * password when not in `REDIS_URL`, the CA of a `rediss://` server (the core's
   * `redisConnectionFromEnv`; the password is non-enumerable).
   */
  readonly redisConnection: RedisConnectionOptions;
  /** Prefix of every Redis key this service writes (revocation entries, rate-limit counters). */
  readonly redisPrefix: string;
  readonly jwt: {
    readonly issuer: string;
    readonly audience: string;
    /** Algorithms accepted when this service verifies tokens (logout, revoke, introspect). */
    readonly algorithms: readonly SigningAlgorithm[];
    readonly clockToleranceSec: number;
    readonly accessTokenTtlSec: number;
    readonly maxTokenBytes: number;
  };
  readonly revocation: {
    /** `closed` (default): Redis unreachable = treat as revoked; `open`: as not revoked. */
    readonly failMode: 'closed' | 'open';
    readonly cacheTtlMs: number;
  };
  readonly refreshTokenTtlSec: number;
  readonly refreshReuseGraceSec: number;
  readonly signingKey: {
    readonly alg: SigningAlgorithm;
    /** A private JWK (from SIGNING_KEY_PRIVATE_JWK or a JWK file). */
    readonly privateJwk: Readonly<Record<string, unknown>> | null;
    /** A PKCS#8 PEM private key (from SIGNING_KEY_FILE). */
    readonly privatePem: string | null;
    readonly rotationOverlapSec: number;
    readonly reloadIntervalSec: number;
    /**
     * `KEY_ACTIVATION_DELAY_SEC`: seconds between `rotate-key` publishing a new key in the JWKS
     * and that key starting to sign (two-phase rotation), so that every verifier already holds
     * the key when the first token signed with it arrives. Must exceed `KEY_RELOAD_INTERVAL_SEC`
     * plus the longest JWKS cache age of any verifier (the core's remote key source refreshes
     * after 60 s, `REMOTE_KEY_SOURCE_DEFAULTS.cacheMaxAgeMs`). 0 = sign at once (like
     * `rotate-key --now`). Default 150.
     */
    readonly activationDelaySec: number;
  };
  readonly rateLimit: {
    readonly loginPerAddressPerMin: number;
    readonly loginPerUsernamePerMin: number;
    readonly refreshPerAddressPerMin: number;
    readonly registerPerAddressPerMin: number;
  };
  /**
   * Admission control of password hashing (login, register, the password grant): see
   * `hash-limiter.ts` and README "Logins under overload".
   */
  readonly passwordHashing: {
    /** `PASSWORD_HASH_CONCURRENCY`: most scrypt checks running at once. */
    readonly concurrency: number;
    /** `PASSWORD_HASH_QUEUE_MAX`: most requests waiting for a slot; past it, 503 at once. */
    readonly maxQueue: number;
    /** `PASSWORD_HASH_QUEUE_TIMEOUT_MS`: longest wait for a slot, milliseconds; then 503. */
    readonly queueTimeoutMs: number;
  };
  readonly cleanupIntervalSec: number;
  /**
   * `REVOCATION_SYNC_INTERVAL_SEC`: period of the re-publication of the database's live
   * revocations to Redis (also run at start and whenever Redis comes back); 0 = only then.
   */
  readonly revocationSyncIntervalSec: number;
  readonly defaultClientId: string;
  readonly defaultUserScopes: readonly string[];
  readonly defaultUserRoles: readonly string[];
  /** Fastify `trustProxy`: false, true, a hop count, or a list of addresses / CIDRs. */
  readonly trustProxy: boolean | number | readonly string[];
  readonly logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
}

/**
 * Defaults of the issuer's own variables, in one place (strings, as they would appear in the
 * environment). The shared ones (`JWT_*`, `REDIS_*`, ...) are the core's `VERIFIER_CONFIG_DEFAULTS`.
 */
export const DEFAULTS = Object.freeze({
  PORT: '4000',
  HOST: '127.0.0.1',
  DATABASE_URL: 'postgresql://postgres@127.0.0.1:5432/jwt_mesh',
  DATABASE_POOL_MAX: '10',
  REFRESH_TOKEN_TTL_SEC: '1209600',
  REFRESH_REUSE_GRACE_SEC: '10',
  SIGNING_KEY_ALG: 'RS256',
  KEY_ROTATION_OVERLAP_SEC: '3600',
  KEY_RELOAD_INTERVAL_SEC: '5',
  KEY_ACTIVATION_DELAY_SEC: '150',
  LOGIN_RATE_LIMIT_PER_MIN: '20',
  LOGIN_USERNAME_RATE_LIMIT_PER_MIN: '10',
  REFRESH_RATE_LIMIT_PER_MIN: '60',
  REGISTER_RATE_LIMIT_PER_MIN: '10',
  PASSWORD_HASH_CONCURRENCY: 'auto',
  PASSWORD_HASH_QUEUE_MAX: 'auto',
  PASSWORD_HASH_QUEUE_TIMEOUT_MS: '1000',
  CLEANUP_INTERVAL_SEC: '300',
  REVOCATION_SYNC_INTERVAL_SEC: '60',
  DEFAULT_CLIENT_ID: 'jwt-mesh',
  DEFAULT_USER_SCOPES: 'profile:read orders:read orders:write inventory:read',
  DEFAULT_USER_ROLES: 'user',
  TRUST_PROXY: 'false',
  LOG_LEVEL: 'info',
});

/** A whole number in [min, max], or `auto` (returned as `null`, resolved after parsing). */
const intOrAuto = (min: number, max: number) =>
  z.union([z.string().trim().pipe(z.literal('auto')).transform(() => null), envInt(min, max)], {
    error: () => `expected auto or a whole number from ${min} to ${max}`,
  });

const SCOPE_TOKEN = /^[\x21\x23-\x5b\x5d-\x7e]+$/; // RFC 6749 §3.3 scope-token
const spaceList = (what: string, token: RegExp) =>
  z
    .string()
    .transform((v) => v.split(/[\s,]+/).filter(Boolean))
    .refine((list) => list.every((s) => token.test(s)), `each ${what} must match ${token.source}`);

const algorithm = envEnum(SIGNING_ALGORITHMS);

/**
 * The issuer's own variables. The shared ones (`JWT_*`, `ACCESS_TOKEN_TTL_SEC`, `REDIS_*`,
 * `REVOCATION_*`) are read by the core's `loadSharedConfig`, the same code every verifier runs.
 */
const schema = z.object({
  PORT: envPort(),
  HOST: envText(),
  DATABASE_URL: envUrl(['postgresql:', 'postgres:']),
  DATABASE_POOL_MAX: envInt(1, 100),
  REFRESH_TOKEN_TTL_SEC: envInt(60, 31_536_000, 's'),
  REFRESH_REUSE_GRACE_SEC: envInt(0, 120, 's'),
  SIGNING_KEY_ALG: algorithm,
  SIGNING_KEY_PRIVATE_JWK: z.string().optional(),
  SIGNING_KEY_FILE: z.string().optional(),
  KEY_ROTATION_OVERLAP_SEC: envInt(0, 31_536_000, 's'),
  KEY_RELOAD_INTERVAL_SEC: envInt(1, 3600, 's'),
  KEY_ACTIVATION_DELAY_SEC: envInt(0, 86_400, 's'),
  LOGIN_RATE_LIMIT_PER_MIN: envInt(1, 1_000_000),
  LOGIN_USERNAME_RATE_LIMIT_PER_MIN: envInt(1, 1_000_000),
  REFRESH_RATE_LIMIT_PER_MIN: envInt(1, 1_000_000),
  REGISTER_RATE_LIMIT_PER_MIN: envInt(1, 1_000_000),
  PASSWORD_HASH_CONCURRENCY: intOrAuto(1, 1024),
  PASSWORD_HASH_QUEUE_MAX: intOrAuto(0, 100_000),
  PASSWORD_HASH_QUEUE_TIMEOUT_MS: envInt(1, 60_000, 'ms'),
  CLEANUP_INTERVAL_SEC: envInt(0, 86_400, 's'),
  REVOCATION_SYNC_INTERVAL_SEC: envInt(0, 86_400, 's'),
  DEFAULT_CLIENT_ID: z.string().regex(/^[A-Za-z0-9._:-]{1,128}$/, 'expected 1-128 of A-Z a-z 0-9 . _ : -'),
  DEFAULT_USER_SCOPES: spaceList('scope', SCOPE_TOKEN),
  DEFAULT_USER_ROLES: spaceList('role', /^[A-Za-z0-9._:-]{1,64}$/),
  TRUST_PROXY: z.string().transform((v, ctx) => {
    const s = v.trim();
    if (s === '' || s === 'false') return false;
    if (s === 'true') return true;
    if (/^\d+$/.test(s)) return Number(s);
    const list = s.split(',').map((x) => x.trim()).filter(Boolean);
    if (list.every((x) => /^[0-9a-fA-F.:/]+$/.test(x) || ['loopback', 'linklocal', 'uniquelocal'].includes(x))) return list;
    ctx.addIssue({ code: 'custom', message: 'expected true, false, a hop count or a comma list of addresses/CIDRs' });
    return z.NEVER;
  }),
  LOG_LEVEL: envEnum(LOG_LEVELS),
});

/** libuv's default threadpool size (https://docs.libuv.org/en/v1.x/threadpool.html). */
const LIBUV_DEFAULT_THREADPOOL_SIZE = 4;

/**
 * The size of libuv's threadpool, where node:crypto runs scrypt and WebCrypto (jose) signs, read
 * from `UV_THREADPOOL_SIZE` the way libuv reads it: unset 4, a number clamped to 1..1024.
 */
export function threadpoolSize(env: Readonly<Record<string, string | undefined>> = process.env): number {
  const raw = env['UV_THREADPOOL_SIZE'];
  if (raw === undefined || raw.trim() === '') return LIBUV_DEFAULT_THREADPOOL_SIZE;
  const n = Number.parseInt(raw, 10);
  return Math.min(1024, Math.max(1, Number.isFinite(n) ? n : 0));
}

/**
 * Default `PASSWORD_HASH_CONCURRENCY` (`auto`): the CPUs this process may use, and one threadpool
 * thread less than the pool, so that signing (WebCrypto, also on the threadpool) never waits
 * behind a full pool of hashes: `max(1, min(availableParallelism, UV_THREADPOOL_SIZE - 1))`.
 * 2 on a 2-core machine with the default pool of 4.
 */
export function defaultHashConcurrency(env: Readonly<Record<string, string | undefined>> = process.env, cpus = availableParallelism()): number {
  return Math.max(1, Math.min(cpus, threadpoolSize(env) - 1));
}

/** Default `PASSWORD_HASH_QUEUE_MAX` (`auto`): this many waiting requests per running check. */
export const HASH_QUEUE_PER_SLOT = 4;

type Env = Readonly<Record<string, string | undefined>>;

function readKeyFile(path: string): { privateJwk: Record<string, unknown> | null; privatePem: string | null } {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError('SIGNING_KEY_FILE', `cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? 'error'})`, { cause: err });
  }
  const trimmed = text.trim();
  if (trimmed.startsWith('{')) return { privateJwk: parseJwk('SIGNING_KEY_FILE', trimmed), privatePem: null };
  if (/^-----BEGIN (?:RSA |EC )?PRIVATE KEY-----/.test(trimmed)) return { privateJwk: null, privatePem: trimmed };
  throw new ConfigError('SIGNING_KEY_FILE', 'expected a private JWK (JSON) or a PKCS#8 PEM private key');
}

function parseJwk(variable: string, text: string): Record<string, unknown> {
  let jwk: unknown;
  try {
    jwk = JSON.parse(text);
  } catch {
    throw new ConfigError(variable, `not valid JSON`);
  }
  if (typeof jwk !== 'object' || jwk === null || Array.isArray(jwk)) throw new ConfigError(variable, `expected a JWK object`);
  const o = jwk as Record<string, unknown>;
  if (typeof o['kty'] !== 'string' || typeof o['d'] !== 'string') {
    throw new ConfigError(variable, `expected a private JWK (with "kty" and "d")`);
  }
  return o;
}

/**
 * The issuer's own variables ({@link DEFAULTS}) and the shared ones (the core's
 * `loadSharedConfig`, the same code every verifier runs; the issuer reads no `JWKS_*`), read in
 * one pass.
 *
 * @throws ConfigError naming every bad variable of both
 */
function readVariables(env: Env) {
  const [, own, shared] = readConfigParts(
    () => refuseBlankKeySettings(env),
    () => parseEnv(schema, env, DEFAULTS),
    () => loadSharedConfig(env),
  );
  return { own, shared };
}

/**
 * A signing-key variable set to white space only is a mistake, not "no key": it must never fall
 * back to generating a key (the development path). Empty (`SIGNING_KEY_FILE=`) still means unset.
 *
 * @throws ConfigError naming the variable
 */
function refuseBlankKeySettings(env: Env): void {
  for (const name of ['SIGNING_KEY_PRIVATE_JWK', 'SIGNING_KEY_FILE'] as const) {
    const value = env[name];
    if (value !== undefined && value !== '' && value.trim() === '') {
      throw new ConfigError(name, 'is only white space: give the key, or unset it (a key is then generated: development only)');
    }
  }
}

/**
 * Validates an environment-like object and returns the frozen {@link Config}. Unset or empty
 * variables take the {@link DEFAULTS}.
 *
 * @param env - variables by name (default `process.env`)
 * @throws ConfigError naming each bad variable, e.g. `PORT: must be at most 65535 (got "70000")`
 */
export function parseConfig(env: Env = process.env): Config {
  const { own: v, shared } = readVariables(env);
  const redisConnection = shared.redisConnection;

  if (!shared.algorithms.includes(v.SIGNING_KEY_ALG)) {
    throw new ConfigError('SIGNING_KEY_ALG', `${v.SIGNING_KEY_ALG} is not in JWT_ALGORITHMS (${shared.algorithms.join(',')})`);
  }
  const minOverlap = shared.accessTokenTtlSec + shared.clockToleranceSec;
  if (v.KEY_ROTATION_OVERLAP_SEC < minOverlap) {
    throw new ConfigError(
      'KEY_ROTATION_OVERLAP_SEC',
      `must be at least ACCESS_TOKEN_TTL_SEC + JWT_CLOCK_TOLERANCE_SEC = ${minOverlap} (got ${v.KEY_ROTATION_OVERLAP_SEC}), or tokens signed with a retired key would fail before they expire`,
    );
  }
  if (v.KEY_ACTIVATION_DELAY_SEC !== 0 && v.KEY_ACTIVATION_DELAY_SEC <= v.KEY_RELOAD_INTERVAL_SEC) {
    throw new ConfigError(
      'KEY_ACTIVATION_DELAY_SEC',
      `must be 0 (sign at once) or more than KEY_RELOAD_INTERVAL_SEC = ${v.KEY_RELOAD_INTERVAL_SEC} (got ${v.KEY_ACTIVATION_DELAY_SEC}), or a replica could sign with a key the other replicas do not publish yet`,
    );
  }
  if (v.REFRESH_TOKEN_TTL_SEC <= shared.accessTokenTtlSec) {
    throw new ConfigError('REFRESH_TOKEN_TTL_SEC', 'must be longer than ACCESS_TOKEN_TTL_SEC');
  }
  const pool = threadpoolSize(env);
  if (v.PASSWORD_HASH_CONCURRENCY !== null && v.PASSWORD_HASH_CONCURRENCY > pool) {
    throw new ConfigError(
      'PASSWORD_HASH_CONCURRENCY',
      `must be at most UV_THREADPOOL_SIZE = ${pool} (got ${v.PASSWORD_HASH_CONCURRENCY}): hashes past the threadpool would wait in libuv's queue, unbounded and unshed, and delay token signing; raise UV_THREADPOOL_SIZE too`,
    );
  }
  const hashConcurrency = v.PASSWORD_HASH_CONCURRENCY ?? defaultHashConcurrency(env);
  if (v.SIGNING_KEY_PRIVATE_JWK && v.SIGNING_KEY_FILE) {
    throw new ConfigError('SIGNING_KEY_PRIVATE_JWK', 'set at most one of SIGNING_KEY_PRIVATE_JWK and SIGNING_KEY_FILE');
  }
  let privateJwk: Record<string, unknown> | null = null;
  let privatePem: string | null = null;
  if (v.SIGNING_KEY_PRIVATE_JWK) privateJwk = parseJwk('SIGNING_KEY_PRIVATE_JWK', v.SIGNING_KEY_PRIVATE_JWK);
  if (v.SIGNING_KEY_FILE) ({ privateJwk, privatePem } = readKeyFile(v.SIGNING_KEY_FILE));

  const config: Config = {
    port: v.PORT,
    host: v.HOST,
    databaseUrl: v.DATABASE_URL,
    databasePoolMax: v.DATABASE_POOL_MAX,
    redisUrl: shared.redisUrl,
    redisConnection,
    redisPrefix: shared.redisPrefix,
    jwt: Object.freeze({
      issuer: shared.issuer,
      audience: shared.audience,
      algorithms: Object.freeze([...shared.algorithms]),
      clockToleranceSec: shared.clockToleranceSec,
      accessTokenTtlSec: shared.accessTokenTtlSec,
      maxTokenBytes: shared.maxTokenBytes,
    }),
    revocation: Object.freeze({ failMode: shared.revocationFailMode, cacheTtlMs: shared.revocationCacheTtlMs }),
    refreshTokenTtlSec: v.REFRESH_TOKEN_TTL_SEC,
    refreshReuseGraceSec: v.REFRESH_REUSE_GRACE_SEC,
    signingKey: Object.freeze({
      alg: v.SIGNING_KEY_ALG,
      privateJwk: privateJwk ? Object.freeze(privateJwk) : null,
      privatePem,
      rotationOverlapSec: v.KEY_ROTATION_OVERLAP_SEC,
      reloadIntervalSec: v.KEY_RELOAD_INTERVAL_SEC,
      activationDelaySec: v.KEY_ACTIVATION_DELAY_SEC,
    }),
    rateLimit: Object.freeze({
      loginPerAddressPerMin: v.LOGIN_RATE_LIMIT_PER_MIN,
      loginPerUsernamePerMin: v.LOGIN_USERNAME_RATE_LIMIT_PER_MIN,
      refreshPerAddressPerMin: v.REFRESH_RATE_LIMIT_PER_MIN,
      registerPerAddressPerMin: v.REGISTER_RATE_LIMIT_PER_MIN,
    }),
    passwordHashing: Object.freeze({
      concurrency: hashConcurrency,
      maxQueue: v.PASSWORD_HASH_QUEUE_MAX ?? HASH_QUEUE_PER_SLOT * hashConcurrency,
      queueTimeoutMs: v.PASSWORD_HASH_QUEUE_TIMEOUT_MS,
    }),
    cleanupIntervalSec: v.CLEANUP_INTERVAL_SEC,
    revocationSyncIntervalSec: v.REVOCATION_SYNC_INTERVAL_SEC,
    defaultClientId: v.DEFAULT_CLIENT_ID,
    defaultUserScopes: Object.freeze([...v.DEFAULT_USER_SCOPES]),
    defaultUserRoles: Object.freeze([...v.DEFAULT_USER_ROLES]),
    trustProxy: Array.isArray(v.TRUST_PROXY) ? Object.freeze([...v.TRUST_PROXY]) : (v.TRUST_PROXY as boolean | number),
    logLevel: v.LOG_LEVEL,
  };
  return Object.freeze(config);
}

/**
 * Builds a config for tests and tools: the defaults, overridden by `overrides` (variable names
 * as keys). Never reads `process.env` except where `overrides` passes it in.
 */
export function configFrom(overrides: Env = {}): Config {
  return parseConfig(overrides);
}
