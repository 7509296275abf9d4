/**
 * The stack CLI behind `make up`, `make demo`, `make down`, `make ps`, `make logs`:
 *
 *   tsx tools/stack/src/cli.ts up | down | demo | ps | logs [part] | trace [trace id] | help
 *
 * `up` starts a detached *supervisor* (this file, command `supervise`) that runs
 * {@link startStack} and keeps every part as its child; `up` relays the supervisor's progress
 * lines, prints the URLs and the walkthrough once everything is ready, and returns while the
 * stack keeps running. The supervisor stops every part (edge first, databases last) on SIGTERM,
 * which is what `down` sends after checking the recorded pid is still the supervisor.
 *
 * Environment (read once, validated; a bad value stops with a message naming the variable):
 * | variable | default | meaning |
 * |---|---|---|
 * | `EDGE_PORT` | 8080 | edge HTTP listener |
 * | `EDGE_HTTPS_PORT` | 8443 | edge HTTPS listener (dev CA) |
 * | `EDGE_ADMIN_PORT` | 9901 | edge admin interface (loopback) |
 * | `DATABASE_URL` | (none) | PostgreSQL to use; unset: embedded PostgreSQL (PGlite) in `.run/pgdata` |
 * | `REDIS_URL` | (none) | Redis to use; unset: a local `redis-server` on a free port with the least-privilege ACL users |
 * | `STACK_RUN_DIR` | `<repo>/.run` | state file, logs, certificates, PGlite data |
 * | `STACK_READY_TIMEOUT_MS` | 120000 | how long one part may take to become ready |
 * | `TRACING` | off | `on`: OpenTelemetry tracing, to the stack's own OTLP receiver unless `OTEL_EXPORTER_OTLP_ENDPOINT` is set; `off` wins over an endpoint |
 * | `OTEL_EXPORTER_OTLP_ENDPOINT` | (none) | OTLP/HTTP base URL of your collector (`http://127.0.0.1:4318`); turns tracing on |
 * | `TRACE_SAMPLE_PERCENT` | 100 | percent of requests without a `traceparent` the edge samples (0..100) |
 * | `TRACE_RECEIVER_PORT` | 4318 | the stack's own OTLP receiver (127.0.0.1) |
 * | `TRACE_ID` | (none) | `trace`: the trace to show (32 hex digits); default the latest complete one that reached a service behind the edge |
 */
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { z } from 'zod';
import { REPO_ROOT } from '@jwt-mesh/testkit';
import { runDemo } from './demo.js';
import { httpGet } from './probe.js';
import { isOurs, tailFile, type ProcessRecord } from './proc.js';
import { otlpCollectorOf, startStack, StackStartError, type Stack, type StackTracing } from './stack.js';
import { showTrace } from './traces/show.js';
import { processStatus, readState, stopStack } from './state.js';
import { partsTable, readyMessage } from './walkthrough.js';

const CLI = fileURLToPath(import.meta.url);

const port = z.coerce.number().int().min(1).max(65535);
const envSchema = z.object({
  EDGE_PORT: port.default(8080),
  EDGE_HTTPS_PORT: port.default(8443),
  EDGE_ADMIN_PORT: port.default(9901),
  DATABASE_URL: z
    .string()
    .regex(/^postgres(ql)?:\/\//, 'must be a postgresql:// URL')
    .optional(),
  REDIS_URL: z
    .string()
    .regex(/^rediss?:\/\//, 'must be a redis:// URL')
    .optional(),
  STACK_RUN_DIR: z.string().min(1).optional(),
  STACK_READY_TIMEOUT_MS: z.coerce.number().int().min(1000).max(900_000).default(120_000),
  TRACING: z
    .string()
    .toLowerCase()
    .pipe(z.enum(['on', 'off', '1', '0', 'true', 'false', 'yes', 'no']))
    .transform((v) => ['on', '1', 'true', 'yes'].includes(v))
    .optional(),
  // Checked by `up` only (otlpCollectorOf), so a value meant for something else never stops `make down`.
  OTEL_EXPORTER_OTLP_ENDPOINT: z.string().optional(),
  TRACE_SAMPLE_PERCENT: z.coerce.number().min(0).max(100).default(100),
  TRACE_RECEIVER_PORT: port.default(4318),
  TRACE_ID: z.string().regex(/^[0-9a-fA-F]{32}$/, 'must be 32 hex digits (a W3C trace-id)').optional(),
});
type CliEnv = z.infer<typeof envSchema>;

/** Reads the CLI's variables (empty = unset). @throws Error naming the variable. */
export function readCliEnv(env: NodeJS.ProcessEnv): Readonly<CliEnv> {
  const picked: Record<string, string> = {};
  for (const k of Object.keys(envSchema.shape)) {
    const v = env[k];
    if (v !== undefined && v.trim() !== '') picked[k] = v.trim();
  }
  const r = envSchema.safeParse(picked);
  if (!r.success) {
    const i = r.error.issues[0];
    const name = String(i?.path[0] ?? 'environment');
    throw new Error(`invalid ${name}: ${i?.message ?? 'invalid value'} (got ${JSON.stringify(picked[name])})`);
  }
  return Object.freeze(r.data);
}

/**
 * The stack's tracing from the CLI's variables: `OTEL_EXPORTER_OTLP_ENDPOINT` (a collector of
 * yours; turns tracing on unless `TRACING=off`), else `TRACING=on` (the built-in receiver on
 * `TRACE_RECEIVER_PORT`); `TRACE_SAMPLE_PERCENT` of the requests without a traceparent sampled by
 * the edge. Undefined when tracing is off.
 */
export function tracingFromEnv(env: CliEnv): StackTracing | undefined {
  if (env.TRACING === false) return undefined;
  if (env.OTEL_EXPORTER_OTLP_ENDPOINT) return { endpoint: env.OTEL_EXPORTER_OTLP_ENDPOINT, edgeSamplePercent: env.TRACE_SAMPLE_PERCENT };
  if (env.TRACING === true) return { receiverPort: env.TRACE_RECEIVER_PORT, edgeSamplePercent: env.TRACE_SAMPLE_PERCENT };
  return undefined;
}

function runDirOf(env: CliEnv): string {
  return resolve(env.STACK_RUN_DIR ?? join(REPO_ROOT, '.run'));
}

const out = (line = '') => process.stdout.write(`${line}\n`);
const err = (line: string) => process.stderr.write(`${line}\n`);

type Message = { type: 'progress'; line: string } | { type: 'ready' } | { type: 'failed'; message: string };

/** `up`: start the supervisor, relay its progress, print the walkthrough. */
async function up(env: CliEnv): Promise<number> {
  const runDir = runDirOf(env);
  const tracing = tracingFromEnv(env);
  if (tracing?.endpoint) {
    try {
      otlpCollectorOf(tracing.endpoint);
    } catch (e) {
      err(`make up: ${(e as Error).message}`);
      return 2;
    }
  }
  const stateFile = join(runDir, 'stack.json');
  const existing = readState(stateFile);
  if (existing) {
    if (existing.supervisor && isOurs(existing.supervisor) && existing.ready) {
      out('jwt-mesh is already running (make down stops it).');
      out(readyMessage(existing));
      return 0;
    }
    out('stack: a previous stack did not stop cleanly; stopping what is left of it');
    await stopStack(stateFile, { log: out });
  }
  mkdirSync(join(runDir, 'logs'), { recursive: true });
  const logFile = join(runDir, 'logs', 'stack.log');
  const fd = openSync(logFile, 'a');
  const child = spawn(process.execPath, ['--import', 'tsx', CLI, 'supervise'], {
    cwd: REPO_ROOT,
    env: process.env,
    detached: true,
    stdio: ['ignore', fd, fd, 'ipc'],
  });
  closeSync(fd);
  out(`stack: supervisor pid ${child.pid} (log ${logFile})`);

  const result = await new Promise<{ ok: boolean; message?: string }>((resolveUp) => {
    let done = false;
    const finish = (r: { ok: boolean; message?: string }) => {
      if (done) return;
      done = true;
      resolveUp(r);
    };
    child.on('message', (m: Message) => {
      if (m.type === 'progress') out(m.line);
      else if (m.type === 'ready') finish({ ok: true });
      else if (m.type === 'failed') finish({ ok: false, message: m.message });
    });
    child.once('exit', (code, signal) =>
      finish({ ok: false, message: `the supervisor exited (${signal ?? `code ${code}`}) before the stack was ready; see ${logFile}\n${tailFile(logFile, 30)}` }),
    );
    const interrupt = () => {
      out('\nstack: interrupted; stopping what was started');
      child.kill('SIGTERM');
    };
    process.once('SIGINT', interrupt);
    process.once('SIGTERM', interrupt);
  });
  if (!result.ok) {
    err(`\nmake up failed: ${result.message ?? 'unknown error'}`);
    if (child.exitCode === null) await new Promise((r) => child.once('exit', r));
    return 1;
  }
  const state = readState(stateFile);
  if (!state) {
    err('make up: the stack reported ready but wrote no state file');
    return 1;
  }
  out(readyMessage(state));
  child.disconnect();
  child.unref();
  return 0;
}

/** `supervise` (internal): run the stack in this detached process until SIGTERM. */
async function supervise(env: CliEnv): Promise<number> {
  const runDir = runDirOf(env);
  const send = (m: Message) => {
    if (process.connected) process.send?.(m);
  };
  const me: ProcessRecord = { name: 'supervisor', pid: process.pid, pgid: null, markers: [CLI, 'supervise'], log: join(runDir, 'logs', 'stack.log') };
  let stack: Stack | undefined;
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    out(`stack: ${signal}: stopping every part`);
    await stack?.stop();
    out('stack: stopped');
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('disconnect', () => undefined); // `up` returned; keep running
  out(`\n=== ${new Date().toISOString()} stack supervisor ${process.pid}`);
  try {
    stack = await startStack({
      runDir,
      ports: 'fixed',
      edgePorts: { http: env.EDGE_PORT, https: env.EDGE_HTTPS_PORT, admin: env.EDGE_ADMIN_PORT },
      ...(env.DATABASE_URL ? { databaseUrl: env.DATABASE_URL } : {}),
      ...(env.REDIS_URL ? { redisUrl: env.REDIS_URL } : {}),
      readyTimeoutMs: env.STACK_READY_TIMEOUT_MS,
      ...(tracingFromEnv(env) ? { tracing: tracingFromEnv(env) } : {}),
      supervisor: me,
      onProgress: (line) => {
        out(line);
        send({ type: 'progress', line });
      },
    });
  } catch (e) {
    const message = e instanceof StackStartError ? e.message : (e as Error).stack ?? String(e);
    out(`stack: FAILED: ${message}`);
    send({ type: 'failed', message });
    // Give the IPC message time to leave before exiting.
    await new Promise((r) => setTimeout(r, 200));
    return 1;
  }
  if (stopping) return 0;
  out('stack: ready');
  send({ type: 'ready' });
  // Report parts that exit on their own (crash) in the supervisor log; `make ps` shows them too.
  for (const name of stack.parts()) {
    const poll = setInterval(() => {
      if (!stopping && stack && !stack.isRunning(name)) {
        out(`stack: ${name} exited unexpectedly; see ${stack.logFile(name)}`);
        clearInterval(poll);
      }
    }, 2000);
  }
  return await new Promise<number>(() => undefined); // until SIGTERM
}

async function down(env: CliEnv): Promise<number> {
  const stateFile = join(runDirOf(env), 'stack.json');
  if (!existsSync(stateFile)) {
    out('make down: no stack is running (no .run/stack.json); nothing to stop');
    return 0;
  }
  out('make down: stopping the stack started by make up');
  const r = await stopStack(stateFile, { log: out });
  out(`make down: ${r.stopped.length} process(es) stopped${r.leftAlone.length ? `, ${r.leftAlone.length} left alone (pid reused)` : ''}`);
  return 0;
}

async function demo(env: CliEnv): Promise<number> {
  const state = readState(join(runDirOf(env), 'stack.json'));
  if (!state || !state.ready) {
    err('make demo: no stack is running; start one with make up');
    return 1;
  }
  const health = await httpGet(`${state.urls.edge}/healthz`, 3000);
  if (health.status !== 200) {
    err(`make demo: the edge at ${state.urls.edge} does not answer (${health.status || health.body}); see make ps and make logs`);
    return 1;
  }
  const failed = await runDemo(state);
  return failed === 0 ? 0 : 1;
}

/** `trace [trace id]`: one trace from the stack's receiver as a waterfall (make trace). */
async function trace(env: CliEnv, traceIdArg: string | undefined): Promise<number> {
  const state = readState(join(runDirOf(env), 'stack.json'));
  if (!state || !state.ready) {
    err('make trace: no stack is running; start one with make up TRACING=on');
    return 1;
  }
  if (!state.tracing) {
    err('make trace: this stack runs without tracing; make down, then make up TRACING=on (or OTEL_EXPORTER_OTLP_ENDPOINT=<your collector>)');
    return 1;
  }
  if (!state.tracing.receiver) {
    out(`make trace: traces go to your collector at ${state.tracing.endpoint}; look them up there (Jaeger UI, Grafana Tempo, ...).`);
    return 0;
  }
  const traceId = traceIdArg ?? env.TRACE_ID;
  try {
    const shown = await showTrace({ receiver: state.tracing.receiver, ...(traceId ? { traceId } : {}) });
    process.stdout.write(shown.text);
    return 0;
  } catch (e) {
    err(`make trace: ${(e as Error).message}`);
    return 1;
  }
}

function ps(env: CliEnv): number {
  const state = readState(join(runDirOf(env), 'stack.json'));
  if (!state) {
    out('make ps: no stack is running');
    return 0;
  }
  out(`stack started ${state.startedAt}${state.ready ? '' : ' (not ready)'}`);
  for (const s of processStatus(state)) out(`  ${s.name.padEnd(18)} pid ${String(s.pid).padEnd(8)} ${s.status.padEnd(10)} ${s.log}`);
  out('');
  out(partsTable(state));
  return processStatus(state).every((s) => s.status === 'running') ? 0 : 1;
}

function logs(env: CliEnv, part: string | undefined, lines: number): number {
  const dir = join(runDirOf(env), 'logs');
  if (!existsSync(dir)) {
    out('make logs: no logs yet (.run/logs)');
    return 0;
  }
  const files = readdirSync(dir)
    .filter((f) => f.endsWith('.log'))
    .filter((f) => !part || f === `${part}.log`)
    .sort();
  if (files.length === 0) {
    err(`make logs: no log named ${part}.log in ${dir}`);
    return 1;
  }
  for (const f of files) {
    out(`==> ${join(dir, f)} <==`);
    out(tailFile(join(dir, f), lines));
    out('');
  }
  return 0;
}

const HELP = `jwt-mesh local stack

  up       start everything (detached) and print the URLs and a walkthrough   (make up)
  demo     run the walkthrough against the running stack, with checks         (make demo)
  down     stop everything up started, and nothing else                       (make down)
  ps       the recorded processes and whether they still run                  (make ps)
  logs [part] [--lines N]  the last lines of every log, or of one part        (make logs)
  trace [trace id]  one request's spans as a waterfall (TRACING=on)          (make trace)

Environment: EDGE_PORT (8080), EDGE_HTTPS_PORT (8443), EDGE_ADMIN_PORT (9901), DATABASE_URL
(unset: embedded PGlite), REDIS_URL (unset: local redis-server with ACL users), STACK_RUN_DIR (.run),
STACK_READY_TIMEOUT_MS (120000). Tracing: TRACING=on (the stack's own OTLP receiver on
TRACE_RECEIVER_PORT, 4318), or OTEL_EXPORTER_OTLP_ENDPOINT=http://host:port (your collector);
TRACE_SAMPLE_PERCENT (100) of the requests without a traceparent are sampled at the edge;
TRACE_ID for trace.`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  // `make ps | head` closes the pipe early: that is not an error.
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(0);
    throw e;
  });
  let env: Readonly<CliEnv>;
  try {
    env = readCliEnv(process.env);
  } catch (e) {
    err(`stack: ${(e as Error).message}`);
    return 2;
  }
  switch (command) {
    case 'up':
      return up(env);
    case 'supervise':
      return supervise(env);
    case 'down':
      return down(env);
    case 'demo':
      return demo(env);
    case 'ps':
      return ps(env);
    case 'trace':
      return trace(env, rest.find((a) => !a.startsWith('--')));
    case 'logs': {
      const i = rest.indexOf('--lines');
      const lines = i >= 0 ? Number(rest[i + 1]) || 30 : 30;
      const part = rest.find((a, j) => !a.startsWith('--') && (i < 0 || j !== i + 1));
      return logs(env, part, lines);
    }
    case 'help':
    case '--help':
    case '-h':
    case undefined:
      out(HELP);
      return command === undefined ? 2 : 0;
    default:
      err(`stack: unknown command "${command}"\n\n${HELP}`);
      return 2;
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
      // `up` leaves an unref'd child; a ready supervisor never gets here (it runs until SIGTERM).
      setTimeout(() => process.exit(code), 50).unref();
    },
    (e: unknown) => {
      err(`stack: ${(e as Error).stack ?? String(e)}`);
      process.exit(1);
    },
  );
}
