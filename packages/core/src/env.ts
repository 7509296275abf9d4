/**
 * The environment helpers every jwt-mesh process reads its configuration with (the issuer, the
 * ext_authz server, the services, and the core's own `loadVerifierConfig`), so that one rule is
 * one function and one variable is read the same way everywhere (CONTRIBUTING.md, "Config is read
 * once, validated, frozen"). `@jwt-mesh/runtime` re-exports them for the processes.
 *
 * Each helper is a zod schema from the variable's text to its value. {@link parseEnv} applies a
 * schema of them to an environment and throws one {@link ConfigError} naming every bad variable
 * and why, e.g. `invalid configuration: PORT: must be a whole number from 0 to 65535 (got "abc")`.
 *
 * Upstream: zod 4 (https://zod.dev/api).
 */
import { readFileSync } from 'node:fs';
import { z } from 'zod';

/** One bad variable: its name and what is wrong with it. */
export interface ConfigProblem {
  /** The environment variable, e.g. `JWT_CLOCK_TOLERANCE_SEC`. */
  readonly variable: string;
  /** Why, e.g. `must be at most 300 s (got "3600")`. */
  readonly message: string;
}

/**
 * A bad configuration: thrown at start-up by every loader of jwt-mesh. The message is
 * `invalid configuration: VAR: why[; VAR2: why]`, and names every bad variable it knows of.
 */
export class ConfigError extends Error {
  /** The first bad variable. */
  readonly variable: string;
  /** Every bad variable, in the order found (`problems[0].variable === variable`). */
  readonly problems: readonly ConfigProblem[];

  /**
   * @param variable - the environment variable at fault
   * @param message - why, without the variable's name
   * @param options.cause - the underlying error (e.g. the failed file read)
   * @param options.more - further bad variables found in the same pass
   */
  constructor(variable: string, message: string, options: { cause?: unknown; more?: readonly ConfigProblem[] } = {}) {
    const problems = Object.freeze([{ variable, message }, ...(options.more ?? [])]);
    super(`invalid configuration: ${problems.map((p) => `${p.variable}: ${p.message}`).join('; ')}`, options.cause !== undefined ? { cause: options.cause } : undefined);
    this.name = 'ConfigError';
    this.variable = variable;
    this.problems = problems;
  }

  /** The error for several problems at once (`problems` must not be empty). */
  static of(problems: readonly ConfigProblem[]): ConfigError {
    const [first, ...more] = problems;
    return new ConfigError(first?.variable ?? '(env)', first?.message ?? 'invalid', { more });
  }
}

/** A unit shown after a number in messages: seconds, milliseconds, bytes. */
export type EnvUnit = 's' | 'ms' | 'bytes';

const unitText = (unit?: EnvUnit): string => (unit === undefined ? '' : ` ${unit}`);

/**
 * A whole number in `[min, max]`, from its decimal text (no sign, no fraction, no unit suffix).
 *
 * @param unit - shown in the messages (`must be at most 300 s`); put it in the variable's name too
 *   (`_SEC`, `_MS`, `_BYTES`)
 */
export function envInt(min: number, max: number, unit?: EnvUnit) {
  return z
    .string()
    .trim()
    .regex(/^\d+$/, `must be a whole number from ${min} to ${max}${unitText(unit)}`)
    .transform(Number)
    .pipe(z.number().int().min(min, `must be at least ${min}${unitText(unit)}`).max(max, `must be at most ${max}${unitText(unit)}`));
}

/** A TCP port, 0..65535 (0 = any free port). */
export function envPort() {
  return envInt(0, 65_535);
}

/** Longest timer Node accepts (`setTimeout`), milliseconds. */
export const MAX_TIMER_MS = 2_147_483_647;

/** A duration in milliseconds, `[min, max]`, default 1..{@link MAX_TIMER_MS}. */
export function envMs(min = 1, max = MAX_TIMER_MS) {
  return envInt(min, max, 'ms');
}

/**
 * A URL whose scheme is one of `protocols` (with the colon: `['redis:', 'rediss:']`).
 * Message: `must be a redis:// or rediss:// URL`.
 */
export function envUrl(protocols: readonly string[]) {
  return z
    .string()
    .trim()
    .refine((v) => URL.canParse(v) && protocols.includes(new URL(v).protocol), `must be a ${protocols.map((p) => `${p}//`).join(' or ')} URL`);
}

/** One of `values`, as written. Message: `must be closed or open`. */
export function envEnum<const T extends readonly [string, ...string[]]>(values: T) {
  const list = values.length === 1 ? values[0] : `${values.slice(0, -1).join(', ')} or ${values.at(-1)}`;
  return z.enum(values, { error: `must be ${list}` });
}

/** `true`/`false` (also `1`/`0`). */
export function envBool() {
  return z.enum(['true', 'false', '1', '0'], { error: 'must be true or false' }).transform((v) => v === 'true' || v === '1');
}

/** Text that is not empty once trimmed (returned trimmed). */
export function envText() {
  return z.string().trim().min(1, 'must not be empty');
}

/**
 * A list separated by commas and/or white space (`RS256, ES256 EdDSA`), each item checked by
 * `item`; duplicates removed, order kept.
 *
 * @param item - the schema of one item, e.g. `envEnum([...])` or a regex-checked string
 * @param minItems - fewest items accepted (default 0)
 */
export function envList<T>(item: z.ZodType<T, string>, minItems = 0) {
  return z
    .string()
    .transform((v) => [...new Set(v.split(/[\s,]+/).filter((s) => s !== ''))])
    .pipe(z.array(item).min(minItems, `must list at least ${minItems === 1 ? 'one item' : `${minItems} items`}`));
}

/** The log levels of pino, for `LOG_LEVEL`. */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/** Variables whose value is never echoed in a message (a URL may carry a password). */
const SECRET_VARIABLE = /(_URL|_PASSWORD|_SECRET|_TOKEN|_PRIVATE_JWK|_PRIVATE_KEY)$/;

/**
 * Reads the variables named by `schema`'s keys from `env` and validates them. A variable that is
 * unset, empty or only white space counts as unset: it takes `defaults[name]` when there is one,
 * else the schema's own `.default()` / `.optional()` applies (an empty `PORT=` never becomes port 0).
 *
 * @param schema - a zod object whose keys are variable names and whose values are the helpers above
 * @param env - the environment (read once, at start-up)
 * @param defaults - defaults as they would appear in the environment (text), by variable name
 * @returns the parsed values, frozen
 * @throws ConfigError naming every bad variable and why, with the value given (`(got "abc")`),
 *   except for variables that may hold a secret (names ending in `_URL`, `_PASSWORD`, `_SECRET`,
 *   `_TOKEN`, `_PRIVATE_JWK`, `_PRIVATE_KEY`)
 */
export function parseEnv<S extends z.ZodObject>(schema: S, env: Readonly<Record<string, string | undefined>>, defaults: Readonly<Record<string, string>> = {}): Readonly<z.infer<S>> {
  const input: Record<string, string> = {};
  for (const name of Object.keys(schema.shape)) {
    const value = env[name];
    if (value !== undefined && value.trim() !== '') input[name] = value;
    else if (defaults[name] !== undefined) input[name] = defaults[name];
  }
  const result = schema.safeParse(input);
  if (!result.success) throw ConfigError.of(result.error.issues.map((i) => problemOf(i, input)));
  return Object.freeze(result.data);
}

/** One zod issue as a {@link ConfigProblem}, with the value given unless it may be a secret. */
function problemOf(issue: z.core.$ZodIssue, input: Readonly<Record<string, string>>): ConfigProblem {
  const variable = String(issue.path[0] ?? '(env)');
  const got = input[variable];
  const shown = got === undefined || SECRET_VARIABLE.test(variable) ? '' : ` (got ${JSON.stringify(got.slice(0, 80))})`;
  return { variable, message: `${issue.message}${shown}` };
}

/**
 * Reads the file a variable names (a PEM, a password file, a key), at start-up.
 *
 * @param variable - the variable that named the file, e.g. `AUTHZ_TLS_CERT`
 * @param path - the file
 * @param read - how to read it; default `fs.readFileSync(path)` (a Buffer). Tests inject one.
 * @returns what `read` returned
 * @throws ConfigError `VAR: cannot read PATH (ENOENT)`, with the read error as `cause`
 */
export function readConfigFile<T = Buffer>(variable: string, path: string, read: (path: string) => T = (p) => readFileSync(p) as T): T {
  try {
    return read(path);
  } catch (err) {
    throw new ConfigError(variable, `cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? 'error'})`, { cause: err });
  }
}

/**
 * Runs several configuration readers and reports every bad variable of all of them at once.
 *
 * @param readers - functions that read part of the configuration and may throw {@link ConfigError}
 * @returns their results, in order
 * @throws ConfigError with the problems of every reader that failed; any other error as it is
 */
export function readConfigParts<T extends readonly (() => unknown)[]>(...readers: T): { -readonly [K in keyof T]: T[K] extends () => infer R ? R : never } {
  const problems: ConfigProblem[] = [];
  const results = readers.map((read) => {
    try {
      return read();
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      problems.push(...err.problems);
      return undefined;
    }
  });
  if (problems.length > 0) throw ConfigError.of(problems);
  return results as { -readonly [K in keyof T]: T[K] extends () => infer R ? R : never };
}
