/**
 * The two Redis connections of a revocation store (the command connection and the pub/sub
 * subscriber): who they are to Redis (client names, the ACL user and password, TLS trust) and
 * how they are opened and closed.
 */
import { Redis, type RedisOptions } from 'ioredis';
import type { RedisConnectionOptions } from '../redis-connection.js';

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
