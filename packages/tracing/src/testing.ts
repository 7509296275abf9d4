/**
 * Test helpers: an in-process tracer provider whose spans land in an `InMemorySpanExporter`
 * (OpenTelemetry JS `sdk-trace-base`), registered globally like `startTracing` registers the
 * OTLP one, so the code under test runs exactly the instrumented path it runs in production.
 * Not for production code.
 */
import { context, propagation, trace } from '@opentelemetry/api';
import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
import {
  AlwaysOnSampler,
  InMemorySpanExporter,
  ParentBasedSampler,
  SimpleSpanProcessor,
  type ReadableSpan,
} from '@opentelemetry/sdk-trace-base';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { ATTR_SERVICE_NAME } from '@opentelemetry/semantic-conventions';

/** What {@link installTestTracing} returns. */
export interface TestTracing {
  /** The exporter every ended span is handed to at once (SimpleSpanProcessor). */
  readonly exporter: InMemorySpanExporter;
  /** The ended spans so far, in the order they ended. */
  spans(): ReadableSpan[];
  /** The ended spans named `name`. */
  named(name: string): ReadableSpan[];
  /** Forgets the ended spans. */
  reset(): void;
  /**
   * Every span so far as one JSON text: names, attributes, events (names and attributes),
   * links, status messages, resource attributes. For "no secret in any span" assertions.
   */
  dump(): string;
  /** Unregisters the provider, context manager and propagator (back to the API's no-ops). Idempotent. */
  uninstall(): Promise<void>;
}

/**
 * Registers a `NodeTracerProvider` with a parent-based always-on sampler (the production
 * default), `AsyncLocalStorage` context and the W3C Trace Context propagator, exporting to
 * memory.
 *
 * @param serviceName - the resource's `service.name` (default `test`)
 */
export function installTestTracing(serviceName = 'test'): TestTracing {
  const exporter = new InMemorySpanExporter();
  const provider = new NodeTracerProvider({
    resource: resourceFromAttributes({ [ATTR_SERVICE_NAME]: serviceName }),
    sampler: new ParentBasedSampler({ root: new AlwaysOnSampler() }),
    spanProcessors: [new SimpleSpanProcessor(exporter)],
  });
  provider.register();
  const spans = (): ReadableSpan[] => exporter.getFinishedSpans();
  let uninstalled = false;
  return {
    exporter,
    spans,
    named: (name) => spans().filter((s) => s.name === name),
    reset: () => exporter.reset(),
    dump: () =>
      JSON.stringify(
        spans().map((s) => ({
          name: s.name,
          kind: s.kind,
          attributes: s.attributes,
          events: s.events.map((e) => ({ name: e.name, attributes: e.attributes })),
          links: s.links.map((l) => ({ attributes: l.attributes })),
          status: s.status,
          resource: s.resource.attributes,
        })),
      ),
    uninstall: async () => {
      if (uninstalled) return;
      uninstalled = true;
      await provider.shutdown();
      trace.disable();
      context.disable();
      propagation.disable();
    },
  };
}

export type { ReadableSpan } from '@opentelemetry/sdk-trace-base';
