/**
 * The variables of a make target's entry point (`make loadtest`, `loadtest-smoke`,
 * `loadtest-10k`), read once and checked with a zod object schema: an empty variable counts as
 * unset (so the default applies), and a bad value stops the run with a message naming it.
 */
import type { z } from 'zod';

/**
 * Picks the schema's variables from `env` (empty = unset) and parses them.
 * @returns the parsed values, defaults applied.
 * @throws Error `NAME: <what is wrong> (got "<value>")` for the first bad variable.
 */
export function readEnv<S extends z.ZodObject>(schema: S, env: NodeJS.ProcessEnv): z.infer<S> {
  const picked = Object.fromEntries(Object.keys(schema.shape).flatMap((k) => (env[k] ? [[k, env[k]]] : [])));
  const r = schema.safeParse(picked);
  if (!r.success) {
    const i = r.error.issues[0];
    const name = String(i?.path[0] ?? 'environment');
    throw new Error(`${name}: ${i?.message ?? 'invalid'} (got ${JSON.stringify(picked[name])})`);
  }
  return r.data;
}
