/**
 * Running a real Envoy in tests: start a process and wait for its admin `/ready`, read the ports
 * it bound, stop it. The binary and `envoy --mode validate` come from `@jwt-mesh/envoy/binary`
 * (envoy/src/binary.ts), which finds Envoy through `scripts/envoy-bin.sh`.
 *
 * Every process runs with `--disable-hot-restart`, so it creates no shared-memory region or
 * hot-restart socket at all and any number of Envoys can run in parallel without choosing a
 * `--base-id` (the hot-restart base id is what clashes otherwise).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, openSync, closeSync, readFileSync } from 'node:fs';
import { get as httpGet } from 'node:http';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { envoyBinary, uniqueBase, writeConfig } from '@jwt-mesh/envoy/binary';

/** The repository root (this file is tools/testkit/src/envoy.ts). */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

/** Default folder for Envoy logs and the config files written for them: `<repo>/.run/test-logs` (gitignored). */
export function defaultLogDir(): string {
  return process.env.JWT_MESH_TEST_LOG_DIR ?? join(REPO_ROOT, '.run', 'test-logs');
}

/** Options of {@link startEnvoy}. */
export interface StartEnvoyOptions {
  /** The bootstrap: YAML text or an object. Use admin port 0 and listener port 0 to avoid port races. */
  config: string | object;
  /** A short name for log and config file names, e.g. `edge` or `sidecar-orders`. */
  name: string;
  /** Folder for `<name>-*.log` (Envoy's stdout and stderr, access logs included) and the config file. Default {@link defaultLogDir}. */
  logDir?: string;
  /** How long to wait for admin `/ready` to answer 200 LIVE, milliseconds. Default 30000. */
  readyTimeoutMs?: number;
  /** Worker threads (`--concurrency`). Default 1 (tests run in parallel on a small machine). */
  concurrency?: number;
  /** Envoy log level (`-l`). Default `info`. */
  logLevel?: 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'critical' | 'off';
  /** How often Envoy flushes log files (access logs on stdout included), milliseconds. Default 200. */
  fileFlushIntervalMs?: number;
  /** Working directory of the process (relative certificate paths resolve against it). Default the current one. */
  cwd?: string;
  /** More command-line arguments. */
  extraArgs?: string[];
  /**
   * Registers the stop function with the test's teardown, e.g. `{ teardown: t.teardown.bind(t) }`
   * with tap (any object with a `teardown(fn)` method works).
   */
  teardown?: { teardown(fn: () => unknown): void } | ((fn: () => unknown) => void);
}

/** A running Envoy started by {@link startEnvoy}. */
export interface EnvoyProcess {
  name: string;
  pid: number;
  /** `http://127.0.0.1:<port>` of the admin interface (read from `--admin-address-path`). */
  adminUrl: string;
  /** Envoy's stdout+stderr. */
  logFile: string;
  /** The config file Envoy runs with. */
  configFile: string;
  /**
   * The address a named listener is bound to (from admin `/listeners?format=json`); use it with
   * listener port 0.
   * @throws Error when there is no such listener.
   */
  listenerAddress(listener: string): Promise<{ host: string; port: number }>;
  /** Counter and gauge values whose name matches `filter` (a regex, admin `/stats?filter=`). */
  stats(filter?: string): Promise<Record<string, number>>;
  /** The last `lines` lines of the log file. */
  logTail(lines?: number): string;
  /**
   * Resolves with the whole log once it matches `pattern`. Access logs reach the file
   * asynchronously (every `fileFlushIntervalMs`), so read them through this.
   * @throws Error after `timeoutMs` (default 10000) with the log tail.
   */
  waitForLog(pattern: RegExp, timeoutMs?: number): Promise<string>;
  /** SIGTERM, then SIGKILL after 5 s; resolves when the process is gone. Idempotent. */
  stop(): Promise<void>;
  /** Resolves when the process exits, with its exit code or signal. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const live = new Set<ChildProcess>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Last resort when a test forgets to stop an Envoy. With setpriv available, the kernel also
  // kills the Envoy if this process dies without running exit handlers (PR_SET_PDEATHSIG).
  process.once('exit', () => {
    for (const child of live) child.kill('SIGKILL');
  });
}

let setprivPath: string | null | undefined;
function setpriv(): string | null {
  if (setprivPath !== undefined) return setprivPath;
  setprivPath = null;
  if (process.platform === 'linux') {
    for (const p of ['/usr/bin/setpriv', '/bin/setpriv']) if (existsSync(p)) setprivPath = p;
  }
  return setprivPath;
}

function adminGet(adminUrl: string, path: string, timeoutMs = 2000): Promise<{ status: number; body: string }> {
  return new Promise((resolveRes, reject) => {
    const req = httpGet(`${adminUrl}${path}`, { agent: false, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolveRes({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('admin request timed out')));
    req.on('error', reject);
  });
}

function tail(file: string, lines: number): string {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/**
 * Starts Envoy with `config`, waits until admin `/ready` answers `LIVE`, and returns a handle.
 * The admin address is learnt from `--admin-address-path`, so the config may use admin port 0.
 * Logs (Envoy's own and the access logs on stdout) go to a file under `logDir`. The process is
 * killed on `stop()`, on test teardown (option `teardown`), and when this Node process exits.
 * @throws Error with the last lines of the log when Envoy exits early or is not ready in time.
 */
export async function startEnvoy(opts: StartEnvoyOptions): Promise<EnvoyProcess> {
  const logDir = resolve(opts.logDir ?? defaultLogDir());
  mkdirSync(logDir, { recursive: true });
  const base = uniqueBase(opts.name);
  const configFile = writeConfig(opts.config, logDir, base);
  const logFile = join(logDir, `${base}.log`);
  const adminPathFile = join(logDir, `${base}.admin`);
  const envoyArgs = [
    '-c', configFile,
    '--disable-hot-restart',
    '--concurrency', String(opts.concurrency ?? 1),
    '-l', opts.logLevel ?? 'info',
    '--admin-address-path', adminPathFile,
    // Access logs go through Envoy's file flusher, every 10 s by default; tests read them sooner.
    '--file-flush-interval-msec', String(opts.fileFlushIntervalMs ?? 200),
    ...(opts.extraArgs ?? []),
  ];
  const sp = setpriv();
  const [cmd, args] = sp ? [sp, ['--pdeathsig', 'SIGKILL', '--', envoyBinary(), ...envoyArgs]] : [envoyBinary(), envoyArgs];
  const fd = openSync(logFile, 'a');
  let child: ChildProcess;
  try {
    child = spawn(cmd, args, { stdio: ['ignore', fd, fd], cwd: opts.cwd ?? process.cwd() });
  } finally {
    closeSync(fd);
  }
  installExitHook();
  live.add(child);
  let exitInfo: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolveExit) => {
    child.once('exit', (code, signal) => {
      live.delete(child);
      exitInfo = { code, signal };
      resolveExit(exitInfo);
    });
    child.once('error', () => {
      live.delete(child);
      exitInfo = { code: null, signal: null };
      resolveExit(exitInfo);
    });
  });

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      if (exitInfo) return;
      child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(killer);
    })();
    return stopping;
  };
  if (opts.teardown) {
    if (typeof opts.teardown === 'function') opts.teardown(stop);
    else opts.teardown.teardown(stop);
  }

  const fail = async (why: string): Promise<never> => {
    await stop();
    throw new Error(`startEnvoy(${opts.name}): ${why}\n--- last lines of ${logFile} ---\n${tail(logFile, 40)}`);
  };

  const deadline = Date.now() + (opts.readyTimeoutMs ?? 30_000);
  let adminUrl = '';
  while (!adminUrl) {
    if (exitInfo) return fail(`Envoy exited (code ${exitInfo.code}, signal ${exitInfo.signal}) before binding its admin interface`);
    if (Date.now() > deadline) return fail('no admin address in time');
    if (existsSync(adminPathFile)) {
      const addr = readFileSync(adminPathFile, 'utf8').trim();
      if (addr) adminUrl = `http://${addr}`;
    }
    if (!adminUrl) await sleep(25);
  }
  for (;;) {
    if (exitInfo) return fail(`Envoy exited (code ${exitInfo.code}, signal ${exitInfo.signal}) before it was ready`);
    if (Date.now() > deadline) return fail('admin /ready did not answer LIVE in time');
    try {
      const r = await adminGet(adminUrl, '/ready');
      if (r.status === 200 && r.body.trim() === 'LIVE') break;
    } catch {
      // not up yet
    }
    await sleep(25);
  }

  const admin = adminUrl;
  return {
    name: opts.name,
    pid: child.pid ?? -1,
    adminUrl: admin,
    logFile,
    configFile,
    exited,
    stop,
    logTail: (lines = 40) => tail(logFile, lines),
    async waitForLog(pattern: RegExp, timeoutMs = 10_000) {
      const until = Date.now() + timeoutMs;
      for (;;) {
        const text = existsSync(logFile) ? readFileSync(logFile, 'utf8') : '';
        if (pattern.test(text)) return text;
        if (Date.now() > until) throw new Error(`waitForLog(${opts.name}): ${pattern} not in ${logFile}\n${tail(logFile, 20)}`);
        await sleep(100);
      }
    },
    async listenerAddress(listener: string) {
      const r = await adminGet(admin, '/listeners?format=json');
      const doc = JSON.parse(r.body) as {
        listener_statuses?: Array<{ name: string; local_address?: { socket_address?: { address: string; port_value: number } } }>;
      };
      const st = doc.listener_statuses?.find((l) => l.name === listener);
      const sa = st?.local_address?.socket_address;
      if (!sa) throw new Error(`listenerAddress: ${opts.name} has no listener "${listener}"`);
      return { host: sa.address, port: sa.port_value };
    },
    async stats(filter?: string) {
      const q = filter ? `&filter=${encodeURIComponent(filter)}` : '';
      const r = await adminGet(admin, `/stats?format=json${q}`);
      const doc = JSON.parse(r.body) as { stats?: Array<{ name?: string; value?: number }> };
      const out: Record<string, number> = {};
      for (const s of doc.stats ?? []) if (s.name !== undefined && typeof s.value === 'number') out[s.name] = s.value;
      return out;
    },
  };
}
