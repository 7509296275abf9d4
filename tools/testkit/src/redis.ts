/**
 * A `redis-server` of a test's own: a free loopback port, its own temp folder, no automatic
 * snapshots, optionally an ACL file (Redis ACL users) and TLS. For tests that change server
 * state (ACL users, restarts, replication), which must never happen on a shared Redis.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, waitForTcp } from './net.js';

/** Options of {@link startRedisServer}. */
export interface RedisServerOptions {
  /** Text of an ACL file (`--aclfile`); absent: Redis's open `default` user. */
  aclFile?: string;
  /** Serve TLS only (`--tls-port`, no plain port) with a fresh CA and a server certificate for 127.0.0.1 and localhost. */
  tls?: boolean;
  /** More `redis-server` arguments, e.g. `['--repl-diskless-sync-delay', '0']`. */
  args?: string[];
}

/** A running (or stopped) own `redis-server`. */
export interface RedisServer {
  /** `redis://127.0.0.1:<port>/0`, or `rediss://` with `tls`. No credentials. */
  readonly url: string;
  readonly port: number;
  /** Its folder: `dump.rdb`, `users.acl`, the TLS files. */
  readonly dir: string;
  /** With `tls`: the PEM of the CA that signed the server certificate. */
  readonly tlsCa: string | null;
  /** Starts it again on the same port and folder (a `SAVE` made before is loaded again). */
  start(): Promise<void>;
  /** SIGKILL (a crash: nothing is saved on the way out). */
  stop(): Promise<void>;
  restart(): Promise<void>;
}

/**
 * Starts a `redis-server` (from PATH) of the test's own; stopped and its folder removed at
 * teardown.
 * @param t - anything with `teardown(fn)` (tap's `t`)
 * @throws Error when it does not listen within 10 s, or `openssl` fails (with `tls`)
 */
export async function startRedisServer(t: { teardown(fn: () => unknown): void }, opts: RedisServerOptions = {}): Promise<RedisServer> {
  const dir = mkdtempSync(join(tmpdir(), 'jwtmesh-redis-'));
  const port = await freePort();
  const args = ['--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no', '--dbfilename', 'dump.rdb'];
  let tlsCa: string | null = null;
  if (opts.tls) {
    tlsCa = makeTlsFiles(dir);
    args.push('--port', '0', '--tls-port', String(port), '--tls-cert-file', join(dir, 'server.crt'), '--tls-key-file', join(dir, 'server.key'));
    args.push('--tls-ca-cert-file', join(dir, 'ca.crt'), '--tls-auth-clients', 'no', '--tls-replication', 'yes');
  } else {
    args.push('--port', String(port));
  }
  if (opts.aclFile !== undefined) {
    writeFileSync(join(dir, 'users.acl'), opts.aclFile, { mode: 0o600 });
    args.push('--aclfile', join(dir, 'users.acl'));
  }
  args.push(...(opts.args ?? []));
  let proc: ChildProcess | null = null;
  const start = async () => {
    const p = spawn('redis-server', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    proc = p;
    let stderr = '';
    p.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    await waitForTcp('127.0.0.1', port, { timeoutMs: 10_000 }).catch((err: unknown) => {
      throw new Error(`redis-server on ${port} did not start: ${(err as Error).message} ${stderr}`);
    });
  };
  const stop = async () => {
    const p = proc;
    if (p === null || p.exitCode !== null) return;
    const exited = new Promise((r) => p.once('exit', r));
    p.kill('SIGKILL');
    await exited;
    proc = null;
  };
  await start();
  t.teardown(async () => {
    await stop();
    rmSync(dir, { recursive: true, force: true });
  });
  return {
    url: `${opts.tls ? 'rediss' : 'redis'}://127.0.0.1:${port}/0`,
    port,
    dir,
    tlsCa,
    start,
    stop,
    restart: async () => {
      await stop();
      await start();
    },
  };
}

/** A throwaway CA and a server certificate for 127.0.0.1 / localhost in `dir`; returns the CA PEM. */
function makeTlsFiles(dir: string): string {
  const run = (...a: string[]) => execFileSync('openssl', a, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  run('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '1', '-subj', '/CN=jwt-mesh test Redis CA');
  run('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=localhost');
  writeFileSync(join(dir, 'ext.cnf'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
  run('x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.crt', '-days', '1', '-extfile', 'ext.cnf');
  return readFileSync(join(dir, 'ca.crt'), 'utf8');
}
