/**
 * Configuration of a jwt-mesh process: read once from the environment at start-up, validated,
 * frozen (CONTRIBUTING.md, "Config is read once, validated, frozen"). A bad value stops start-up
 * with a {@link ConfigError} naming the variable and why.
 *
 * The helpers are the core's (`@jwt-mesh/core`, `env.ts`), re-exported here so that every
 * process reads its variables with the same functions: the issuer, the ext_authz server and the
 * services. The verifier settings (`JWT_*`, `JWKS_*`, `REDIS_*`, `ACCESS_TOKEN_TTL_SEC`,
 * `REVOCATION_*`) are read by the core's `loadVerifierConfig`; this module adds what a service
 * process itself needs.
 */
import { z } from 'zod';
import { LOG_LEVELS, envEnum, envInt, envMs, envPort, envText, envUrl } from '@jwt-mesh/core';

export {
  ConfigError,
  LOG_LEVELS,
  MAX_TIMER_MS,
  envBool,
  envEnum,
  envInt,
  envList,
  envMs,
  envPort,
  envText,
  envUrl,
  parseEnv,
  readConfigFile,
} from '@jwt-mesh/core';
export type { ConfigProblem, EnvUnit } from '@jwt-mesh/core';

/** A TCP port with a default; `0` picks a free one (tests). */
export const port = (dflt: number) => envPort().default(dflt);

/** A duration in milliseconds, strictly positive, with a default. */
export const millis = (dflt: number) => envMs().default(dflt);

/** An http(s) URL. */
export const httpUrl = () => envUrl(['http:', 'https:']);

/** Variables every service reads (besides the shared verifier ones). */
export const commonEnvSchema = z.object({
  /** Address the HTTP server binds to. Default loopback only: the sidecar reaches it there. */
  HOST: envText().default('127.0.0.1'),
  /** pino level. */
  LOG_LEVEL: envEnum(LOG_LEVELS).default('info'),
  /** After SIGTERM, how long in-flight requests may take before the process exits anyway (ms). */
  SHUTDOWN_TIMEOUT_MS: millis(10_000),
  /**
   * After SIGTERM, how long the service keeps serving with `/readyz` 503 before it closes its
   * listener (ms; 0 closes at once). Counts towards SHUTDOWN_TIMEOUT_MS. In Kubernetes it overlaps
   * with the preStop sleep; locally it lets callers' sidecars move off kept-alive connections.
   */
  DRAIN_GRACE_MS: envInt(0, 60_000, 'ms').default(1000),
});
