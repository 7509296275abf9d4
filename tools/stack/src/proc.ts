/**
 * Starting and stopping the stack's processes so that `make down` stops exactly what `make up`
 * started and nothing else:
 *
 * - every process gets one log file (stdout and stderr, appended);
 * - a spawned process runs in its own process group (`detached`), so stopping it also stops
 *   anything it started (npm, tsx, a worker);
 * - where `setpriv` exists (util-linux), the kernel sends the process SIGTERM when its parent
 *   dies (`PR_SET_PDEATHSIG`), so a crashed launcher or test leaves nothing behind;
 * - a process is identified by its pid, its process group and *markers*: substrings its
 *   `/proc/<pid>/cmdline` must contain (an entry script path, a config file path). A recorded pid
 *   that now belongs to another program is never signalled.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

/** What the state file keeps about one process. */
export interface ProcessRecord {
  /** Part name, e.g. `edge`, `sidecar-orders`, `authz-1`, `auth`, `redis`, `postgres`. */
  name: string;
  pid: number;
  /** Process group to signal (the pid itself when the process leads its own group), or null: signal the pid only. */
  pgid: number | null;
  /** Substrings that `/proc/<pid>/cmdline` (NUL bytes read as spaces) must all contain. */
  markers: string[];
  /** Its log file. */
  log: string;
}

let setprivPath: string | null | undefined;
/** `/usr/bin/setpriv` when present (Linux, util-linux), else null. */
export function setprivBinary(): string | null {
  if (setprivPath !== undefined) return setprivPath;
  setprivPath = null;
  if (process.platform === 'linux') {
    for (const p of ['/usr/bin/setpriv', '/bin/setpriv']) if (existsSync(p)) setprivPath = p;
  }
  return setprivPath;
}

/** The command line of a live process with NUL separators read as spaces, or null when there is no such process. */
export function commandLineOf(pid: number): string | null {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ').trim();
  } catch {
    return null;
  }
}

/** True when the process exists and is not a zombie. */
export function isAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // state is the field after "(comm)"; Z = zombie, X = dead
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return process.platform !== 'linux';
  }
}

/** True when `rec.pid` is alive and its command line still carries every marker (so it is still ours). */
export function isOurs(rec: Pick<ProcessRecord, 'pid' | 'markers'>): boolean {
  if (!isAlive(rec.pid)) return false;
  const cmd = commandLineOf(rec.pid);
  if (cmd === null) return false;
  return rec.markers.length > 0 && rec.markers.every((m) => cmd.includes(m));
}

function signal(rec: Pick<ProcessRecord, 'pid' | 'pgid'>, sig: NodeJS.Signals): void {
  try {
    if (rec.pgid !== null && rec.pgid > 0) process.kill(-rec.pgid, sig);
    else process.kill(rec.pid, sig);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
  }
}

/**
 * Stops a recorded process that this process did not necessarily start (`make down`): verifies
 * it is still ours ({@link isOurs}), sends SIGTERM to its group (or pid), waits up to `graceMs`,
 * then SIGKILL.
 * @returns `stopped`, `gone` (not running any more) or `not-ours` (the pid now runs something else: left alone).
 */
export async function stopRecorded(rec: ProcessRecord, graceMs = 10_000): Promise<'stopped' | 'gone' | 'not-ours'> {
  if (!isAlive(rec.pid)) return 'gone';
  if (!isOurs(rec)) return 'not-ours';
  signal(rec, 'SIGTERM');
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline) {
    if (!isAlive(rec.pid)) return 'stopped';
    await sleep(50);
  }
  if (isOurs(rec)) signal(rec, 'SIGKILL');
  const killDeadline = Date.now() + 3000;
  while (Date.now() < killDeadline && isAlive(rec.pid)) await sleep(50);
  return 'stopped';
}

/** Options of {@link spawnProcess}. */
export interface SpawnOptions {
  name: string;
  command: string;
  args: string[];
  cwd: string;
  env: NodeJS.ProcessEnv;
  /** Log file (appended; created with its folder). */
  logFile: string;
  /** Markers for {@link ProcessRecord.markers}. Default: every argument that is an absolute path. */
  markers?: string[];
  /** SIGTERM the process when its parent dies (needs setpriv). Default true. */
  dieWithParent?: boolean;
}

/** A process started by {@link spawnProcess}. */
export interface ManagedProcess {
  readonly record: ProcessRecord;
  readonly child: ChildProcess;
  /** Resolves when the process has exited. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** True until the process exits. */
  running(): boolean;
  /** Sends a signal to the process group (e.g. SIGSTOP / SIGCONT in fault tests). */
  kill(sig: NodeJS.Signals): void;
  /** SIGTERM to the group, SIGKILL after `graceMs` (default 10000); resolves when it has exited. Idempotent. */
  stop(graceMs?: number): Promise<void>;
}

/** Writes one line to a log file (used for section headers between runs). */
export function appendLine(file: string, line: string): void {
  mkdirSync(dirname(file), { recursive: true });
  const fd = openSync(file, 'a');
  try {
    writeSync(fd, `${line}\n`);
  } finally {
    closeSync(fd);
  }
}

/**
 * Spawns a long-running process in its own process group with stdout and stderr appended to
 * `logFile`.
 * @throws Error when the command cannot be spawned (ENOENT and the like).
 */
export function spawnProcess(opts: SpawnOptions): ManagedProcess {
  appendLine(opts.logFile, `=== ${new Date().toISOString()} start ${opts.name}: ${opts.command} ${opts.args.join(' ')}`);
  const sp = opts.dieWithParent === false ? null : setprivBinary();
  const [cmd, args] = sp ? [sp, ['--pdeathsig', 'SIGTERM', '--', opts.command, ...opts.args]] : [opts.command, opts.args];
  const fd = openSync(opts.logFile, 'a');
  let child: ChildProcess;
  try {
    child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env, stdio: ['ignore', fd, fd], detached: true });
  } finally {
    closeSync(fd);
  }
  if (child.pid === undefined) {
    throw new Error(`${opts.name}: cannot start ${opts.command}`);
  }
  const pid = child.pid;
  let exitInfo: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolveExit) => {
    child.once('exit', (code, sig) => {
      exitInfo = { code, signal: sig };
      resolveExit(exitInfo);
    });
    child.once('error', () => {
      exitInfo ??= { code: null, signal: null };
      resolveExit(exitInfo);
    });
  });
  const record: ProcessRecord = {
    name: opts.name,
    pid,
    pgid: pid,
    markers: opts.markers ?? opts.args.filter((a) => a.startsWith('/')),
    log: opts.logFile,
  };
  let stopping: Promise<void> | undefined;
  const kill = (sig: NodeJS.Signals) => {
    if (!exitInfo) signal(record, sig);
  };
  return {
    record,
    child,
    exited,
    running: () => exitInfo === undefined,
    kill,
    stop(graceMs = 10_000) {
      stopping ??= (async () => {
        if (exitInfo) return;
        kill('SIGCONT'); // a stopped (SIGSTOP) process cannot handle SIGTERM
        kill('SIGTERM');
        const timer = setTimeout(() => kill('SIGKILL'), graceMs);
        await exited;
        clearTimeout(timer);
      })();
      return stopping;
    },
  };
}

/**
 * Runs a command to completion with output appended to `logFile`.
 * @returns the exit code (null when killed by a signal or by the timeout).
 */
export async function runToCompletion(opts: Omit<SpawnOptions, 'markers'> & { timeoutMs: number }): Promise<number | null> {
  const p = spawnProcess(opts);
  const timer = setTimeout(() => void p.stop(2000), opts.timeoutMs);
  const { code } = await p.exited;
  clearTimeout(timer);
  return code;
}

/** The last `lines` lines of a file ('' when it cannot be read). */
export function tailFile(file: string, lines = 25): string {
  try {
    const text = readFileSync(file, 'utf8');
    return text.split('\n').filter((l, i, all) => l !== '' || i < all.length - 1).slice(-lines).join('\n');
  } catch {
    return '';
  }
}
