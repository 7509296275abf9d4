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
import { createHash } from 'node:crypto';
import type { RedisConnectionOptions } from '../redis-connection.js';
import type { RevocationChecker, RevocationPublisher, RevocationTarget } from '../types.js';
import { closeClients, createRevocationClients } from './redis-clients.js';
import { createRedisLookup, LookupCache } from './redis-lookup.js';
import { defineRevokeCommand, revokeInRedis } from './redis-revoke.js';
import { subscribeToRevocations } from './redis-subscriber.js';
import { defineSyncMarkerCommands, markerNamesServer, resyncMarker, watchServerIdentity } from './redis-sync-marker.js';

export { redisClientOptions } from './redis-clients.js';
export { RedisServerChangedError } from './redis-sync-marker.js';

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
   *   Redis cannot be reached; Error when the server is a replica; `RedisServerChangedError`
   *   (exported here, defined in redis-sync-marker.ts) when the server restarted, was promoted,
   *   changed or was flushed while `publishAll` ran (run it again)
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
 * The store is the composition of its parts: the two connections ({@link createRevocationClients}),
 * the identity of the server they are on ({@link watchServerIdentity}), the cache of lookups
 * ({@link LookupCache}) kept honest by the subscriber ({@link subscribeToRevocations}), the
 * lookup ({@link createRedisLookup}), the issuer's writes ({@link revokeInRedis}) and re-sync
 * ({@link resyncMarker}, {@link markerNamesServer}).
 *
 * @throws TypeError / RangeError for bad options
 */
export function createRedisRevocation(opts: RedisRevocationOptions): RedisRevocation {
  const o = resolveRevocationOptions(opts);
  const { onError, requireSyncMarker, markerKey } = o;
  const clients = createRevocationClients(opts.redisUrl, opts.connection, o.clientName, onError);
  const cmd = defineSyncMarkerCommands(defineRevokeCommand(clients.cmd));
  const cache = new LookupCache(o.cacheTtlMs, o.cacheMaxEntries);
  let closed = false;
  const isClosed = () => closed;
  const server = watchServerIdentity(clients, { requireSyncMarker, onError, isClosed });
  const subscriber = subscribeToRevocations(clients.sub, { channel: o.channel, prefix: o.prefix, cache, onError, isClosed });
  const lookup = createRedisLookup({
    cmd,
    prefix: o.prefix,
    cache,
    lookupTimeoutMs: o.lookupTimeoutMs,
    failOpen: o.failOpen,
    syncMarker: requireSyncMarker ? { key: markerKey, serverId: () => server.serverId } : null,
    onError,
  });
  const writes = { prefix: o.prefix, channel: o.channel, markerKey, cache, now: o.now };

  return {
    check: lookup.check,
    revoke: (target: RevocationTarget, expiresAt: number) => revokeInRedis(cmd, writes, target, expiresAt),
    resync: <T>(publishAll: () => Promise<T>) => resyncMarker(cmd, o.prefix, markerKey, publishAll),
    checkSynced: () => markerNamesServer(cmd, markerKey),
    ready: (timeoutMs = 5_000) => waitUntilReady(timeoutMs, isClosed, () => server.connected() && cache.subscribed),
    async close() {
      closed = true;
      server.stop();
      cache.distrust();
      await closeClients([clients.cmd, clients.sub]);
    },
    stats() {
      const l = lookup.stats();
      return {
        cacheHits: l.cacheHits,
        lookups: l.lookups,
        failures: l.failures,
        invalidations: subscriber.invalidations,
        unsynced: l.unsynced,
        subscribed: cache.subscribed,
        synced: l.synced,
        connected: server.connected(),
      };
    },
  };
}

/** {@link RedisRevocationOptions} validated, with their defaults applied. */
interface RevocationSettings {
  readonly prefix: string;
  readonly channel: string;
  readonly cacheTtlMs: number;
  readonly cacheMaxEntries: number;
  /** `onUnavailable: 'allow'`. */
  readonly failOpen: boolean;
  readonly lookupTimeoutMs: number;
  readonly onError: NonNullable<RedisRevocationOptions['onError']>;
  readonly now: () => number;
  readonly clientName: string;
  readonly requireSyncMarker: boolean;
  /** The sync marker's key, `<prefix>rv:synced`. */
  readonly markerKey: string;
}

/**
 * Applies the defaults of {@link REDIS_REVOCATION_DEFAULTS} and validates the options.
 * @throws TypeError / RangeError naming the bad option
 */
function resolveRevocationOptions(opts: RedisRevocationOptions): RevocationSettings {
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
  const markerKey = `${prefix}rv:synced`;
  return { prefix, channel, cacheTtlMs, cacheMaxEntries, failOpen, lookupTimeoutMs, onError, now, clientName, requireSyncMarker, markerKey };
}

/**
 * `ready()`: polls every 10 ms until `isReady()` (resolves), `isClosed()` (rejects: the store was
 * closed) or `timeoutMs` milliseconds have passed (rejects: not ready in time).
 */
function waitUntilReady(timeoutMs: number, isClosed: () => boolean, isReady: () => boolean): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const started = Date.now();
    const poll = () => {
      if (isClosed()) return reject(new Error('revocation store closed'));
      if (isReady()) return resolve();
      if (Date.now() - started >= timeoutMs) return reject(new Error(`Redis not ready within ${timeoutMs} ms`));
      setTimeout(poll, 10);
    };
    poll();
  });
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
