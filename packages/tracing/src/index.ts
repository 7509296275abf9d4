/**
 * @jwt-mesh/tracing: OpenTelemetry tracing for every jwt-mesh Node process.
 *
 * One call at the very start of each process's main, {@link startTracing}, reads the standard
 * OpenTelemetry variables and, only when an OTLP endpoint is set, loads the SDK and registers a
 * tracer provider that exports over OTLP/HTTP (protobuf). Otherwise nothing is loaded or
 * registered: `@opentelemetry/api` stays on its no-op tracer, and the instrumented seams of
 * `@jwt-mesh/core` and the services skip span work entirely (see `tracingActive()` in the core).
 *
 * Spans themselves are made where the work happens (the core, authz-service, the services,
 * auth-service) through `@opentelemetry/api` only; this package is the process-level switch.
 * Upstream: https://opentelemetry.io/docs/specs/otel/configuration/sdk-environment-variables/,
 * https://opentelemetry.io/docs/specs/otel/protocol/exporter/, W3C Trace Context.
 */
import { diag, DiagConsoleLogger, DiagLogLevel } from '@opentelemetry/api';
import type { SpanExporter } from '@opentelemetry/sdk-trace-base';
import { tracingSettingsFromEnv, type Env } from './settings.js';

export { tracingSettingsFromEnv, type Env, type TracingSettings } from './settings.js';

/** Options of {@link startTracing}. */
export interface StartTracingOptions {
  /**
   * `service.name` of every span of this process (`auth-service`, `authz-service`, `orders`, ...).
   * `OTEL_SERVICE_NAME`, or `service.name` in `OTEL_RESOURCE_ATTRIBUTES`, overrides it.
   */
  readonly serviceName: string;
  /**
   * Environment the on/off decision is read from (default `process.env`). The SDK itself always
   * reads `process.env` for the sampler, exporter and resource variables.
   */
  readonly env?: Env;
  /** Replaces the OTLP exporter (tests); only used when tracing is on. */
  readonly exporter?: SpanExporter;
}

/** What {@link startTracing} returns. Safe to use whether tracing is on or off. */
export interface TracingHandle {
  /** `true` when an SDK tracer provider was registered by this call. */
  readonly enabled: boolean;
  /** The OTLP/HTTP traces URL, or `null` when off. */
  readonly tracesUrl: string | null;
  /** Why tracing is off, or `null` when on (for the start-up log line). */
  readonly offReason: string | null;
  /**
   * Exports the ended spans still queued. Resolves (never rejects) when done or after
   * `timeoutMs` milliseconds (default 5000). A no-op when off.
   */
  forceFlush(timeoutMs?: number): Promise<void>;
  /**
   * Flushes the queued spans and stops the exporter: call it last in the process's graceful
   * shutdown, after the servers closed. Idempotent; resolves (never rejects) within about
   * `timeoutMs` milliseconds (default 5000) even if the collector does not answer. A no-op when off.
   */
  shutdown(timeoutMs?: number): Promise<void>;
}

const OFF_NOOP = async (): Promise<void> => {};
let started: Promise<TracingHandle> | null = null;

/** Resolves after `ms` milliseconds, without keeping the event loop alive. */
function after(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

/** `OTEL_LOG_LEVEL` (spec values, case-insensitive) to the API's diag level; default `warn`. */
function diagLevel(env: Env): DiagLogLevel {
  switch (env['OTEL_LOG_LEVEL']?.trim().toLowerCase()) {
    case 'none': return DiagLogLevel.NONE;
    case 'error': return DiagLogLevel.ERROR;
    case 'info': return DiagLogLevel.INFO;
    case 'debug': return DiagLogLevel.DEBUG;
    case 'verbose': return DiagLogLevel.VERBOSE;
    case 'all': return DiagLogLevel.ALL;
    default: return DiagLogLevel.WARN;
  }
}

/**
 * Starts tracing for this process from the OpenTelemetry variables (see README.md, "Variables"):
 * on when `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT` is set and
 * neither `OTEL_SDK_DISABLED=true` nor `OTEL_TRACES_EXPORTER=none` ({@link tracingSettingsFromEnv}).
 *
 * When on, it dynamically imports the SDK and registers, globally: a `NodeTracerProvider`
 * (sampler from `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG`, `parentbased_always_on` by
 * default), an `AsyncLocalStorage` context manager, the W3C Trace Context propagator, and a
 * `BatchSpanProcessor` over the OTLP/HTTP protobuf exporter. SDK warnings (an unreachable
 * collector, a bad sampler name) go to stderr through the API's diag logger at `OTEL_LOG_LEVEL`
 * (default `warn`); they never fail a request.
 *
 * When off, it loads and registers nothing.
 *
 * Call it once, first thing in main; a second call returns the first call's handle.
 *
 * @throws only if the SDK modules cannot be loaded (a broken install): start-up should stop
 */
export function startTracing(options: StartTracingOptions): Promise<TracingHandle> {
  started ??= start(options);
  return started;
}

async function start(options: StartTracingOptions): Promise<TracingHandle> {
  const env = options.env ?? process.env;
  const settings = tracingSettingsFromEnv(env);
  if (!settings.enabled) {
    return { ...settings, forceFlush: OFF_NOOP, shutdown: OFF_NOOP };
  }
  diag.setLogger(new DiagConsoleLogger(), { logLevel: diagLevel(env), suppressOverrideMessage: true });
  const { registerSdk } = await import('./sdk.js');
  const sdk = registerSdk(options.serviceName, options.exporter);
  const bounded = (p: Promise<void>, timeoutMs: number): Promise<void> =>
    Promise.race([p.catch((err: unknown) => diag.warn(`tracing: ${String(err)}`)), after(timeoutMs)]);
  return {
    ...settings,
    forceFlush: (timeoutMs = 5000) => bounded(sdk.forceFlush(timeoutMs), timeoutMs),
    shutdown: (timeoutMs = 5000) => bounded(sdk.shutdown(), timeoutMs),
  };
}
