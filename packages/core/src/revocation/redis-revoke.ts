/**
 * The issuer's write (`RedisRevocation.revoke`): one Lua script sets the revocation key and
 * publishes the invalidation.
 */
import type { Redis } from 'ioredis';
import type { RevocationTarget } from '../types.js';
import type { LookupCache } from './redis-lookup.js';

/**
 * Atomically: keep the existing value of a `jti` / `sid` entry (the first revocation time) and
 * the larger value of a `sub` entry, never shorten an existing TTL, set the key, and publish the
 * invalidation only when the value changed (SET before PUBLISH, so a reader invalidated by the
 * message re-reads the new value). A re-sync that finds everything in place publishes nothing.
 * KEYS[1] key; ARGV: value, ttl seconds, channel, message, 'max' | 'set'. Returns the TTL set.
 */
const REVOKE_LUA = `
local cur = redis.call('GET', KEYS[1])
local val = ARGV[1]
local ttl = tonumber(ARGV[2])
if ARGV[5] == 'max' then
  local c = tonumber(cur)
  if c and c > tonumber(val) then val = cur end
elseif cur then
  val = cur
end
local curTtl = redis.call('TTL', KEYS[1])
if curTtl > ttl then ttl = curTtl end
redis.call('SET', KEYS[1], val, 'EX', ttl)
if cur ~= val then redis.call('PUBLISH', ARGV[3], ARGV[4]) end
return ttl
`;

/** The revoke script on a command connection ({@link defineRevokeCommand}). */
export interface RevokeCommand {
  /** {@link REVOKE_LUA}: returns the TTL set, seconds. */
  jwtmeshRevoke(key: string, value: string, ttl: number, channel: string, message: string, mode: 'max' | 'set'): Promise<number>;
}

/**
 * Defines the revoke Lua script on the command connection (ioredis `defineCommand`).
 * @returns the same connection, typed with {@link RevokeCommand}
 */
export function defineRevokeCommand<R extends Redis>(cmd: R): R & RevokeCommand {
  cmd.defineCommand('jwtmeshRevoke', { numberOfKeys: 1, lua: REVOKE_LUA });
  return cmd as R & RevokeCommand;
}

/** What {@link revokeInRedis} writes with. */
export interface RevokeContext {
  /** Key prefix, e.g. `jwtmesh:`. */
  readonly prefix: string;
  /** The invalidation channel, `<prefix>revocations` by default. */
  readonly channel: string;
  /** The sync marker's key, deleted when a write fails. */
  readonly markerKey: string;
  /** This process's own lookup cache, invalidated before and after the write. */
  readonly cache: LookupCache;
  /** Clock, epoch milliseconds. */
  readonly now: () => number;
}

/**
 * `RedisRevocation.revoke(target, expiresAt)` (see `createRedisRevocation`): sets
 * `<prefix>rv:<kind>:<id>` with TTL `max(1, ceil(expiresAt - now))` seconds and publishes the
 * message, in {@link REVOKE_LUA}.
 * @param expiresAt - epoch seconds: when every token the entry covers has expired
 * @throws TypeError for a bad target or date; the ioredis error when Redis cannot be written,
 *   after trying to delete the sync marker
 */
export async function revokeInRedis(cmd: Redis & RevokeCommand, c: RevokeContext, target: RevocationTarget, expiresAt: number): Promise<void> {
  if (target === null || typeof target !== 'object' || typeof target.id !== 'string' || target.id === '') {
    throw new TypeError('revoke: target.id must be a non-empty string');
  }
  if (!Number.isFinite(expiresAt)) throw new TypeError('revoke: expiresAt must be epoch seconds');
  const nowSec = c.now() / 1000;
  const ttl = Math.max(1, Math.ceil(expiresAt - nowSec));
  let value: string;
  let message: string;
  if (target.kind === 'sub') {
    if (!Number.isFinite(target.before)) throw new TypeError('revoke: before must be epoch seconds');
    const before = Math.ceil(target.before);
    value = String(before);
    message = JSON.stringify({ kind: 'sub', id: target.id, before });
  } else if (target.kind === 'jti' || target.kind === 'sid') {
    value = String(Math.floor(nowSec));
    message = JSON.stringify({ kind: target.kind, id: target.id });
  } else {
    throw new TypeError('revoke: target.kind must be jti, sid or sub');
  }
  const key = `${c.prefix}rv:${target.kind}:${target.id}`;
  c.cache.invalidate(key);
  try {
    await cmd.jwtmeshRevoke(key, value, ttl, c.channel, message, target.kind === 'sub' ? 'max' : 'set');
  } catch (err) {
    // Redis may still take a DEL when it refuses the write (OOM under noeviction, a script
    // error): without its marker every verifier fails closed instead of missing this entry,
    // until the issuer's re-sync has written everything again.
    await cmd.del(c.markerKey).catch(() => undefined);
    throw err;
  }
  c.cache.invalidate(key);
}
