/**
 * What every step of `startStack` shares: the options resolved and checked ({@link StackSettings}),
 * the progress lines, and the bookkeeping of started parts ({@link PartBook}: start order, port
 * holds, starting a part again after a port clash, stopping everything in reverse order). Also
 * {@link StackStartError}, the one error a failed start throws.
 */
import { mkdirSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { type EnvoyProcess, REPO_ROOT } from '@jwt-mesh/testkit';
import { isPortClash, PORT_ATTEMPTS, type PortReserver, reserveFreePort } from '../ports.js';
import { type ManagedProcess, type ProcessRecord, tailFile } from '../proc.js';
import { type StackState, writeState } from '../state.js';
import { DEMO_USERS, type DemoUser } from '../users.js';
import type { ExtraUpstream, PartSelection, StackOptions } from '../stack.js';

/** Thrown when a part does not start; names the part and its log file. */
export class StackStartError extends Error {
  readonly part: string;
  readonly logFile: string | null;
  constructor(part: string, reason: string, logFile: string | null, opts?: { cause?: unknown; what?: string }) {
    const tail = logFile ? tailFile(logFile, 20) : '';
    super(
      `${part} ${opts?.what ?? 'failed to start'}: ${reason}` +
        (logFile ? `\n  log: ${logFile}` : '') +
        (tail ? `\n  last lines of the log:\n${tail.split('\n').map((l) => `    | ${l}`).join('\n')}` : ''),
      opts?.cause === undefined ? undefined : { cause: opts.cause },
    );
    this.name = new.target.name;
    this.part = part;
    this.logFile = logFile;
  }
}

/** One running part (a process) of the stack. */
export interface Running {
  record: ProcessRecord;
  running(): boolean;
  kill(sig: NodeJS.Signals): void;
  stop(): Promise<void>;
}

/** One part as {@link PartBook.launch} starts it: `start` spawns it and resolves once it is ready. */
export interface PartDef {
  name: string;
  start(): Promise<Running>;
  /** Reserves new ports for this part after its start failed on a taken port (`free` ports only). */
  repick?: () => Promise<void>;
}

/** Resolves options against the repository and the run folder. */
function paths(opts: StackOptions) {
  const runDir = resolve(opts.runDir ?? join(REPO_ROOT, '.run'));
  return {
    runDir,
    logDir: resolve(opts.logDir ?? join(runDir, 'logs')),
    certDir: resolve(opts.certDir ?? join(runDir, 'certs')),
    stateFile: opts.stateFile === false ? null : resolve(opts.stateFile ?? join(runDir, 'stack.json')),
    pgliteDataDir: resolve(opts.pgliteDataDir ?? join(runDir, 'pgdata')),
  };
}

/** Node's arguments that run a TypeScript entry script (tsx). */
export const NODE_TSX = ['--import', 'tsx'];

/** The folders and the state file of one stack, resolved ({@link paths}). */
type StackPaths = ReturnType<typeof paths>;

/** {@link StackOptions} resolved and checked: what every step of {@link startStack} reads. */
interface StackSettings {
  readonly options: StackOptions;
  readonly paths: StackPaths;
  /** Which parts to start, every default applied. */
  readonly selection: Required<PartSelection>;
  /** Number of authz-service replicas (1..8). */
  readonly replicas: number;
  /** The Redis key prefix (`REDIS_PREFIX`). */
  readonly prefix: string;
  readonly users: readonly DemoUser[];
  readonly extras: ExtraUpstream[];
  /** How long one part may take to become ready, milliseconds. */
  readonly readyTimeoutMs: number;
  /** `ports: 'free'`: every port reserved and held; a part whose port is taken at bind time is started again. */
  readonly free: boolean;
  /** Prints one progress line: `stack: <what, padded> <text>`. */
  say(what: string, text: string): void;
  /** A file path as printed: relative to the current directory when inside the repository. */
  rel(file: string): string;
  /** The log file of a part: `<logDir>/<name>.log`. */
  logOf(name: string): string;
}

/**
 * The bookkeeping of one {@link startStack}: the parts started so far, in start order (what is
 * stopped on failure and by {@link Stack.stop}), and the ports held for parts not spawned yet.
 */
interface PartBook {
  readonly running: Map<string, Running>;
  readonly envoys: Map<string, EnvoyProcess>;
  readonly defs: Map<string, PartDef>;
  /** Part names in start order. */
  readonly order: string[];
  /** Reserves a free loopback port for `purpose` and holds it until {@link PartBook.release}. */
  reserve(purpose: string): Promise<number>;
  /** The `fixed` port, or with `free` ports a reserved one. */
  pick(fixed: number, purpose: string): Promise<number>;
  /** Lets go of the holds on `ports` (call right before spawning the process that binds them). */
  release(...ports: Array<number | undefined>): Promise<void>;
  releaseAll(): Promise<void>;
  /** Starts one part (again on new ports after a clash, up to {@link PORT_ATTEMPTS} times) and records it. */
  launch(def: PartDef): Promise<void>;
  /** Starts parts in parallel; waits for every one to finish starting (or fail) before reporting the first failure, so nothing is left half-started. */
  launchAll(list: PartDef[]): Promise<void>;
  /** Stops every started part in reverse start order and lets go of every hold. */
  stopAll(): Promise<void>;
  /** Takes the finished stack's state and writes it, with the processes, to the state file (and again after each later {@link PartBook.launch}). */
  publish(state: StackState): void;
}

/** What every step of {@link startStack} shares: the settings and the bookkeeping. */
export type Launcher = StackSettings & PartBook;

/**
 * Resolves and checks the options, makes the log folder and sets up the bookkeeping.
 * @throws Error on options that cannot work together (before anything is started).
 */
export function launcher(options: StackOptions): Launcher {
  const p = paths(options);
  const progress = options.onProgress ?? ((line: string) => process.stdout.write(`${line}\n`));
  const say = (what: string, text: string) => progress(`stack: ${what.padEnd(12)} ${text}`);
  const readyTimeoutMs = options.readyTimeoutMs ?? 90_000;
  const parts = { authz: options.parts?.authz ?? true, services: options.parts?.services ?? true, edge: options.parts?.edge ?? true };
  if (parts.edge && !parts.authz) throw new Error('startStack: parts.edge needs parts.authz (the edge fails closed without ext_authz)');
  const replicas = options.authzReplicas ?? 2;
  if (!Number.isInteger(replicas) || replicas < 1 || replicas > 8) throw new Error('startStack: authzReplicas must be 1..8');
  const settings: StackSettings = {
    options,
    paths: p,
    selection: parts,
    replicas,
    prefix: options.redisPrefix ?? 'jwtmesh:',
    users: options.users ?? DEMO_USERS,
    extras: options.extraUpstreams ?? [],
    readyTimeoutMs,
    free: options.ports === 'free',
    say,
    rel: (f: string) => (f.startsWith(REPO_ROOT) ? relative(process.cwd(), f) || '.' : f),
    logOf: (name: string) => join(p.logDir, `${name}.log`),
  };
  mkdirSync(p.logDir, { recursive: true });
  return { ...settings, ...partBook(settings, options.reservePort ?? reserveFreePort) };
}

/** The bookkeeping of {@link PartBook}; port holds come from `reservePort`. */
function partBook(s: StackSettings, reservePort: PortReserver): PartBook {
  const running = new Map<string, Running>();
  const envoys = new Map<string, EnvoyProcess>();
  const defs = new Map<string, PartDef>();
  const order: string[] = [];
  let state: StackState | undefined;

  const saveState = () => {
    if (state && s.paths.stateFile) {
      state.processes = order.filter((n) => running.has(n)).map((n) => (running.get(n) as Running).record);
      writeState(s.paths.stateFile, state);
    }
  };
  // Port holds (ports: 'free'): port -> release of the socket holding it until its process is spawned.
  const holds = new Map<number, () => Promise<void>>();
  const reserve = async (purpose: string): Promise<number> => {
    const r = await reservePort(purpose);
    holds.set(r.port, r.release);
    return r.port;
  };
  const release = async (...ports: Array<number | undefined>): Promise<void> => {
    for (const port of ports) {
      const h = port === undefined ? undefined : holds.get(port);
      if (h) {
        holds.delete(port as number);
        await h();
      }
    }
  };
  const releaseAll = () => release(...holds.keys());
  const launch = async (def: PartDef): Promise<void> => {
    defs.set(def.name, def);
    if (!order.includes(def.name)) order.push(def.name);
    let r: Running;
    for (let attempt = 1; ; attempt++) {
      try {
        r = await def.start();
        break;
      } catch (err) {
        if (!def.repick || attempt >= PORT_ATTEMPTS || !isPortClash(err)) throw err;
        s.say(def.name, `a port was taken at bind time (EADDRINUSE, attempt ${attempt} of ${PORT_ATTEMPTS}); starting it again on new ports`);
        await def.repick();
      }
    }
    running.set(def.name, r);
    saveState();
  };
  return {
    running,
    envoys,
    defs,
    order,
    reserve,
    pick: async (fixed, purpose) => (s.free ? reserve(purpose) : fixed),
    release,
    releaseAll,
    launch,
    async launchAll(list) {
      const results = await Promise.allSettled(list.map((d) => launch(d)));
      const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed) throw failed.reason;
    },
    async stopAll() {
      await releaseAll();
      // Reverse start order: edge, sidecars, services, authz, auth, redis, postgres.
      for (const name of [...order].reverse()) {
        const r = running.get(name);
        if (r) await r.stop().catch(() => undefined);
      }
      running.clear();
    },
    publish(finished) {
      state = finished;
      saveState();
    },
  };
}

/** Runs `ready`, turning a failure into a {@link StackStartError} for `part` (after stopping `proc`). */
export async function guard(part: string, log: string, proc: ManagedProcess, ready: () => Promise<void>): Promise<void> {
  try {
    await ready();
  } catch (err) {
    await proc.stop(3000);
    throw new StackStartError(part, (err as Error).message, log, { cause: err });
  }
}
