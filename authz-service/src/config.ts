/**
 * authz-service configuration: read once from the environment at start-up, validated with zod,
 * frozen. A bad value stops start-up with an error naming the variable (CONTRIBUTING.md, "Config is read once, validated, frozen").
 *
 * Reading ({@link readAuthzEnv}: picks and validates the raw variables) is separate from
 * merging ({@link loadConfig}: applies defaults, cross-field rules and the shared verifier
 * settings from the core's `loadVerifierConfig`).
 */
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { ConfigError, LOG_LEVELS, envBool, envEnum, envInt, envMs, envPort, envText, loadVerifierConfig, parseEnv, type VerifierConfig } from '@jwt-mesh/core';

export { ConfigError } from '@jwt-mesh/core';

/** The package root (`authz-service/`): the default policy file lives there. */
const packageRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** Default values, in one place. Units are in the names (`Ms` = milliseconds). */
export const DEFAULTS = Object.freeze({
  AUTHZ_PORT: 9191,
  AUTHZ_HOST: '127.0.0.1',
  AUTHZ_TLS: true,
  AUTHZ_INSECURE_PLAINTEXT: false,
  AUTHZ_POLICY_FILE: resolve(packageRoot, 'policy.yaml'),
  AUTHZ_DEADLINE_MS: 200,
  AUTHZ_METRICS_PORT: 9464,
  AUTHZ_METRICS_HOST: '127.0.0.1',
  AUTHZ_DRAIN_TIMEOUT_MS: 10_000,
  VERIFIED_CACHE_MAX_ENTRIES: 10_000,
  LOG_LEVEL: 'info' as (typeof LOG_LEVELS)[number],
});

/** The raw variables this service reads itself (the JWT_* / JWKS_URL / REDIS_URL / REVOCATION_* ones are the core's). */
const envSchema = z.object({
  AUTHZ_PORT: envPort().optional(),
  AUTHZ_HOST: envText().optional(),
  AUTHZ_TLS: envBool().optional(),
  AUTHZ_TLS_CERT: envText().optional(),
  AUTHZ_TLS_KEY: envText().optional(),
  AUTHZ_TLS_CA: envText().optional(),
  AUTHZ_INSECURE_PLAINTEXT: envBool().optional(),
  AUTHZ_POLICY_FILE: envText().optional(),
  AUTHZ_DEADLINE_MS: envMs(1, 600_000).optional(),
  AUTHZ_METRICS_PORT: envPort().optional(),
  AUTHZ_METRICS_HOST: envText().optional(),
  AUTHZ_DRAIN_TIMEOUT_MS: envMs(1, 600_000).optional(),
  VERIFIED_CACHE_MAX_ENTRIES: envInt(0, 10_000_000).optional(),
  LOG_LEVEL: envEnum(LOG_LEVELS).optional(),
});

/** The validated raw variables (all optional; defaults are applied by {@link loadConfig}). */
export type AuthzEnv = z.infer<typeof envSchema>;

/**
 * Picks this service's variables from `env` and validates them. Empty strings count as unset.
 *
 * @throws ConfigError naming every invalid variable, e.g. `AUTHZ_PORT: must be a whole number from 0 to 65535 (got "nine")`
 */
export function readAuthzEnv(env: NodeJS.ProcessEnv): AuthzEnv {
  return parseEnv(envSchema, env);
}

/** How the gRPC listener is secured. */
export type ListenerSecurity =
  /** TLS with client certificates required, verified against `caFile` (the mesh CA). Paths to PEM files. */
  | { readonly mode: 'mtls'; readonly certFile: string; readonly keyFile: string; readonly caFile: string }
  /** Plaintext: only with `AUTHZ_INSECURE_PLAINTEXT=true`, an explicit development setting. */
  | { readonly mode: 'insecure-plaintext' };

/** The frozen configuration of one authz-service process. */
export interface AuthzConfig {
  /** gRPC listen port (`AUTHZ_PORT`, default 9191; 0 = any free port). */
  readonly port: number;
  /** gRPC listen address (`AUTHZ_HOST`, default 127.0.0.1). */
  readonly host: string;
  readonly security: ListenerSecurity;
  /** Absolute path of the YAML route policy (`AUTHZ_POLICY_FILE`). */
  readonly policyFile: string;
  /** Own decision deadline in milliseconds (`AUTHZ_DEADLINE_MS`, default 200); past it: 503. */
  readonly deadlineMs: number;
  /** HTTP `/metrics` + `/healthz` port (`AUTHZ_METRICS_PORT`, default 9464) and host (`AUTHZ_METRICS_HOST`). */
  readonly metricsPort: number;
  readonly metricsHost: string;
  /** Bounded wait for in-flight calls on SIGTERM before a forced shutdown, milliseconds. */
  readonly drainTimeoutMs: number;
  /** Size of the core's verified-token cache (`VERIFIED_CACHE_MAX_ENTRIES`; 0 disables it). */
  readonly verifiedCacheMaxEntries: number;
  /** `LOG_LEVEL`, pino level. Default `info`. */
  readonly logLevel: (typeof LOG_LEVELS)[number];
  /**
   * Redis key prefix of the revocation store (`REDIS_PREFIX`, read by the core's `loadVerifierConfig`, default `jwtmesh:`); must
   * equal the issuer's. Keys `<prefix>rv:{jti,sid,sub}:<id>`, channel `<prefix>revocations`.
   */
  readonly revocationKeyPrefix: string;
  /** Shared verifier settings (JWT_*, JWKS_URL, REDIS_URL, REVOCATION_*), from the core. */
  readonly verifier: VerifierConfig;
}

/**
 * Reads and merges the whole configuration: this service's variables plus the shared verifier
 * settings from `@jwt-mesh/core`'s `loadVerifierConfig`.
 *
 * TLS is on by default and then `AUTHZ_TLS_CERT`, `AUTHZ_TLS_KEY` and `AUTHZ_TLS_CA` are
 * required; plaintext needs `AUTHZ_INSECURE_PLAINTEXT=true` (and not `AUTHZ_TLS=true`).
 * A relative `AUTHZ_POLICY_FILE` is resolved against the current directory.
 *
 * @param env - defaults to `process.env`
 * @returns a deeply frozen {@link AuthzConfig}
 * @throws ConfigError naming the variable (also for the shared verifier settings)
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): AuthzConfig {
  const raw = readAuthzEnv(env);
  const insecure = raw.AUTHZ_INSECURE_PLAINTEXT ?? DEFAULTS.AUTHZ_INSECURE_PLAINTEXT;
  let security: ListenerSecurity;
  if (insecure) {
    if (raw.AUTHZ_TLS === true) {
      throw new ConfigError('AUTHZ_INSECURE_PLAINTEXT', 'cannot be true while AUTHZ_TLS=true');
    }
    security = { mode: 'insecure-plaintext' };
  } else {
    if (raw.AUTHZ_TLS === false) {
      throw new ConfigError('AUTHZ_TLS', 'plaintext needs the explicit development setting AUTHZ_INSECURE_PLAINTEXT=true');
    }
    const need = (name: 'AUTHZ_TLS_CERT' | 'AUTHZ_TLS_KEY' | 'AUTHZ_TLS_CA'): string => {
      const value = raw[name];
      if (value === undefined) {
        throw new ConfigError(name, 'required when TLS is on (the default); set AUTHZ_INSECURE_PLAINTEXT=true for plaintext in development');
      }
      return resolve(value);
    };
    security = { mode: 'mtls', certFile: need('AUTHZ_TLS_CERT'), keyFile: need('AUTHZ_TLS_KEY'), caFile: need('AUTHZ_TLS_CA') };
  }
  const verifier = loadVerifierConfig(env);
  const config: AuthzConfig = {
    port: raw.AUTHZ_PORT ?? DEFAULTS.AUTHZ_PORT,
    host: raw.AUTHZ_HOST ?? DEFAULTS.AUTHZ_HOST,
    security: Object.freeze(security),
    policyFile: raw.AUTHZ_POLICY_FILE !== undefined ? resolve(raw.AUTHZ_POLICY_FILE) : DEFAULTS.AUTHZ_POLICY_FILE,
    deadlineMs: raw.AUTHZ_DEADLINE_MS ?? DEFAULTS.AUTHZ_DEADLINE_MS,
    metricsPort: raw.AUTHZ_METRICS_PORT ?? DEFAULTS.AUTHZ_METRICS_PORT,
    metricsHost: raw.AUTHZ_METRICS_HOST ?? DEFAULTS.AUTHZ_METRICS_HOST,
    drainTimeoutMs: raw.AUTHZ_DRAIN_TIMEOUT_MS ?? DEFAULTS.AUTHZ_DRAIN_TIMEOUT_MS,
    verifiedCacheMaxEntries: raw.VERIFIED_CACHE_MAX_ENTRIES ?? DEFAULTS.VERIFIED_CACHE_MAX_ENTRIES,
    logLevel: raw.LOG_LEVEL ?? DEFAULTS.LOG_LEVEL,
    revocationKeyPrefix: verifier.redisPrefix,
    verifier,
  };
  return Object.freeze(config);
}
