/**
 * An embedded PostgreSQL for machines without a database server: PGlite (PostgreSQL compiled to
 * WebAssembly, one data folder, one backend session) served on a loopback TCP port with the
 * wire-protocol handler of `@electric-sql/pglite-socket`.
 *
 * PGlite has exactly one backend session. `pglite-socket` can accept several client connections
 * and multiplex their messages onto it, but it interleaves them message by message, so two
 * clients running extended-protocol queries at once (Parse/Bind/Execute/Sync, what `pg` and
 * Prisma's `@prisma/adapter-pg` send) can bind each other's unnamed statement. This module
 * replaces that queue with a session-level one: a connection that starts a message exchange owns
 * the backend until PGlite answers `ReadyForQuery` with status `I` (idle, no transaction open);
 * only then may another connection's messages run. Client pools of any size (the auth-service's,
 * the migration tool's two connections) then behave as they would against a server that runs
 * one transaction at a time. A connection that closes while owning the session gets its open
 * transaction rolled back.
 *
 * Wire protocol: https://www.postgresql.org/docs/current/protocol-flow.html
 * (ReadyForQuery `Z`: https://www.postgresql.org/docs/current/protocol-message-formats.html).
 *
 * CLI (what `startStack` runs as the `postgres` part):
 *   `tsx tools/stack/src/pglite.ts --data <dir> [--host 127.0.0.1] [--port 0] [--port-file <file>]`
 * It prints `pglite listening on <host>:<port>` and writes the port to `--port-file`.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { PGlite } from '@electric-sql/pglite';
import { PGLiteSocketHandler } from '@electric-sql/pglite-socket';

/** ReadyForQuery ('Z') transaction status: `I` idle, `T` in a transaction, `E` failed transaction. */
export type TransactionStatus = 'I' | 'T' | 'E';

/**
 * The transaction status of the last ReadyForQuery message in a backend output stream, or null
 * when the output holds none. `chunks` are consecutive pieces of the backend's output for one
 * frontend message (whole backend messages, possibly split across chunks).
 */
export function lastReadyForQuery(chunks: readonly Uint8Array[]): TransactionStatus | null {
  const total = chunks.reduce((n, c) => n + c.length, 0);
  if (total === 0) return null;
  const buf = Buffer.concat(chunks.map((c) => Buffer.from(c.buffer, c.byteOffset, c.length)), total);
  let status: TransactionStatus | null = null;
  let off = 0;
  // Every backend message: 1 type byte, then an Int32 length that counts itself.
  while (off + 5 <= buf.length) {
    const type = buf[off];
    const len = buf.readInt32BE(off + 1);
    if (len < 4) break;
    if (type === 0x5a /* 'Z' */ && len === 5 && off + 6 <= buf.length) {
      const s = String.fromCharCode(buf[off + 5] ?? 0);
      if (s === 'I' || s === 'T' || s === 'E') status = s;
    }
    off += 1 + len;
  }
  return status;
}

interface Job {
  handlerId: number;
  message: Uint8Array;
  onData: (data: Uint8Array) => void;
  resolve: (bytes: number) => void;
  reject: (err: unknown) => void;
}

/**
 * The queue the pglite-socket handlers call (`enqueue`, `clearQueueForHandler`,
 * `clearTransactionIfNeeded`: the interface of pglite-socket 0.1.x's QueryQueueManager), with
 * session-level ownership as described in the module comment.
 */
export class SessionQueue {
  private readonly waiting: Job[] = [];
  private owner: number | null = null;
  private running = false;

  constructor(private readonly db: PGlite) {}

  /** Runs one frontend message for connection `handlerId`; resolves with the bytes answered. */
  enqueue(handlerId: number, message: Uint8Array, onData: (data: Uint8Array) => void): Promise<number> {
    return new Promise<number>((resolveJob, reject) => {
      this.waiting.push({ handlerId, message, onData, resolve: resolveJob, reject });
      void this.pump();
    });
  }

  /** Queued messages (all connections). */
  getQueueLength(): number {
    return this.waiting.length;
  }

  /** Drops the queued messages of a closed connection. */
  clearQueueForHandler(handlerId: number): void {
    for (let i = this.waiting.length - 1; i >= 0; i--) {
      const job = this.waiting[i] as Job;
      if (job.handlerId === handlerId) {
        this.waiting.splice(i, 1);
        job.reject(new Error('connection closed'));
      }
    }
  }

  /** A closed connection gives the session back; its open transaction is rolled back. */
  async clearTransactionIfNeeded(handlerId: number): Promise<void> {
    if (this.owner !== handlerId) return;
    if (this.db.isInTransaction()) await this.db.exec('ROLLBACK').catch(() => undefined);
    this.owner = null;
    void this.pump();
  }

  private async pump(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      for (;;) {
        const owner = this.owner;
        const index = owner === null ? (this.waiting.length > 0 ? 0 : -1) : this.waiting.findIndex((j) => j.handlerId === owner);
        if (index < 0) break; // nothing queued, or the owner has not sent its next message yet
        const job = this.waiting.splice(index, 1)[0] as Job;
        this.owner = job.handlerId;
        const chunks: Uint8Array[] = [];
        let bytes = 0;
        try {
          await this.db.runExclusive(() =>
            this.db.execProtocolRawStream(job.message, {
              onRawData: (data: Uint8Array) => {
                bytes += data.length;
                chunks.push(data.slice());
                job.onData(data);
              },
            }),
          );
        } catch (err) {
          if (!this.db.isInTransaction()) this.owner = null;
          job.reject(err);
          continue;
        }
        if (lastReadyForQuery(chunks) === 'I') this.owner = null;
        job.resolve(bytes);
      }
    } finally {
      this.running = false;
    }
  }
}

/** Options of {@link startPgliteServer}. */
export interface PgliteServerOptions {
  /** Data folder (created when missing; reused on the next start). `memory://` for a throwaway database. */
  dataDir: string;
  /** Bind address. Default `127.0.0.1` (loopback only: there is no password check). */
  host?: string;
  /** TCP port, 0 = any free port. Default 0. */
  port?: number;
}

/** A running embedded PostgreSQL. */
export interface PgliteServer {
  host: string;
  port: number;
  /** `postgresql://postgres@<host>:<port>/postgres` (PGlite has one database, `postgres`). */
  url: string;
  /** Closes every connection, the listener and the database (flushes the data folder). */
  close(): Promise<void>;
}

/**
 * Opens the data folder with PGlite and serves it over the PostgreSQL wire protocol on a
 * loopback port. Any user name and password are accepted.
 * @throws Error when the data folder cannot be opened or the port cannot be bound.
 */
export async function startPgliteServer(opts: PgliteServerOptions): Promise<PgliteServer> {
  const host = opts.host ?? '127.0.0.1';
  if (!opts.dataDir.startsWith('memory://')) mkdirSync(opts.dataDir, { recursive: true });
  const db = await PGlite.create(opts.dataDir);
  const queue = new SessionQueue(db);
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    // pglite-socket 0.1.x types the option as its (unexported) QueryQueueManager class; the
    // handler only calls the three methods SessionQueue implements.
    const handler = new PGLiteSocketHandler({
      queryQueue: queue as unknown as ConstructorParameters<typeof PGLiteSocketHandler>[0]['queryQueue'],
      closeOnDetach: true,
    });
    handler.attach(socket).catch(() => socket.destroy());
  });
  await new Promise<void>((resolveListen, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, host, () => {
      server.off('error', reject);
      resolveListen();
    });
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('pglite: the server has no TCP address');
  let closing: Promise<void> | undefined;
  return {
    host,
    port: address.port,
    url: `postgresql://postgres@${host}:${address.port}/postgres`,
    close() {
      closing ??= (async () => {
        for (const s of sockets) s.destroy();
        await new Promise<void>((r) => server.close(() => r()));
        await db.close();
      })();
      return closing;
    },
  };
}

async function main(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      data: { type: 'string' },
      host: { type: 'string' },
      port: { type: 'string' },
      'port-file': { type: 'string' },
    },
    strict: true,
  });
  if (!values.data) throw new Error('pglite: --data <dir> is required');
  const port = values.port === undefined ? 0 : Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`pglite: --port must be 0..65535 (got ${values.port})`);
  const dataDir = values.data.startsWith('memory://') ? values.data : resolve(values.data);
  const srv = await startPgliteServer({ dataDir, host: values.host ?? '127.0.0.1', port });
  if (values['port-file']) writeFileSync(values['port-file'], `${srv.port}\n`);
  process.stdout.write(`pglite listening on ${srv.host}:${srv.port} (data ${dataDir})\n`);
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    process.stdout.write(`pglite: ${signal}: closing\n`);
    srv.close().then(
      () => process.exit(0),
      (err: unknown) => {
        process.stderr.write(`pglite: close failed: ${(err as Error).message}\n`);
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  main(process.argv.slice(2)).catch((err: unknown) => {
    process.stderr.write(`pglite: ${(err as Error).message}\n`);
    process.exit(1);
  });
}
