/**
 * Service configuration: read once from the environment at start-up, validated with zod,
 * frozen (CONTRIBUTING.md, "Config is read once, validated, frozen"). A bad value stops start-up with a message naming the variable.
 * Reading (`process.env`) is separate from parsing: every function takes the env as an argument.
 *
 * The verifier settings (`JWT_*`, `JWKS_URL`, `REDIS_URL`, `REVOCATION_*`, ...) are the shared
 * ones every verifier reads through the core's `loadVerifierConfig`; this module adds only what
 * a service itself needs.
 */
import { z } from 'zod';

/** Thrown when the environment is invalid; the message names every bad variable. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/**
 * Parses `env` with `schema` (an object schema whose keys are variable names). A variable that is
 * unset, empty or only white space takes its default, as everywhere else in jwt-mesh (an empty
 * `PORT=` must not become port 0).
 *
 * @returns the parsed values, frozen
 * @throws ConfigError naming each bad variable and why, e.g. `PORT: expected a number`
 */
export function parseEnv<S extends z.ZodObject>(schema: S, env: NodeJS.ProcessEnv): Readonly<z.infer<S>> {
  const present: Record<string, string> = {};
  for (const [name, value] of Object.entries(env)) {
    if (value !== undefined && value.trim() !== '') present[name] = value;
  }
  const result = schema.safeParse(present);
  if (!result.success) {
    const lines = result.error.issues.map((i) => `${i.path.join('.') || '(env)'}: ${i.message}`);
    throw new ConfigError(`invalid configuration: ${lines.join('; ')}`);
  }
  return Object.freeze(result.data);
}

/** A TCP port; `0` picks a free one (tests). */
export const port = (dflt: number) => z.coerce.number().int().min(0).max(65535).default(dflt);

/** A duration in milliseconds, strictly positive. */
export const millis = (dflt: number) => z.coerce.number().int().positive().default(dflt);

/** An http(s) URL. */
export const httpUrl = () =>
  z.string().url().refine((s) => /^https?:\/\//i.test(s), { message: 'must be an http:// or https:// URL' });

/** Variables every service reads (besides the shared verifier ones). */
export const commonEnvSchema = z.object({
  /** Address the HTTP server binds to. Default loopback only: the sidecar reaches it there. */
  HOST: z.string().min(1).default('127.0.0.1'),
  /** pino level. */
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  /** After SIGTERM, how long in-flight requests may take before the process exits anyway (ms). */
  SHUTDOWN_TIMEOUT_MS: millis(10_000),
  /**
   * After SIGTERM, how long the service keeps serving with `/readyz` 503 before it closes its
   * listener (ms; 0 closes at once). Counts towards SHUTDOWN_TIMEOUT_MS. In Kubernetes it overlaps
   * with the preStop sleep; locally it lets callers' sidecars move off kept-alive connections.
   */
  DRAIN_GRACE_MS: z.coerce.number().int().min(0).max(60_000).default(1000),
});
