// With no OTLP endpoint, startTracing registers nothing: the API's global tracer provider stays
// the no-op one (what the core's tracingActive() checks), and spans do not record.
import t from 'tap';
import { ProxyTracerProvider, trace } from '@opentelemetry/api';
import { startTracing } from '../src/index.js';

for (const k of Object.keys(process.env)) if (k.startsWith('OTEL_')) delete process.env[k];

t.test('no endpoint: a handle that is off, nothing registered', async (t) => {
  const noop = new ProxyTracerProvider().getDelegate();
  const handle = await startTracing({ serviceName: 'off-test' });
  t.equal(handle.enabled, false);
  t.equal(handle.tracesUrl, null);
  t.match(handle.offReason, /OTEL_EXPORTER_OTLP_ENDPOINT/);
  const provider = trace.getTracerProvider() as ProxyTracerProvider;
  t.equal(provider.getDelegate(), noop, 'the global tracer provider is still the no-op one');
  const span = trace.getTracer('x').startSpan('probe');
  t.equal(span.isRecording(), false, 'spans do not record');
  t.equal(span.spanContext().traceId, '00000000000000000000000000000000', 'and carry no ids');
  span.end();
  await handle.forceFlush();
  await handle.shutdown();
  t.equal(await startTracing({ serviceName: 'again' }), handle, 'a second call returns the first handle');
});
