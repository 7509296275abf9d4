/**
 * Readiness probes used while the stack starts: one HTTP GET, a Redis PING (ioredis), a PostgreSQL
 * `SELECT 1`, a gRPC `grpc.health.v1.Health/Check` over mTLS, and a wait loop that gives up
 * early when the process behind the probe has exited.
 */
import { request as httpRequest } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { protoPath as healthProtoPath } from 'grpc-health-check';
import { Redis } from 'ioredis';
import pg from 'pg';

/** One GET with a socket timeout; never throws (network errors give status 0 and the message as body). */
export function httpGet(url: string, timeoutMs = 2000, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolveRes) => {
    const req = httpRequest(url, { method: 'GET', agent: false, timeout: timeoutMs, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolveRes({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', (err) => resolveRes({ status: 0, body: err.message }));
    });
    req.on('timeout', () => req.destroy(new Error(`timed out after ${timeoutMs} ms`)));
    req.on('error', (err) => resolveRes({ status: 0, body: err.message }));
    req.end();
  });
}

/**
 * Sends `PING` to a Redis server through ioredis (so `rediss://` works, and `AUTH <user>
 * <password>` when the URL carries credentials).
 * @param url `redis[s]://[user:password@]host:port[/db]`
 * @returns true on `PONG`; false on any error (refused, NOAUTH, WRONGPASS, TLS) or after `timeoutMs`.
 */
export async function redisPing(url: string, timeoutMs = 1500): Promise<boolean> {
  let r: Redis;
  try {
    r = new Redis(url, {
      lazyConnect: true,
      connectTimeout: timeoutMs,
      commandTimeout: timeoutMs,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
      enableReadyCheck: false,
      enableOfflineQueue: false,
      disableClientInfo: true,
    });
  } catch {
    return false;
  }
  r.on('error', () => undefined); // the answer is the boolean
  try {
    await r.connect();
    return (await r.ping()) === 'PONG';
  } catch {
    return false;
  } finally {
    r.disconnect();
  }
}

/**
 * Runs `SELECT 1` on a PostgreSQL URL.
 * @returns null when it worked, else the error message.
 */
export async function postgresPing(url: string, timeoutMs = 3000): Promise<string | null> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: timeoutMs, query_timeout: timeoutMs });
  try {
    await client.connect();
    await client.query('SELECT 1');
    return null;
  } catch (err) {
    return (err as Error).message || String(err);
  } finally {
    await client.end().catch(() => undefined);
  }
}

interface HealthClient extends grpc.Client {
  Check(req: { service: string }, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: { status: string }) => void): void;
}
let HealthCtor: (new (address: string, creds: grpc.ChannelCredentials, options?: grpc.ChannelOptions) => HealthClient) | undefined;

/** TLS material for a gRPC client: PEM contents, plus the name the server's certificate must carry. */
export interface GrpcTls {
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
  /** TLS server name / authority to verify against the server certificate (e.g. `authz.jwt-mesh.svc.cluster.local`). */
  serverName: string;
}

/**
 * `grpc.health.v1.Health/Check` for `service` ('' = the whole server) over mTLS.
 * @returns the serving status (`SERVING`, `NOT_SERVING`, ...) or `error: <message>`.
 */
export async function grpcHealth(address: string, tls: GrpcTls, service = '', timeoutMs = 2000): Promise<string> {
  HealthCtor ??= (
    grpc.loadPackageDefinition(protoLoader.loadSync(healthProtoPath, { keepCase: true, enums: String, defaults: true })) as unknown as {
      grpc: { health: { v1: { Health: NonNullable<typeof HealthCtor> } } };
    }
  ).grpc.health.v1.Health;
  const client = new HealthCtor(address, grpc.credentials.createSsl(tls.ca, tls.key, tls.cert), {
    'grpc.ssl_target_name_override': tls.serverName,
    'grpc.default_authority': tls.serverName,
  });
  try {
    return await new Promise<string>((resolveStatus) => {
      client.Check({ service }, { deadline: Date.now() + timeoutMs }, (err, res) => {
        resolveStatus(err ? `error: ${err.details || err.message}` : String(res?.status ?? 'UNKNOWN'));
      });
    });
  } finally {
    client.close();
  }
}

/** Thrown by {@link waitUntil}. */
export class WaitError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/**
 * Polls `check` until it returns `true`, the watched process exits, or `timeoutMs` passes.
 * @param check returns true when ready, or a string describing the last state (kept for the error message).
 * @param alive returns false once the process behind the probe has exited (fail fast).
 * @throws WaitError naming `what` and the last state.
 */
export async function waitUntil(
  what: string,
  check: () => Promise<true | string>,
  opts: { timeoutMs: number; intervalMs?: number; alive?: () => boolean },
): Promise<void> {
  const deadline = Date.now() + opts.timeoutMs;
  let last = 'no attempt yet';
  for (;;) {
    if (opts.alive && !opts.alive()) throw new WaitError(`${what}: the process exited (last check: ${last})`);
    const r = await check().catch((err: unknown) => (err as Error).message);
    if (r === true) return;
    last = r;
    if (Date.now() >= deadline) throw new WaitError(`${what}: not ready after ${Math.round(opts.timeoutMs / 1000)} s (last check: ${last})`);
    await sleep(opts.intervalMs ?? 200);
  }
}
