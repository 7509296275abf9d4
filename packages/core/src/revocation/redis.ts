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
import { createHash, randomUUID } from 'node:crypto';
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

/*
 * The two Redis connections of a revocation store (the command connection and the pub/sub
 * subscriber): who they are to Redis (client names, the ACL user and password, TLS trust) and
 * how they are opened and closed.
 */

/** Deadline of every command but the lookups (which have `lookupTimeoutMs`), milliseconds. */
const COMMAND_TIMEOUT_MS = 2_000;

/** The two connections of a revocation store, from {@link createRevocationClients}. */
export interface RevocationClients {
  /** Lookups, writes, scripts and `INFO`; fails fast (no offline queue, no retries per request). */
  readonly cmd: Redis;
  /** The pub/sub subscriber of the invalidation channel; reconnects without limit. */
  readonly sub: Redis;
}

/**
 * Opens the store's two connections to `redisUrl` with {@link redisClientOptions} and a 2 s
 * connect timeout:
 * - the command connection (`CLIENT SETNAME clientName`): no offline queue and no retries per
 *   request (a lookup fails fast instead of queueing behind a reconnect), auto-pipelining
 *   (concurrent lookups share round trips), a 2 s deadline on every command;
 * - the subscriber (`CLIENT SETNAME <clientName>-sub`): no automatic resubscribe (the subscriber
 *   subscribes on every `ready`, to know when it is back), retries without limit.
 *
 * Their `error` events go to `onError` as `connection` and `subscriber`.
 * @throws TypeError from {@link redisClientOptions}
 */
export function createRevocationClients(
  redisUrl: string,
  connection: RedisConnectionOptions | undefined,
  clientName: string,
  onError: (err: Error, context: 'connection' | 'subscriber') => void,
): RevocationClients {
  const common: RedisOptions = { ...redisClientOptions(redisUrl, connection), lazyConnect: false, connectTimeout: 2_000 };
  const cmd = new Redis(redisUrl, {
    ...common,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    enableAutoPipelining: true,
    connectionName: clientName,
    // No command waits forever on a connection that went silent (a dead host sends no reset).
    commandTimeout: COMMAND_TIMEOUT_MS,
  });
  const sub = new Redis(redisUrl, {
    ...common,
    autoResubscribe: false, // subscribed explicitly on every 'ready', to know when it is back
    maxRetriesPerRequest: null,
    connectionName: `${clientName}-sub`,
  });
  cmd.on('error', (err: Error) => onError(err, 'connection'));
  sub.on('error', (err: Error) => onError(err, 'subscriber'));
  return { cmd, sub };
}

/** Closes connections: QUIT politely, then a hard disconnect, never waiting more than 1 s. */
export async function closeClients(clients: readonly Redis[]): Promise<void> {
  // QUIT politely, but never wait more than a second for a slow or wedged server.
  await Promise.all(
    clients.map(async (c) => {
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

/*
 * The sync marker `<prefix>rv:synced` (see the module comment of `redis.ts`): the issuer's side
 * (the re-sync that writes it, the check that it still names the master) and the verifier's
 * (the identity of the server its connection is on, read at connect time and every second, and
 * the comparison of the two in every lookup).
 */

/** Raised by `RedisRevocation.resync` ({@link resyncMarker}) when the server changed while it ran. */
export class RedisServerChangedError extends Error {
  override readonly name = 'RedisServerChangedError';
}

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

/** The sync marker's scripts on a command connection ({@link defineSyncMarkerCommands}). */
export interface SyncMarkerCommands {
  /** {@link MARK_SYNCED_LUA}: 1 when the marker was set to `identity`, 0 when not. */
  jwtmeshMarkSynced(marker: string, nonceKey: string, identity: string): Promise<number>;
  /** {@link CHECK_SYNCED_LUA}: 1 when the marker names the server answering, else 0. */
  jwtmeshCheckSynced(marker: string): Promise<number>;
}

/**
 * Defines the sync marker's Lua scripts on the command connection (ioredis `defineCommand`:
 * EVALSHA, EVAL when the server does not hold the script).
 * @returns the same connection, typed with {@link SyncMarkerCommands}
 */
export function defineSyncMarkerCommands<R extends Redis>(cmd: R): R & SyncMarkerCommands {
  cmd.defineCommand('jwtmeshMarkSynced', { numberOfKeys: 2, lua: MARK_SYNCED_LUA });
  cmd.defineCommand('jwtmeshCheckSynced', { numberOfKeys: 1, lua: CHECK_SYNCED_LUA });
  return cmd as R & SyncMarkerCommands;
}

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

/** What {@link watchServerIdentity} knows of the server the command connection is on. */
export interface ServerIdentity {
  /**
   * Identity (`<run_id>:<master_replid>`) of the master the command connection is on; null
   * while (re)connecting, before `INFO` was read, or on a replica.
   */
  readonly serverId: string | null;
  /**
   * Whether the command connection is ready and has read `INFO` (and, with
   * `requireSyncMarker`, found a master): lookups can be answered.
   */
  connected(): boolean;
  /** Stops the periodic re-read of the identity (when the store closes). */
  stop(): void;
}

/**
 * Follows the identity of the server the command connection is on: reads `INFO` on every
 * `ready` and, with `requireSyncMarker`, again every {@link IDENTITY_REFRESH_MS} (a promotion or
 * demotion does not always drop connections), and forgets it when the connection drops. With
 * `requireSyncMarker`, a server that is not a master makes both connections reconnect (a master
 * demoted behind a stable address: a Service, a VIP, DNS); so does an `INFO` that fails or gets
 * no answer within the command deadline (a dead host that sent no reset). Each such reconnect is
 * reported to `onError` as `connection`.
 *
 * @param clients - the store's two connections (both are dropped on a reconnect)
 * @param o.isClosed - whether the store was closed: then nothing is read or reconnected
 */
export function watchServerIdentity(
  clients: RevocationClients,
  o: { requireSyncMarker: boolean; onError: (err: Error, context: 'connection') => void; isClosed: () => boolean },
): ServerIdentity {
  const { cmd, sub } = clients;
  const { requireSyncMarker, onError, isClosed } = o;
  /** Identity of the master the command connection is on; null while (re)connecting or on a replica. */
  let serverId: string | null = null;
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
    if (isClosed()) return;
    onError(new Error(`reconnecting to Redis: ${why}`), 'connection');
    serverId = null;
    infoRead = false;
    cmd.disconnect(true);
    sub.disconnect(true);
  };
  let reading = false;
  const readIdentity = (): void => {
    if (isClosed() || reading || cmd.status !== 'ready') return;
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
        // No answer within the command deadline, or an error: the connection may be dead without
        // a reset (a dead host); make a new one instead of waiting for TCP to give up.
        if (!isClosed() && cmd.status === 'ready') reconnect(`INFO failed (${err.message})`);
      },
    );
  };
  cmd.on('ready', readIdentity);
  // A promotion or demotion does not always drop connections: re-read the identity regularly.
  const identityTimer = requireSyncMarker ? setInterval(readIdentity, IDENTITY_REFRESH_MS) : undefined;
  identityTimer?.unref();
  return {
    get serverId() {
      return serverId;
    },
    connected: () => cmd.status === 'ready' && infoRead && (serverId !== null || !requireSyncMarker),
    stop: () => clearInterval(identityTimer),
  };
}

/**
 * A verifier's check of the sync marker read in a lookup's MGET.
 * @param markerKey - `<prefix>rv:synced` (named in the error)
 * @param marker - its value, null when missing
 * @param serverId - {@link ServerIdentity.serverId} now
 * @returns null when the marker names the master the connection is on; else the Error saying why
 *   Redis cannot be trusted (marker missing, or written on another server or before a restart or
 *   promotion, or the server is a replica or its identity is not known yet)
 */
export function markerMismatch(markerKey: string, marker: string | null, serverId: string | null): Error | null {
  if (serverId !== null && marker === serverId) return null;
  return new Error(
    marker === null
      ? `no sync marker ${markerKey}: this Redis has not received the issuer's revocations since it started`
      : `sync marker ${markerKey} names another Redis server than this one (${serverId ?? 'not a master, or identity unknown yet'}): it restarted, was promoted or changed since the issuer's last re-sync`,
  );
}

/**
 * The issuer's re-sync (`RedisRevocation.resync`): reads the master's identity, writes the
 * nonce key `<prefix>rv:syncing:<uuid>` (TTL 1 h), runs `publishAll`, then sets `markerKey` to
 * the identity with {@link MARK_SYNCED_LUA} (only if the server still has it and the nonce
 * survived).
 * @returns what `publishAll` returned
 * @throws whatever `publishAll` throws (the nonce is deleted, the marker not written); Error on a
 *   replica; {@link RedisServerChangedError} when the server restarted, changed or was flushed
 *   meanwhile; the ioredis error when Redis cannot be reached
 */
export async function resyncMarker<T>(cmd: Redis & SyncMarkerCommands, prefix: string, markerKey: string, publishAll: () => Promise<T>): Promise<T> {
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
  const set = await cmd.jwtmeshMarkSynced(markerKey, nonceKey, identity);
  if (set !== 1) {
    throw new RedisServerChangedError('the Redis server restarted, changed or was flushed during the re-sync; the sync marker was not written');
  }
  return result;
}

/**
 * `RedisRevocation.checkSynced`: whether `markerKey` names the master answering now (one
 * {@link CHECK_SYNCED_LUA} call).
 * @throws the ioredis error when Redis cannot be reached
 */
export async function markerNamesServer(cmd: SyncMarkerCommands, markerKey: string): Promise<boolean> {
  return (await cmd.jwtmeshCheckSynced(markerKey)) === 1;
}

/*
 * A verifier's lookup: the MGET of one token's revocation keys (and the sync marker), the
 * in-process cache of lookups, and the fail mode when Redis cannot answer.
 */

/** Cached "no key" marker (lru-cache cannot hold null). */
const ABSENT = '';

/** The revocation keys of one token: `<prefix>rv:jti:<jti>`, `...sid:<sid>` (null without a `sid`), `...sub:<sub>`. */
export interface RevocationKeys {
  readonly jti: string;
  readonly sid: string | null;
  readonly sub: string;
}

/** The values of {@link RevocationKeys} (epoch seconds as text; null: no such key, or no `sid`). */
export interface RevocationValues {
  readonly jti: string | null;
  readonly sid: string | null;
  readonly sub: string | null;
}

/**
 * The in-process cache of lookups (lru-cache, `ttlMs` milliseconds, at most `maxEntries` keys;
 * either 0 turns it off). It is trusted only while the subscriber is subscribed
 * ({@link subscribeToRevocations} calls {@link LookupCache.trust} and {@link LookupCache.distrust}); an `epoch`, bumped on
 * every invalidation and every change of that state, keeps a lookup that straddles one out of it.
 */
export class LookupCache {
  private readonly lru: LRUCache<string, string> | null;
  private currentEpoch = 0;
  private isSubscribed = false;

  /**
   * @param ttlMs - lifetime of a cached lookup, milliseconds
   * @param maxEntries - largest number of cached keys
   */
  constructor(ttlMs: number, maxEntries: number) {
    this.lru = ttlMs > 0 && maxEntries > 0 ? new LRUCache<string, string>({ max: maxEntries, ttl: ttlMs }) : null;
  }

  /** Bumped on every invalidation and subscriber state change; a lookup that straddles one is not cached. */
  get epoch(): number {
    return this.currentEpoch;
  }

  /** Whether the subscriber is subscribed (the cache is read and filled only then). */
  get subscribed(): boolean {
    return this.isSubscribed;
  }

  /** Every value of `keys` from the cache, or undefined when the cache is off, not trusted, or misses one. */
  read(keys: RevocationKeys): RevocationValues | undefined {
    if (this.lru === null || !this.isSubscribed) return undefined;
    const jti = this.get(keys.jti);
    const sub = this.get(keys.sub);
    const sid = keys.sid === null ? null : this.get(keys.sid);
    if (jti === undefined || sid === undefined || sub === undefined) return undefined;
    return { jti, sid, sub };
  }

  /** Caches a lookup's values, unless the cache is not trusted or `epoch` moved since `startEpoch`. */
  store(startEpoch: number, keys: RevocationKeys, values: RevocationValues): void {
    if (this.lru === null || !this.isSubscribed || startEpoch !== this.currentEpoch) return;
    this.lru.set(keys.jti, values.jti ?? ABSENT);
    this.lru.set(keys.sub, values.sub ?? ABSENT);
    if (keys.sid !== null) this.lru.set(keys.sid, values.sid ?? ABSENT);
  }

  /** Drops one key (a revocation message, or the issuer's own `revoke`). */
  invalidate(key: string): void {
    this.currentEpoch++;
    this.lru?.delete(key);
  }

  /** Drops every key (anything cached may have missed a message). */
  drop(): void {
    this.currentEpoch++;
    this.lru?.clear();
  }

  /** The subscriber is subscribed: drops what was cached before (it may have missed a message), then trusts the cache. */
  trust(): void {
    this.drop();
    this.isSubscribed = true;
  }

  /** The subscriber dropped (or the store closes): drops everything and stops using the cache. */
  distrust(): void {
    this.isSubscribed = false;
    this.drop();
  }

  private get(key: string): string | null | undefined {
    const v = this.lru!.get(key);
    return v === undefined ? undefined : v === ABSENT ? null : v;
  }
}

/** What {@link createRedisLookup} needs. */
export interface RedisLookupOptions {
  /** The command connection. */
  readonly cmd: Redis;
  /** Key prefix, e.g. `jwtmesh:`. */
  readonly prefix: string;
  readonly cache: LookupCache;
  /** Deadline of one MGET, milliseconds. */
  readonly lookupTimeoutMs: number;
  /** `onUnavailable: 'allow'`: a lookup Redis cannot answer resolves null instead of throwing. */
  readonly failOpen: boolean;
  /**
   * With `requireSyncMarker`: the marker's key, read in the same MGET, and the identity of the
   * server the connection is on, which it must name. null: the marker is not read.
   */
  readonly syncMarker: { readonly key: string; readonly serverId: () => string | null } | null;
  /** Every failed lookup (`lookup`) and every refused marker (`sync`). */
  readonly onError: (err: Error, context: 'lookup' | 'sync') => void;
}

/** The lookup's counters (the fields of the same names in `RedisRevocationStats`). */
export interface RedisLookupStats {
  /** `check` calls answered entirely from the in-process cache. */
  readonly cacheHits: number;
  /** Round trips to Redis made by `check`. */
  readonly lookups: number;
  /** Lookups that failed or timed out, or whose sync marker was refused. */
  readonly failures: number;
  /** Lookups refused because the sync marker was missing or named another server. */
  readonly unsynced: number;
  /** Whether the latest lookup found the sync marker for the server answering (true without `syncMarker`). */
  readonly synced: boolean;
}

/** The verifier's side of the store, from {@link createRedisLookup}. */
export interface RedisLookup {
  /** `RevocationChecker.check`, as `createRedisRevocation` describes it. */
  check: RevocationChecker['check'];
  /** The lookup's counters. */
  stats(): RedisLookupStats;
}

/**
 * The lookup of one token: from the cache when it holds every key of the token, else one MGET
 * (with the sync marker when `syncMarker` is given) within `lookupTimeoutMs`. When Redis cannot
 * answer (error, timeout, marker refused by {@link markerMismatch}) it calls `onError` and
 * fails closed (AuthError `revocation_unavailable`, 503) or, with `failOpen`, resolves null.
 */
export function createRedisLookup(o: RedisLookupOptions): RedisLookup {
  const { cmd, prefix, cache, syncMarker, onError } = o;
  let synced = syncMarker === null;
  const counters = { cacheHits: 0, lookups: 0, failures: 0, unsynced: 0 };

  function unavailable(err: unknown, context: 'lookup' | 'sync' = 'lookup'): null {
    counters.failures++;
    const e = err instanceof Error ? err : new Error(String(err));
    onError(e, context);
    if (o.failOpen) return null;
    throw new AuthError('revocation_unavailable', 'the revocation store could not be read', { cause: err });
  }

  return {
    async check({ jti, sid, sub: subject, iat }) {
      const keys: RevocationKeys = { jti: `${prefix}rv:jti:${jti}`, sid: sid === undefined ? null : `${prefix}rv:sid:${sid}`, sub: `${prefix}rv:sub:${subject}` };
      const cached = cache.read(keys);
      if (cached !== undefined) {
        counters.cacheHits++;
        if (tracingActive()) trace.getActiveSpan()?.setAttribute(JWT_MESH_ATTR.REVOCATION_SOURCE, 'cache');
        return evaluate(cached, iat);
      }
      const mgetKeys = keys.sid === null ? [keys.jti, keys.sub] : [keys.jti, keys.sub, keys.sid];
      if (syncMarker !== null) mgetKeys.push(syncMarker.key);
      const startEpoch = cache.epoch;
      counters.lookups++;
      if (tracingActive()) trace.getActiveSpan()?.setAttribute(JWT_MESH_ATTR.REVOCATION_SOURCE, 'redis');
      let values: Array<string | null>;
      try {
        values = await mgetWithTimeout(cmd, mgetKeys, o.lookupTimeoutMs);
      } catch (err) {
        return unavailable(err);
      }
      const found: RevocationValues = { jti: values[0] ?? null, sub: values[1] ?? null, sid: keys.sid === null ? null : (values[2] ?? null) };
      if (syncMarker !== null) {
        const mismatch = markerMismatch(syncMarker.key, values[mgetKeys.length - 1] ?? null, syncMarker.serverId());
        synced = mismatch === null;
        if (mismatch !== null) {
          counters.unsynced++;
          return unavailable(mismatch, 'sync');
        }
      }
      cache.store(startEpoch, keys, found);
      return evaluate(found, iat);
    },
    stats: () => ({ ...counters, synced }),
  };
}

/** MGET of `keys`, rejected after `timeoutMs` milliseconds. */
function mgetWithTimeout(cmd: Redis, keys: string[], timeoutMs: number): Promise<Array<string | null>> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`revocation lookup slower than ${timeoutMs} ms`)), timeoutMs);
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

/** The first entry that revokes a token issued at `iat` (epoch seconds): `jti`, `sid`, `sub` (when `iat < before`), or null. */
function evaluate(values: RevocationValues, iat: number): 'jti' | 'sid' | 'sub' | null {
  if (values.jti !== null) return 'jti';
  if (values.sid !== null) return 'sid';
  if (values.sub !== null) {
    const before = Number(values.sub);
    if (!Number.isFinite(before) || iat < before) return 'sub'; // unreadable: fail closed
  }
  return null;
}

/*
 * The subscriber: pub/sub on `<prefix>revocations`, the invalidation of the lookup cache by its
 * messages, and the cache's trust, which lasts only while the subscription does.
 */

/** The subscriber's counter, from {@link subscribeToRevocations}. */
export interface RevocationSubscriber {
  /** Invalidation messages received. */
  readonly invalidations: number;
}

/**
 * Keeps the lookup cache honest with the issuer's messages on `channel`: subscribes on every
 * `ready` of `sub` (then trusts the cache, emptied), distrusts and empties it whenever the
 * connection drops (so a missed message cannot keep a revoked token alive), and drops the key a
 * message names (`{"kind":"jti"|"sid"|"sub","id":"..."}`), or every key with a message it cannot
 * read (reported to `onError` as `message`). A failed SUBSCRIBE is reported as `subscriber`; the
 * next reconnect tries again.
 *
 * @param o.isClosed - whether the store was closed: a subscription that completes after that
 *   does not trust the cache again
 */
export function subscribeToRevocations(
  sub: Redis,
  o: { channel: string; prefix: string; cache: LookupCache; onError: (err: Error, context: 'subscriber' | 'message') => void; isClosed: () => boolean },
): RevocationSubscriber {
  const { channel, prefix, cache, onError, isClosed } = o;
  let invalidations = 0;
  for (const ev of ['close', 'end', 'reconnecting']) {
    sub.on(ev, () => cache.distrust());
  }
  sub.on('ready', () => {
    sub.subscribe(channel).then(
      () => {
        if (isClosed() || sub.status !== 'ready') return;
        cache.trust(); // anything cached before this point may have missed a message
      },
      (err: Error) => onError(err, 'subscriber'),
    );
  });
  sub.on('message', (ch: string, message: string) => {
    if (ch !== channel) return;
    invalidations++;
    const key = revokedKeyOf(prefix, message);
    if (key !== null) return cache.invalidate(key);
    onError(new Error('unreadable revocation message; cache cleared'), 'message');
    cache.drop();
  });
  return {
    get invalidations() {
      return invalidations;
    },
  };
}

/** The key a revocation message names (`<prefix>rv:<kind>:<id>`), or null for a message that is not one. */
function revokedKeyOf(prefix: string, message: string): string | null {
  try {
    const m = JSON.parse(message) as { kind?: unknown; id?: unknown };
    if ((m.kind === 'jti' || m.kind === 'sid' || m.kind === 'sub') && typeof m.id === 'string') return `${prefix}rv:${m.kind}:${m.id}`;
  } catch {
    // not JSON
  }
  return null;
}

/*
 * The issuer's write (`RedisRevocation.revoke`): one Lua script sets the revocation key and
 * publishes the invalidation.
 */

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
