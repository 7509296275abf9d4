/**
 * Where the traces go (a collector of yours, or the built-in OTLP receiver of src/traces/), the
 * OpenTelemetry variables of the Node processes, and the step that starts the receiver.
 */
import { join } from 'node:path';
import { REPO_ROOT } from '@jwt-mesh/testkit';
import { httpGet, waitUntil } from '../probe.js';
import { spawnProcess } from '../proc.js';
import { guard, type Launcher, NODE_TSX, StackStartError } from './launcher.js';
import type { Mesh } from './plan.js';

/** The stack's part that runs the built-in OTLP receiver (`make up TRACING=on`). */
export const TRACES_PART = 'traces';

/** Default port of the built-in OTLP receiver in `fixed` mode (OTLP/HTTP's own port). */
export const DEFAULT_TRACE_RECEIVER_PORT = 4318;

/**
 * OpenTelemetry tracing of the whole mesh: every Node process (through `@jwt-mesh/tracing`'s
 * standard `OTEL_*` variables) and every Envoy (its OpenTelemetry tracer, envoy/src/render.ts)
 * export OTLP/HTTP to one place: the collector at {@link StackTracing.endpoint}, or, without one,
 * the stack's own receiver (part {@link TRACES_PART}, `src/traces/`), which `make trace` reads.
 */
export interface StackTracing {
  /**
   * OTLP/HTTP base URL of a collector you run (Jaeger, Tempo, the OpenTelemetry Collector), e.g.
   * `http://127.0.0.1:4318`: the Node processes get it as `OTEL_EXPORTER_OTLP_ENDPOINT`, the
   * proxies export to `<endpoint>/v1/traces`. Plain `http://` only (the proxies' exporter
   * cluster has no TLS). Absent: the built-in receiver is started.
   */
  endpoint?: string;
  /** Percentage (0..100) of requests arriving without a `traceparent` that the edge samples. Default 100. */
  edgeSamplePercent?: number;
  /** The built-in receiver's port with `ports: 'fixed'`. Default {@link DEFAULT_TRACE_RECEIVER_PORT}. */
  receiverPort?: number;
  /** Traces the built-in receiver keeps (the oldest are dropped). Default 200. */
  receiverMaxTraces?: number;
  /** Largest export request the built-in receiver accepts, bytes. Default 4 MiB. */
  receiverMaxBodyBytes?: number;
}

/** Where a collector's OTLP/HTTP base URL sends traces, for the Envoy exporter cluster. */
export interface OtlpCollector {
  /** The base URL without a trailing slash (`OTEL_EXPORTER_OTLP_ENDPOINT`). */
  endpoint: string;
  /** Host for the exporter cluster: an IP literal (`localhost` becomes 127.0.0.1) or a DNS name. */
  host: string;
  port: number;
  /** `<base path>/v1/traces` (OTLP/HTTP: the signal path is appended to the base URL). */
  tracesPath: string;
}

/**
 * Parses an OTLP/HTTP base URL (the value of `OTEL_EXPORTER_OTLP_ENDPOINT`, OTLP exporter spec).
 * @throws Error naming the problem: not a URL, not `http://` (the proxies cannot export over TLS
 *   here), credentials, a query or a fragment in it.
 */
export function otlpCollectorOf(endpoint: string): OtlpCollector {
  let u: URL;
  try {
    u = new URL(endpoint);
  } catch {
    throw new Error(`OTEL_EXPORTER_OTLP_ENDPOINT ${JSON.stringify(endpoint)} is not a URL (e.g. http://127.0.0.1:4318)`);
  }
  if (u.protocol !== 'http:') {
    throw new Error(`OTEL_EXPORTER_OTLP_ENDPOINT must be an http:// URL: the Envoy proxies export over plain HTTP (got ${u.protocol}//)`);
  }
  if (u.username || u.password || u.search || u.hash) throw new Error('OTEL_EXPORTER_OTLP_ENDPOINT must not carry credentials, a query or a fragment');
  const hostname = u.hostname.replace(/^\[|\]$/g, '');
  const base = u.pathname.replace(/\/+$/, '');
  return {
    endpoint: `${u.protocol}//${u.host}${base}`,
    host: hostname === 'localhost' ? '127.0.0.1' : hostname,
    port: u.port ? Number(u.port) : 80,
    tracesPath: `${base}/v1/traces`,
  };
}

/** Where the traces go: a collector of yours, or the built-in receiver's port (it moves on a port clash). */
export interface TracingPlan {
  collector: OtlpCollector | undefined;
  receiverPort: number | undefined;
}

/** Tracing: a collector the user runs, or the built-in receiver on its own port. @throws StackStartError (`tracing` is misconfigured). */
export async function planTracing(run: Launcher): Promise<TracingPlan> {
  const { options } = run;
  let collector: OtlpCollector | undefined;
  try {
    collector = options.tracing?.endpoint ? otlpCollectorOf(options.tracing.endpoint) : undefined;
  } catch (err) {
    throw new StackStartError('tracing', (err as Error).message, null, { what: 'is misconfigured' });
  }
  const receiverPort: number | undefined =
    options.tracing && !collector ? await run.pick(options.tracing.receiverPort ?? DEFAULT_TRACE_RECEIVER_PORT, TRACES_PART) : undefined;
  return { collector, receiverPort };
}

/** The collector every process and proxy exports to: yours, or the built-in receiver; undefined with tracing off. */
export function tracingCollector(t: TracingPlan): OtlpCollector | undefined {
  return t.collector ?? (t.receiverPort !== undefined ? otlpCollectorOf(`http://127.0.0.1:${t.receiverPort}`) : undefined);
}

/** Step: the built-in OTLP receiver (tracing on, no collector of yours), or a line naming your collector. */
export async function startTraceReceiver(m: Mesh): Promise<void> {
  const { tracing } = m;
  if (tracing.receiverPort === undefined) {
    if (tracing.collector) m.say('tracing', `every process and proxy exports OTLP/HTTP to your collector at ${tracing.collector.endpoint}`);
    return;
  }
  const entry = join(REPO_ROOT, 'tools', 'stack', 'src', 'traces', 'main.ts');
  const log = m.logOf(TRACES_PART);
  const t = m.options.tracing as StackTracing;
  await m.launch({
    name: TRACES_PART,
    ...(m.free
      ? {
          repick: async () => {
            tracing.receiverPort = await m.reserve(TRACES_PART);
          },
        }
      : {}),
    start: async () => {
      const port = tracing.receiverPort as number;
      await m.release(port);
      const env: NodeJS.ProcessEnv = { ...process.env };
      delete env['NODE_OPTIONS'];
      const proc = spawnProcess({
        name: TRACES_PART,
        command: process.execPath,
        args: [
          ...NODE_TSX,
          entry,
          '--port',
          String(port),
          ...(t.receiverMaxTraces !== undefined ? ['--max-traces', String(t.receiverMaxTraces)] : []),
          ...(t.receiverMaxBodyBytes !== undefined ? ['--max-body-bytes', String(t.receiverMaxBodyBytes)] : []),
        ],
        cwd: REPO_ROOT,
        env,
        logFile: log,
        markers: [entry],
      });
      await guard(TRACES_PART, log, proc, () =>
        waitUntil(
          'trace receiver /healthz',
          async () => {
            const r = await httpGet(`http://127.0.0.1:${port}/healthz`);
            return r.status === 200 ? true : `GET /healthz: ${r.status || r.body}`;
          },
          { timeoutMs: m.readyTimeoutMs, alive: proc.running },
        ),
      );
      return proc;
    },
  });
  m.say(TRACES_PART, `OTLP receiver http://127.0.0.1:${tracing.receiverPort}/v1/traces, loopback only (log ${m.rel(log)}); make trace prints a request's spans`);
}

/**
 * The OpenTelemetry variables of every Node process when tracing is on (`@jwt-mesh/tracing`
 * reads them): the collector's base URL, a parent-based sampler that never starts a sampled
 * trace on its own (the edge decides; a process follows the incoming traceparent), and a 1 s
 * batch delay so `make trace` sees a request soon after it ends.
 */
export function tracingEnv(m: Mesh): Record<string, string> {
  const c = tracingCollector(m.tracing);
  return c ? { OTEL_EXPORTER_OTLP_ENDPOINT: c.endpoint, OTEL_TRACES_SAMPLER: 'parentbased_always_off', OTEL_BSP_SCHEDULE_DELAY: '1000' } : {};
}
