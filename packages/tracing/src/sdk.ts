/**
 * The OpenTelemetry SDK wiring, loaded by {@link ./index.ts startTracing} only when tracing is on
 * (a dynamic import), so a process with tracing off never loads the SDK or the OTLP exporter.
 *
 * Upstream: OpenTelemetry JS SDK 2.x (`@opentelemetry/sdk-trace-node`, `sdk-trace-base`,
 * `resources`, `exporter-trace-otlp-proto`); the variables are read by the SDK itself from
 * `process.env` per https://opentelemetry.io/docs/specs/otel/configuration/sdk-environment-variables/.
 */
import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
import { BatchSpanProcessor, type SpanExporter } from '@opentelemetry/sdk-trace-base';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { defaultResource, detectResources, envDetector, resourceFromAttributes } from '@opentelemetry/resources';
import { ATTR_SERVICE_NAME } from '@opentelemetry/semantic-conventions';

/** What {@link registerSdk} returns: the two calls a graceful shutdown needs. */
export interface RegisteredSdk {
  /** Exports every ended span still queued; resolves when done or after `timeoutMs` milliseconds. */
  forceFlush(timeoutMs: number): Promise<void>;
  /** Flushes, then stops the exporter; later spans are dropped. Idempotent. */
  shutdown(): Promise<void>;
}

/**
 * Builds and registers (as the global tracer provider, context manager and W3C Trace Context
 * propagator) a `NodeTracerProvider` with:
 * - the resource: the SDK defaults (`telemetry.sdk.*`), `service.name` = `serviceName`, then
 *   `OTEL_RESOURCE_ATTRIBUTES` and `OTEL_SERVICE_NAME` (the variables win over the code);
 * - the sampler from `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG` (the SDK's own parsing;
 *   `parentbased_always_on` when unset, so every process follows the sampled flag of the
 *   incoming `traceparent`);
 * - one `BatchSpanProcessor` (its `OTEL_BSP_*` variables apply) over `exporter`, by default the
 *   OTLP/HTTP protobuf exporter, whose URL, headers, timeout and TLS files come from the
 *   `OTEL_EXPORTER_OTLP_*` variables.
 *
 * @param serviceName - `service.name` unless `OTEL_SERVICE_NAME` / `OTEL_RESOURCE_ATTRIBUTES` set one
 * @param exporter - replaces the OTLP exporter (tests)
 */
export function registerSdk(serviceName: string, exporter?: SpanExporter): RegisteredSdk {
  const resource = defaultResource()
    .merge(resourceFromAttributes({ [ATTR_SERVICE_NAME]: serviceName }))
    .merge(detectResources({ detectors: [envDetector] }));
  const provider = new NodeTracerProvider({
    resource,
    spanProcessors: [new BatchSpanProcessor(exporter ?? new OTLPTraceExporter())],
  });
  provider.register();
  let stopped: Promise<void> | null = null;
  return {
    forceFlush: (timeoutMs) => provider.forceFlush({ timeoutMillis: timeoutMs }),
    shutdown: () => (stopped ??= provider.shutdown()),
  };
}
