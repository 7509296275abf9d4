/**
 * Helpers of the Redis revocation tests: token-shaped lookups, a store closed at teardown, and
 * what a lookup gave.
 */
import { randomUUID } from 'node:crypto';
import { AuthError } from '../src/errors.js';
import { createRedisRevocation, type RedisRevocation, type RedisRevocationOptions } from '../src/revocation/redis.js';

export const nowSec = () => Math.floor(Date.now() / 1000);
export const tok = () => ({ jti: `j-${randomUUID()}`, sid: `s-${randomUUID()}`, sub: `u-${randomUUID()}`, iat: nowSec() });

export function store(t: { teardown(fn: () => unknown): void }, opts: RedisRevocationOptions): RedisRevocation {
  const s = createRedisRevocation(opts);
  t.teardown(() => s.close());
  return s;
}

/** What `check` gave: its result, or the AuthError code. */
export async function outcome(p: Promise<unknown>): Promise<string> {
  try {
    return String(await p);
  } catch (err) {
    if (!(err instanceof AuthError)) throw err;
    return err.code;
  }
}
