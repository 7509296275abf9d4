/**
 * Redis revocation store (export path `@jwt-mesh/core/redis`): the fast path read by every
 * verifier on every request, written by the issuer after its database (the source of truth).
 *
 * Key layout (values are epoch seconds; every key has a TTL):
 * - `<prefix>rv:jti:<jti>`: this access token is revoked (value: when it was revoked)
 * - `<prefix>rv:sid:<sid>`: every token of this session / refresh-token family is revoked
 * - `<prefix>rv:sub:<sub>`: every token of this user issued before the value (`iat < value`)
 *   is revoked
 * - `<prefix>rv:synced`: the sync marker, no TTL. Its value is the identity of the Redis master
 *   on which the issuer last finished publishing every live revocation of its database
 *   ({@link RedisRevocation.resync}): `<run_id>:<master_replid>` from `INFO`. The `run_id` is new
 *   at every server start and the `master_replid` at every promotion to master.
 * - `<prefix>rv:syncing:<uuid>`: one per re-sync in progress (TTL 1 h); a FLUSHALL during the
 *   run deletes it, and then the marker is not written.
 * Pub/sub channel `<prefix>revocations`, message JSON `{"kind":"jti"|"sid"|"sub","id":"...","before"?:n}`.
 *
 * Why the marker: the database is the source of truth and Redis can lose entries (a restart
 * without persistence or from an older RDB snapshot, a failover, a FLUSHALL). An empty Redis
 * answers "not revoked" for everything. A verifier reads the marker in the same MGET as the
 * revocation keys and compares it with the identity of the server it is connected to (read at
 * connect time and again every second); when they differ (marker missing, written on another
 * server or before a restart or promotion, or the server is a replica) it fails closed
 * (`revocation_unavailable`, 503) until the issuer's re-sync has run on this master. Redis must
 * be read and written on the master.
 *
 * Least privilege (Redis 7 ACL users, {@link redisAclRules}): the issuer's user writes the
 * keys, the marker and the nonces (through the Lua scripts) and publishes; a verifier's user
 * can only `MGET` the revocation keys and the marker (read-only key patterns), run `INFO` (the
 * server identity) and `SUBSCRIBE` to the channel. So a compromised verifier cannot delete a
 * revocation or forge the marker.
 *
 * Each checker keeps a short-lived in-process cache of lookups (`cacheTtlMs`), dropped entry by
 * entry by the pub/sub message. The cache is trusted only while the subscriber connection is
 * subscribed: when it drops, the cache is cleared and bypassed until the subscription is back,
 * so a missed message cannot keep a revoked token alive.
 */
import { randomUUID } from 'node:crypto';
import { createHash } from 'node:crypto';
import { Redis, type RedisOptions } from 'ioredis';
import { trace } from '@opentelemetry/api';
import { LRUCache } from 'lru-cache';
import { AuthError } from '../errors.js';
import { JWT_MESH_ATTR, tracingActive } from '../tracing.js';
import type { RedisConnectionOptions } from '../redis-connection.js';
import type { RevocationChecker, RevocationPublisher, RevocationTarget } from '../types.js';

/** Options of {@link createRedisRevocation}. */
export interface RedisRevocationOptions {
  /** `redis://[user:pass@]host:port/db` (or `rediss://`). */
  redisUrl: string;
  /**
   * ACL user, password and TLS CA when they are not in `redisUrl` (the core's
   * `redisConnectionFromEnv`, or `VerifierConfig.redisConnection`). Default none.
   */
  connection?: RedisConnectionOptions;
  /** Key prefix. Default `jwtmesh:`. */
  prefix?: string;
  /** Pub/sub channel. Default `<prefix>revocations` (`jwtmesh:revocations`). */
  channel?: string;
  /** Lifetime of a cached lookup, in milliseconds; 0 disables the cache. Default 1_000. */
  cacheTtlMs?: number;
  /** Largest number of cached keys. Default 100_000. */
  cacheMaxEntries?: number;
  /**
   * When Redis cannot answer (unreachable, or slower than `lookupTimeoutMs`):
   * - `deny` (default, fail closed): `check` throws AuthError `revocation_unavailable` (503);
   * - `allow` (fail open, UNSAFE): `check` resolves `null`, so a revoked token is accepted
   *   until its `exp` while Redis is down. Choose it only where availability beats revocation.
   */
  onUnavailable?: 'deny' | 'allow';
  /** Deadline of one lookup, in milliseconds. Default 250. */
  lookupTimeoutMs?: number;
  /**
   * Called with every Redis error and every fail-open lookup (for logs / metrics). `lookup`: a
   * lookup failed or timed out (once per request: count it, do not log each); `sync`: Redis
   * answered but its sync marker is missing or names another server (see `requireSyncMarker`;
   * once per request too, but worth a throttled log line: it explains every 503 until the
   * issuer's re-sync); `connection`, `subscriber`, `message`: the connections and pub/sub.
   */
  onError?: (err: Error, context: 'lookup' | 'sync' | 'connection' | 'subscriber' | 'message') => void;
  /** Clock in epoch milliseconds, used for the TTL in `revoke`. Default `Date.now`. */
  now?: () => number;
  /** Redis `CLIENT SETNAME` of the command connection; the subscriber adds `-sub`. Default `jwtmesh-revocation`. */
  clientName?: string;
  /**
   * Trust Redis only when the issuer's sync marker `<prefix>rv:synced` names the identity
   * (`<run_id>:<master_replid>`) of the master answering (see the module comment); a connection
   * that finds a replica (or no answer to `INFO` within 2 s) reconnects. When it does not, `check` treats Redis as
   * unable to answer (`onUnavailable` decides: 503 by default). Default true. Set false only
   * where no issuer runs the re-sync and a lost revocation is acceptable (tests of the store
   * itself, benchmarks).
   */
  requireSyncMarker?: boolean;
}

/** Defaults of {@link RedisRevocationOptions}. */
export const REDIS_REVOCATION_DEFAULTS = Object.freeze({
  prefix: 'jwtmesh:',
  cacheTtlMs: 1_000,
  cacheMaxEntries: 100_000,
  onUnavailable: 'deny' as const,
  lookupTimeoutMs: 250,
  requireSyncMarker: true,
});

/** Raised by {@link RedisRevocation.resync} when the server changed while it ran. */
export class RedisServerChangedError extends Error {
  override readonly name = 'RedisServerChangedError';
}

/** Counters for metrics and tests. */
export interface RedisRevocationStats {
  /** `check` calls answered entirely from the in-process cache. */
  readonly cacheHits: number;
  /** Round trips to Redis made by `check`. */
  readonly lookups: number;
  /** Lookups that failed or timed out. */
  readonly failures: number;
  /** Invalidation messages received. */
  readonly invalidations: number;
  /** Whether the subscriber is subscribed (the cache is in use only then). */
  readonly subscribed: boolean;
  /**
   * Whether the command connection is ready and has read `INFO` (and, with `requireSyncMarker`,
   * found a master): lookups can be answered.
   */
  readonly connected: boolean;
  /**
   * Whether the latest lookup found the issuer's sync marker for the server answering (always
   * true when `requireSyncMarker` is false). False before the first lookup.
   */
  readonly synced: boolean;
  /** Lookups refused because the sync marker was missing or named another server. */
  readonly unsynced: number;
}

/** The Redis revocation store. */
export interface RedisRevocation extends RevocationChecker, RevocationPublisher {
  /**
   * Resolves when the command connection is ready (and has read `INFO`: with `requireSyncMarker`,
   * a master) and the subscriber is subscribed. It does not wait for the issuer's sync marker.
   * Call it at start-up (and gate readiness on it): lookups issued before fail fast.
   * @param timeoutMs - default 5_000
   * @throws Error when not ready within `timeoutMs`
   */
  ready(timeoutMs?: number): Promise<void>;
  /**
   * The issuer's re-sync, made safe against a server change: reads the master's identity
   * (`<run_id>:<master_replid>`), writes a nonce key for this run, runs `publishAll` (which must
   * write every live revocation of the source of truth through `revoke`), then sets the sync
   * marker to that identity, atomically and only if the server answering still has it and the
   * nonce survived (no FLUSHALL meanwhile). Verifiers with `requireSyncMarker` accept this
   * server's answers from then on.
   * @returns what `publishAll` returned
   * @throws whatever `publishAll` throws (the marker is not written); the ioredis error when
   *   Redis cannot be reached; Error when the server is a replica; {@link RedisServerChangedError}
   *   when the server restarted, was promoted, changed or was flushed while `publishAll` ran (run
   *   it again)
   */
  resync<T>(publishAll: () => Promise<T>): Promise<T>;
  /**
   * Whether the sync marker names the master answering now (one script call). The issuer polls
   * it to re-sync at once after a FLUSHALL or a failover that dropped no connection.
   * @throws the ioredis error when Redis cannot be reached
   */
  checkSynced(): Promise<boolean>;
  /** Closes both connections (QUIT, or a hard disconnect after 1 s). */
  close(): Promise<void>;
  stats(): RedisRevocationStats;
}

/** Cached "no key" marker (lru-cache cannot hold null). */
const ABSENT = '';

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

/** Lua: the server's identity (`<run_id>:<master_replid>`), or false on a replica. */
const LUA_IDENTITY = `
local function identity()
  local repl_info = redis.call('INFO', 'replication')
  if string.match(repl_info, 'role:(%a+)') ~= 'master' then return false end
  local run = string.match(redis.call('INFO', 'server'), 'run_id:(%x+)')
  local repl = string.match(repl_info, 'master_replid:(%x+)')
  if not run or not repl then return false end
  return run .. ':' .. repl
end
`;

/**
 * Ends a re-sync: sets the marker to ARGV[1] only if that is still this server's identity and
 * the run's nonce key survived (no FLUSHALL during the run); deletes the nonce either way.
 * KEYS[1] marker, KEYS[2] the run's nonce key. Returns 1 when set, 0 when not.
 */
const MARK_SYNCED_LUA = `${LUA_IDENTITY}
local ok = identity() == ARGV[1] and redis.call('EXISTS', KEYS[2]) == 1
redis.call('DEL', KEYS[2])
if not ok then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
return 1
`;

/** 1 when the marker (KEYS[1]) names this server, else 0. */
const CHECK_SYNCED_LUA = `${LUA_IDENTITY}
local id = identity()
if id and redis.call('GET', KEYS[1]) == id then return 1 end
return 0
`;

/** How often a verifier re-reads the identity of the server it is connected to, milliseconds. */
const IDENTITY_REFRESH_MS = 1_000;

/** Deadline of every command but the lookups (which have `lookupTimeoutMs`), milliseconds. */
const COMMAND_TIMEOUT_MS = 2_000;

type RedisWithRevoke = Redis & {
  jwtmeshRevoke(key: string, value: string, ttl: number, channel: string, message: string, mode: 'max' | 'set'): Promise<number>;
  jwtmeshMarkSynced(marker: string, nonceKey: string, identity: string): Promise<number>;
  jwtmeshCheckSynced(marker: string): Promise<number>;
};

/** `INFO server` and `INFO replication` (two small sections; Redis 6 takes one per call). */
async function readInfo(r: Redis): Promise<string> {
  const [server, replication] = await Promise.all([r.info('server'), r.info('replication')]);
  return `${server}\r\n${replication}`;
}

/**
 * The identity of a master from an `INFO` reply (`<run_id>:<master_replid>`), as the Lua
 * scripts compute it; null on a replica or when a field is missing.
 */
function identityOf(info: string): string | null {
  const field = (name: string) => new RegExp(`^${name}:([0-9a-zA-Z]+)\\r?$`, 'm').exec(info)?.[1] ?? null;
  const run = field('run_id');
  const repl = field('master_replid');
  if (field('role') !== 'master' || run === null || repl === null) return null;
  return `${run}:${repl}`;
}

/**
 * Builds the Redis revocation store: {@link RevocationChecker} for verifiers and
 * {@link RevocationPublisher} for the issuer.
 *
 * `check({jti, sid, sub, iat})` reads `rv:jti:<jti>`, `rv:sid:<sid>` and `rv:sub:<sub>` in one
 * MGET (from the cache when every key is cached and the subscriber is up) and resolves the
 * first that revokes: `'jti'`, `'sid'`, `'sub'` (when `iat < before`; an unreadable value counts
 * as revoked), or `null`. With `requireSyncMarker` (default) the same MGET reads the sync marker,
 * and a marker that is missing or names another server than the one connected counts as Redis
 * being unable to answer. Errors: see `onUnavailable`. When tracing is on, `check` sets
 * `jwt_mesh.revocation.source` (`cache` or `redis`) on the active span (the authenticator's
 * `revocation.check` span).
 *
 * `revoke(target, expiresAt)` sets the key with TTL `max(1, ceil(expiresAt - now))` seconds
 * (never shortening an existing TTL; for `sub`, never lowering `before`) and publishes the
 * message when the value changed, in one Lua script. `expiresAt` is epoch seconds: when every
 * token the entry covers has expired. Throws the ioredis error when Redis cannot be written,
 * after trying to delete the sync marker (so verifiers fail closed until the next re-sync).
 *
 * ioredis settings: the command connection has no offline queue and no retries per request
 * (fail fast) and uses auto-pipelining (concurrent lookups share round trips); the
 * subscriber resubscribes itself after every reconnect.
 *
 * @throws TypeError / RangeError for bad options
 */
export function createRedisRevocation(opts: RedisRevocationOptions): RedisRevocation {
  const prefix = opts.prefix ?? REDIS_REVOCATION_DEFAULTS.prefix;
  const channel = opts.channel ?? `${prefix}revocations`;
  const cacheTtlMs = opts.cacheTtlMs ?? REDIS_REVOCATION_DEFAULTS.cacheTtlMs;
  const cacheMaxEntries = opts.cacheMaxEntries ?? REDIS_REVOCATION_DEFAULTS.cacheMaxEntries;
  const failOpen = (opts.onUnavailable ?? REDIS_REVOCATION_DEFAULTS.onUnavailable) === 'allow';
  const lookupTimeoutMs = opts.lookupTimeoutMs ?? REDIS_REVOCATION_DEFAULTS.lookupTimeoutMs;
  const onError = opts.onError ?? (() => undefined);
  const now = opts.now ?? Date.now;
  const clientName = opts.clientName ?? 'jwtmesh-revocation';
  if (!/^[!-~]+$/.test(clientName)) throw new TypeError('clientName must be printable ASCII without spaces');
  if (typeof opts.redisUrl !== 'string' || opts.redisUrl === '') throw new TypeError('redisUrl is required');
  if (opts.onUnavailable !== undefined && opts.onUnavailable !== 'deny' && opts.onUnavailable !== 'allow') {
    throw new TypeError("onUnavailable must be 'deny' or 'allow'");
  }
  for (const [name, v] of [['cacheTtlMs', cacheTtlMs], ['lookupTimeoutMs', lookupTimeoutMs], ['cacheMaxEntries', cacheMaxEntries]] as const) {
    if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`${name} must be an integer >= 0`);
  }
  if (lookupTimeoutMs === 0) throw new RangeError('lookupTimeoutMs must be > 0');
  const requireSyncMarker = opts.requireSyncMarker ?? REDIS_REVOCATION_DEFAULTS.requireSyncMarker;
  if (typeof requireSyncMarker !== 'boolean') throw new TypeError('requireSyncMarker must be a boolean');
  const kSynced = `${prefix}rv:synced`;

  const common: RedisOptions = { ...redisClientOptions(opts.redisUrl, opts.connection), lazyConnect: false, connectTimeout: 2_000 };
  const cmd = new Redis(opts.redisUrl, {
    ...common,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    enableAutoPipelining: true,
    connectionName: clientName,
    // No command waits forever on a connection that went silent (a dead host sends no reset).
    commandTimeout: COMMAND_TIMEOUT_MS,
  }) as RedisWithRevoke;
  cmd.defineCommand('jwtmeshRevoke', { numberOfKeys: 1, lua: REVOKE_LUA });
  cmd.defineCommand('jwtmeshMarkSynced', { numberOfKeys: 2, lua: MARK_SYNCED_LUA });
  cmd.defineCommand('jwtmeshCheckSynced', { numberOfKeys: 1, lua: CHECK_SYNCED_LUA });
  const sub = new Redis(opts.redisUrl, {
    ...common,
    autoResubscribe: false, // subscribed explicitly on every 'ready', to know when it is back
    maxRetriesPerRequest: null,
    connectionName: `${clientName}-sub`,
  });

  const cache = cacheTtlMs > 0 && cacheMaxEntries > 0 ? new LRUCache<string, string>({ max: cacheMaxEntries, ttl: cacheTtlMs }) : null;
  /** Bumped on every invalidation and subscriber state change; a lookup that straddles one is not cached. */
  let epoch = 0;
  let subscribed = false;
  let closed = false;
  /** Identity of the master the command connection is on; null while (re)connecting or on a replica. */
  let serverId: string | null = null;
  let synced = !requireSyncMarker;
  const counters = { cacheHits: 0, lookups: 0, failures: 0, invalidations: 0, unsynced: 0 };

  function dropCache(): void {
    epoch++;
    cache?.clear();
  }

  cmd.on('error', (err: Error) => onError(err, 'connection'));
  /** Whether INFO was read on the current command connection (connected, whatever the role). */
  let infoRead = false;
  for (const ev of ['close', 'end', 'reconnecting']) {
    cmd.on(ev, () => {
      serverId = null;
      infoRead = false;
    });
  }
  /** Drops both connections so that ioredis reconnects (through the same address). */
  const reconnect = (why: string): void => {
    if (closed) return;
    onError(new Error(`reconnecting to Redis: ${why}`), 'connection');
    serverId = null;
    infoRead = false;
    cmd.disconnect(true);
    sub.disconnect(true);
  };
  let reading = false;
  const readIdentity = (): void => {
    if (closed || reading || cmd.status !== 'ready') return;
    reading = true;
    readInfo(cmd).then(
      (info) => {
        reading = false;
        if (cmd.status !== 'ready') return;
        infoRead = true;
        const id = identityOf(info);
        const wasKnown = serverId !== null;
        serverId = id;
        // A master demoted behind a stable address (a Service, a VIP, DNS) keeps our connection:
        // reconnect to reach whatever is master there now. Only when the marker matters: a
        // verifier without it reads any server.
        if (id === null && requireSyncMarker) reconnect(wasKnown ? 'the server is no longer a master' : 'the server is not a master (revocations are read and written on the master)');
      },
      (err: Error) => {
        reading = false;
        serverId = null;
        // No answer within COMMAND_TIMEOUT_MS, or an error: the connection may be dead without a
        // reset (a dead host); make a new one instead of waiting for TCP to give up.
        if (!closed && cmd.status === 'ready') reconnect(`INFO failed (${err.message})`);
      },
    );
  };
  cmd.on('ready', readIdentity);
  // A promotion or demotion does not always drop connections: re-read the identity regularly.
  const identityTimer = requireSyncMarker ? setInterval(readIdentity, IDENTITY_REFRESH_MS) : undefined;
  identityTimer?.unref();
  sub.on('error', (err: Error) => onError(err, 'subscriber'));
  for (const ev of ['close', 'end', 'reconnecting']) {
    sub.on(ev, () => {
      subscribed = false;
      dropCache();
    });
  }
  sub.on('ready', () => {
    sub.subscribe(channel).then(
      () => {
        if (closed || sub.status !== 'ready') return;
        dropCache(); // anything cached before this point may have missed a message
        subscribed = true;
      },
      (err: Error) => onError(err, 'subscriber'),
    );
  });
  sub.on('message', (ch: string, message: string) => {
    if (ch !== channel) return;
    counters.invalidations++;
    epoch++;
    try {
      const m = JSON.parse(message) as { kind?: unknown; id?: unknown };
      if ((m.kind === 'jti' || m.kind === 'sid' || m.kind === 'sub') && typeof m.id === 'string') {
        cache?.delete(`${prefix}rv:${m.kind}:${m.id}`);
        return;
      }
    } catch {
      // fall through
    }
    onError(new Error('unreadable revocation message; cache cleared'), 'message');
    cache?.clear();
  });

  function unavailable(err: unknown, context: 'lookup' | 'sync' = 'lookup'): null {
    counters.failures++;
    const e = err instanceof Error ? err : new Error(String(err));
    onError(e, context);
    if (failOpen) return null;
    throw new AuthError('revocation_unavailable', 'the revocation store could not be read', { cause: err });
  }

  function mgetWithTimeout(keys: string[]): Promise<Array<string | null>> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`revocation lookup slower than ${lookupTimeoutMs} ms`)), lookupTimeoutMs);
      cmd.mget(keys).then(
        (v) => {
          clearTimeout(timer);
          resolve(v);
        },
        (err: unknown) => {
          clearTimeout(timer);
          reject(err);
        },
      );
    });
  }

  function evaluate(jtiVal: string | null, sidVal: string | null, subVal: string | null, iat: number): 'jti' | 'sid' | 'sub' | null {
    if (jtiVal !== null) return 'jti';
    if (sidVal !== null) return 'sid';
    if (subVal !== null) {
      const before = Number(subVal);
      if (!Number.isFinite(before) || iat < before) return 'sub'; // unreadable: fail closed
    }
    return null;
  }

  const fromCache = (v: string | undefined): string | null | undefined => (v === undefined ? undefined : v === ABSENT ? null : v);

  return {
    async check({ jti, sid, sub: subject, iat }) {
      const kJti = `${prefix}rv:jti:${jti}`;
      const kSub = `${prefix}rv:sub:${subject}`;
      const kSid = sid === undefined ? null : `${prefix}rv:sid:${sid}`;
      if (cache !== null && subscribed) {
        const a = fromCache(cache.get(kJti));
        const c = fromCache(cache.get(kSub));
        const b = kSid === null ? null : fromCache(cache.get(kSid));
        if (a !== undefined && b !== undefined && c !== undefined) {
          counters.cacheHits++;
          if (tracingActive()) trace.getActiveSpan()?.setAttribute(JWT_MESH_ATTR.REVOCATION_SOURCE, 'cache');
          return evaluate(a, b, c, iat);
        }
      }
      const keys = kSid === null ? [kJti, kSub] : [kJti, kSub, kSid];
      if (requireSyncMarker) keys.push(kSynced);
      const startEpoch = epoch;
      counters.lookups++;
      if (tracingActive()) trace.getActiveSpan()?.setAttribute(JWT_MESH_ATTR.REVOCATION_SOURCE, 'redis');
      let values: Array<string | null>;
      try {
        values = await mgetWithTimeout(keys);
      } catch (err) {
        return unavailable(err);
      }
      const a = values[0] ?? null;
      const c = values[1] ?? null;
      const b = kSid === null ? null : (values[2] ?? null);
      if (requireSyncMarker) {
        const marker = values[keys.length - 1] ?? null;
        synced = serverId !== null && marker === serverId;
        if (!synced) {
          counters.unsynced++;
          return unavailable(
            new Error(
              marker === null
                ? `no sync marker ${kSynced}: this Redis has not received the issuer's revocations since it started`
                : `sync marker ${kSynced} names another Redis server than this one (${serverId ?? 'not a master, or identity unknown yet'}): it restarted, was promoted or changed since the issuer's last re-sync`,
            ),
            'sync',
          );
        }
      }
      if (cache !== null && subscribed && startEpoch === epoch) {
        cache.set(kJti, a ?? ABSENT);
        cache.set(kSub, c ?? ABSENT);
        if (kSid !== null) cache.set(kSid, b ?? ABSENT);
      }
      return evaluate(a, b, c, iat);
    },

    async revoke(target: RevocationTarget, expiresAt: number) {
      if (target === null || typeof target !== 'object' || typeof target.id !== 'string' || target.id === '') {
        throw new TypeError('revoke: target.id must be a non-empty string');
      }
      if (!Number.isFinite(expiresAt)) throw new TypeError('revoke: expiresAt must be epoch seconds');
      const nowSec = now() / 1000;
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
      const key = `${prefix}rv:${target.kind}:${target.id}`;
      epoch++;
      cache?.delete(key);
      try {
        await cmd.jwtmeshRevoke(key, value, ttl, channel, message, target.kind === 'sub' ? 'max' : 'set');
      } catch (err) {
        // Redis may still take a DEL when it refuses the write (OOM under noeviction, a script
        // error): without its marker every verifier fails closed instead of missing this entry,
        // until the issuer's re-sync has written everything again.
        await cmd.del(kSynced).catch(() => undefined);
        throw err;
      }
      epoch++;
      cache?.delete(key);
    },

    async resync<T>(publishAll: () => Promise<T>): Promise<T> {
      const identity = identityOf(await readInfo(cmd));
      if (identity === null) throw new Error('this Redis is not a master (or INFO lacks run_id / master_replid): cannot re-sync');
      const nonceKey = `${prefix}rv:syncing:${randomUUID()}`;
      await cmd.set(nonceKey, '1', 'EX', 3600);
      let result: T;
      try {
        result = await publishAll();
      } catch (err) {
        await cmd.del(nonceKey).catch(() => undefined);
        throw err;
      }
      const set = await cmd.jwtmeshMarkSynced(kSynced, nonceKey, identity);
      if (set !== 1) {
        throw new RedisServerChangedError('the Redis server restarted, changed or was flushed during the re-sync; the sync marker was not written');
      }
      return result;
    },

    async checkSynced() {
      return (await cmd.jwtmeshCheckSynced(kSynced)) === 1;
    },

    ready(timeoutMs = 5_000) {
      return new Promise<void>((resolve, reject) => {
        const started = Date.now();
        const poll = () => {
          if (closed) return reject(new Error('revocation store closed'));
          if (cmd.status === 'ready' && infoRead && (serverId !== null || !requireSyncMarker) && subscribed) return resolve();
          if (Date.now() - started >= timeoutMs) return reject(new Error(`Redis not ready within ${timeoutMs} ms`));
          setTimeout(poll, 10);
        };
        poll();
      });
    },

    async close() {
      closed = true;
      clearInterval(identityTimer);
      subscribed = false;
      cache?.clear();
      // QUIT politely, but never wait more than a second for a slow or wedged server.
      await Promise.all(
        [cmd, sub].map(async (c) => {
          if (c.status !== 'ready') return c.disconnect();
          let timer: NodeJS.Timeout | undefined;
          const gaveUp = new Promise<void>((r) => {
            timer = setTimeout(r, 1_000);
          });
          await Promise.race([c.quit().catch(() => undefined), gaveUp]);
          clearTimeout(timer);
          c.disconnect();
        }),
      );
    },

    stats() {
      return { ...counters, subscribed, synced, connected: cmd.status === 'ready' && infoRead && (serverId !== null || !requireSyncMarker) };
    },
  };
}

/**
 * ioredis options for a Redis connection of jwt-mesh: the ACL user and password (when given
 * here rather than in the URL; ioredis sends `AUTH <username> <password>`), the CA of a
 * `rediss://` server, and no `CLIENT SETINFO` (a least-privileged ACL user may not run it:
 * every connection would leave a denial in `ACL LOG`, where real denials must stand out).
 *
 * @param url - the Redis URL the client connects to (TLS options only for `rediss://`)
 * @param connection - from `redisConnectionFromEnv` / `VerifierConfig.redisConnection`
 * @returns options to pass beside the URL: `new Redis(url, { ...redisClientOptions(url, c), ... })`
 * @throws TypeError when `tlsCa` is given for a URL that is not `rediss://`
 */
export function redisClientOptions(url: string, connection: RedisConnectionOptions = {}): RedisOptions {
  const out: RedisOptions = { disableClientInfo: true };
  if (connection.username !== undefined) out.username = connection.username;
  if (connection.password !== undefined) out.password = connection.password;
  if (connection.tlsCa !== undefined) {
    if (!/^rediss:/i.test(url)) throw new TypeError('tlsCa needs a rediss:// URL');
    out.tls = { ca: connection.tlsCa };
  }
  return out;
}

/** The Redis ACL user names of jwt-mesh (one issuer user; one user shared by every verifier). */
export const REDIS_ACL_USERS = Object.freeze({ issuer: 'jwtmesh-issuer', verifier: 'jwtmesh-verifier' });

/** What a Redis ACL user of {@link redisAclRules} may do, as `ACL SETUSER` / ACL-file rules. */
export interface RedisAclRules {
  /** The auth-service: the revocation store's writes and reads, its rate-limit counters. */
  readonly issuer: readonly string[];
  /** authz-service and the services: read the revocation keys and the marker, subscribe. */
  readonly verifier: readonly string[];
}

/**
 * The least-privilege Redis ACL rules (Redis 7.0+, https://redis.io/docs/latest/operate/oss_and_stack/management/security/acl/)
 * of jwt-mesh's Redis users for key prefix `prefix` (`P`):
 *
 * - issuer: keys `P rv:*` (revocation entries, sync marker, re-sync nonces) and `P rl:*` (the
 *   auth-service's rate-limit counters), channel `P revocations`; commands `GET MGET SET DEL
 *   EXISTS TTL` (the store and its Lua scripts), `INCR PEXPIRE PTTL` (the rate-limit script),
 *   `EVAL EVALSHA` (both scripts; every command a script runs is checked against these same
 *   rules), `PUBLISH SUBSCRIBE`, `INFO` (the server identity, also from the scripts), and the
 *   connection's own `PING SELECT CLIENT SETNAME`.
 * - verifier: read-only keys (`%R~`) `P rv:jti:*`, `P rv:sid:*`, `P rv:sub:*` and the marker
 *   `P rv:synced`, channel `P revocations`; commands `MGET` (the lookup), `INFO` (the server
 *   identity compared with the marker; ioredis's ready check), `SUBSCRIBE`, and `PING SELECT
 *   CLIENT SETNAME`. Nothing else: `SET`, `DEL`, `FLUSHALL`, `PUBLISH`, `EVAL` ... get `NOPERM`.
 *
 * Both start from `reset`-like rules (`resetkeys resetchannels -@all`), so nothing granted
 * elsewhere survives. `AUTH` and `QUIT` need no rule.
 *
 * @param prefix - the `REDIS_PREFIX` of the issuer and every verifier; default `jwtmesh:`
 * @throws TypeError when the prefix is not 1-64 of `A-Z a-z 0-9 : . _ -` (the configuration's
 *   rule; no glob character can reach a pattern)
 */
export function redisAclRules(prefix: string = REDIS_REVOCATION_DEFAULTS.prefix): RedisAclRules {
  if (!/^[A-Za-z0-9:._-]{1,64}$/.test(prefix)) throw new TypeError('prefix must be 1-64 characters of A-Z a-z 0-9 : . _ -');
  const connection = ['+ping', '+select', '+client|setname'];
  return Object.freeze({
    issuer: Object.freeze([
      'resetkeys',
      'resetchannels',
      `~${prefix}rv:*`,
      `~${prefix}rl:*`,
      `&${prefix}revocations`,
      '-@all',
      ...['+get', '+mget', '+set', '+del', '+exists', '+ttl'],
      ...['+incr', '+pexpire', '+pttl'],
      ...['+eval', '+evalsha', '+publish', '+subscribe', '+info'],
      ...connection,
    ]),
    verifier: Object.freeze([
      'resetkeys',
      'resetchannels',
      `%R~${prefix}rv:jti:*`,
      `%R~${prefix}rv:sid:*`,
      `%R~${prefix}rv:sub:*`,
      `%R~${prefix}rv:synced`,
      `&${prefix}revocations`,
      '-@all',
      ...['+mget', '+info', '+subscribe'],
      ...connection,
    ]),
  });
}

/** One user of {@link redisAclFile}. */
export interface RedisAclUser {
  /** 1-128 of `A-Z a-z 0-9 . _ -` (not `default`: the file turns that one off). */
  readonly name: string;
  /** Its password: only its SHA-256 is written. */
  readonly password: string;
  /** Its rules, e.g. from {@link redisAclRules}. */
  readonly rules: readonly string[];
}

/**
 * The text of a Redis ACL file (`aclfile` directive / `--aclfile`) with these users, each `on`
 * with its password as a SHA-256 (`#<hex>`, so the file holds no password), and the `default`
 * user turned off: a connection without credentials can do nothing.
 * @throws TypeError for a bad user name, an empty password or a rule with a space or newline
 */
export function redisAclFile(users: readonly RedisAclUser[]): string {
  const lines = ['user default off resetkeys resetchannels -@all'];
  for (const u of users) {
    if (!/^[A-Za-z0-9._-]{1,128}$/.test(u.name) || u.name === 'default') throw new TypeError(`bad ACL user name ${JSON.stringify(u.name)}`);
    if (typeof u.password !== 'string' || u.password === '') throw new TypeError(`ACL user ${u.name}: empty password`);
    for (const r of u.rules) if (!/^[!-~]+$/.test(r)) throw new TypeError(`ACL user ${u.name}: bad rule ${JSON.stringify(r)}`);
    const hash = createHash('sha256').update(u.password, 'utf8').digest('hex');
    lines.push(['user', u.name, 'on', `#${hash}`, ...u.rules].join(' '));
  }
  return `${lines.join('\n')}\n`;
}

/**
 * FOR TESTS AND BENCHMARKS: writes the sync marker for `prefix` on `redisUrl` the way the
 * issuer's re-sync does when its database holds no revocation (`resync` with nothing to
 * publish), so that verifiers of that prefix answer instead of failing closed. `connection`:
 * the issuer's ACL user on a Redis with ACL users.
 * @throws Error when Redis is not ready within 5 s; the ioredis error when it cannot be written
 */
export async function markSyncedForTests(redisUrl: string, prefix: string, connection?: RedisConnectionOptions): Promise<void> {
  const store = createRedisRevocation({ redisUrl, prefix, clientName: 'jwtmesh-test-resync', ...(connection ? { connection } : {}) });
  try {
    await store.ready();
    await store.resync(async () => undefined);
  } finally {
    await store.close();
  }
}
