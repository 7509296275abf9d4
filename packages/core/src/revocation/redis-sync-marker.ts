/**
 * The sync marker `<prefix>rv:synced` (see the module comment of `redis.ts`): the issuer's side
 * (the re-sync that writes it, the check that it still names the master) and the verifier's
 * (the identity of the server its connection is on, read at connect time and every second, and
 * the comparison of the two in every lookup).
 */
import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { RevocationClients } from './redis-clients.js';

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
