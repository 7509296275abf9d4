/**
 * The state file of a running stack (`.run/stack.json`): what was started (pid, process group,
 * command-line markers, log file), on which ports, and the URLs to use. `make down`
 * ({@link stopStack}) stops exactly the processes recorded there, after checking that each pid
 * still runs the recorded command, and nothing else.
 */
import { existsSync, readFileSync, renameSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { z } from 'zod';
import { isAlive, isOurs, stopRecorded, type ProcessRecord } from './proc.js';

const recordSchema = z.object({
  name: z.string(),
  pid: z.number().int(),
  pgid: z.number().int().nullable(),
  markers: z.array(z.string()),
  log: z.string(),
});

const userSchema = z.object({
  username: z.string(),
  password: z.string(),
  scopes: z.array(z.string()),
  roles: z.array(z.string()),
  note: z.string(),
});

const serviceUrlsSchema = z.object({
  /** The service's own HTTP port on loopback (bypasses its sidecar: local verification only). */
  app: z.string(),
  /** gRPC (h2c) port, when the service serves gRPC. */
  grpc: z.string().optional(),
  /** The sidecar's mTLS inbound listener (needs a mesh client certificate). */
  inbound: z.string(),
  /** The sidecar's plain outbound listener (loopback; what the service calls its callees through). */
  outbound: z.string(),
  /** The sidecar's admin interface. */
  admin: z.string(),
});

/** Schema of `.run/stack.json` (validated when read). */
export const stackStateSchema = z.object({
  version: z.literal(1),
  startedAt: z.string(),
  /** The repository the stack runs from. */
  root: z.string(),
  runDir: z.string(),
  logDir: z.string(),
  certDir: z.string(),
  /** The process that started (and supervises) every part; null when it was a test process. */
  supervisor: recordSchema.nullable(),
  /** Every long-running process, in start order. */
  processes: z.array(recordSchema),
  urls: z.object({
    edge: z.string(),
    edgeHttps: z.string(),
    edgeAdmin: z.string(),
    auth: z.string(),
    jwks: z.string(),
    authzGrpc: z.array(z.string()),
    authzMetrics: z.array(z.string()),
    services: z.record(z.string(), serviceUrlsSchema),
  }),
  database: z.object({ url: z.string(), embedded: z.boolean(), dataDir: z.string().nullable() }),
  redis: z.object({
    url: z.string(),
    embedded: z.boolean(),
    prefix: z.string(),
    /**
     * The local redis-server's ACL users (absent with a given REDIS_URL): each user's name and
     * the file holding its password (mode 0600), as passed to the processes.
     */
    acl: z
      .object({
        issuer: z.object({ username: z.string(), passwordFile: z.string() }),
        verifier: z.object({ username: z.string(), passwordFile: z.string() }),
      })
      .optional(),
  }),
  jwt: z.object({ issuer: z.string(), audience: z.string() }),
  users: z.array(userSchema),
  /**
   * OpenTelemetry tracing, when on (absent when off): the OTLP/HTTP base URL every process and
   * proxy exports to, the built-in receiver's URL (null when the endpoint is a collector of the
   * user's), and the percentage of requests without a traceparent the edge samples.
   */
  tracing: z
    .object({ endpoint: z.string(), receiver: z.string().nullable(), edgeSamplePercent: z.number() })
    .optional(),
  /** Whether the stack finished starting (false while it starts or after it failed). */
  ready: z.boolean(),
});
export type StackState = z.infer<typeof stackStateSchema>;
export type ServiceUrls = z.infer<typeof serviceUrlsSchema>;

/** Writes the state file atomically (temp file + rename). */
export function writeState(file: string, state: StackState): void {
  mkdirSync(dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(state, null, 2)}\n`);
  renameSync(tmp, file);
}

/**
 * Reads and validates a state file.
 * @returns null when the file does not exist.
 * @throws Error naming the file when it is not valid JSON or does not match the schema.
 */
export function readState(file: string): StackState | null {
  if (!existsSync(file)) return null;
  let doc: unknown;
  try {
    doc = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new Error(`${file}: not valid JSON (${(err as Error).message})`);
  }
  const parsed = stackStateSchema.safeParse(doc);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new Error(`${file}: unexpected content at "${issue?.path.join('.') ?? ''}": ${issue?.message ?? 'invalid'}`);
  }
  return parsed.data;
}

/** A line of {@link processStatus}. */
export interface ProcessStatus {
  name: string;
  pid: number;
  /** `running` (alive and still ours), `gone`, or `pid-reused` (alive but running something else). */
  status: 'running' | 'gone' | 'pid-reused';
  log: string;
}

/** The status of every recorded process (supervisor first). */
export function processStatus(state: StackState): ProcessStatus[] {
  const all: ProcessRecord[] = [...(state.supervisor ? [state.supervisor] : []), ...state.processes];
  return all.map((r) => ({
    name: r.name,
    pid: r.pid,
    status: isOurs(r) ? 'running' : isAlive(r.pid) ? 'pid-reused' : 'gone',
    log: r.log,
  }));
}

/** What {@link stopStack} did. */
export interface StopReport {
  /** False when there was no state file (nothing to stop). */
  found: boolean;
  stopped: string[];
  alreadyGone: string[];
  /** Recorded pids that now belong to another program: left alone. */
  leftAlone: string[];
}

/**
 * Stops a stack from its state file: first the supervisor (which stops its parts in reverse
 * order and exits), then any recorded process still running (reverse start order), each only
 * after {@link isOurs} confirms the pid still runs the recorded command. Removes the state file.
 * @param graceMs how long each process may take to exit after SIGTERM before SIGKILL.
 */
export async function stopStack(stateFile: string, opts: { graceMs?: number; log?: (line: string) => void } = {}): Promise<StopReport> {
  const log = opts.log ?? (() => undefined);
  const state = readState(stateFile);
  const report: StopReport = { found: state !== null, stopped: [], alreadyGone: [], leftAlone: [] };
  if (!state) return report;
  const note = (name: string, r: 'stopped' | 'gone' | 'not-ours') => {
    if (r === 'stopped') report.stopped.push(name);
    else if (r === 'gone') report.alreadyGone.push(name);
    else report.leftAlone.push(name);
    log(`  ${name.padEnd(18)} ${r === 'stopped' ? 'stopped' : r === 'gone' ? 'not running' : 'pid now runs another program: left alone'}`);
  };
  let supervisorStopped = false;
  if (state.supervisor) {
    // The supervisor stops its parts itself (edge first, databases last) before it exits.
    const alive = state.processes.filter((p) => isOurs(p)).map((p) => p.name);
    const r = await stopRecorded(state.supervisor, (opts.graceMs ?? 10_000) + 20_000);
    note('supervisor', r);
    if (r === 'stopped') {
      supervisorStopped = true;
      for (const name of alive) {
        report.stopped.push(name);
        log(`  ${name.padEnd(18)} stopped`);
      }
    }
  }
  for (const rec of [...state.processes].reverse()) {
    const r = await stopRecorded(rec, opts.graceMs ?? 10_000);
    if (supervisorStopped && r === 'gone') continue; // the supervisor stopped it (reported above)
    note(rec.name, r);
  }
  report.stopped = [...new Set(report.stopped)];
  rmSync(stateFile, { force: true });
  return report;
}
