// With OTEL_EXPORTER_OTLP_ENDPOINT set, startTracing registers the SDK and spans reach a real
// OTLP/HTTP endpoint (a local node:http server) as protobuf, flushed by shutdown(); the sampler
// is parent-based (an unsampled parent's child is not recorded).
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import { ProxyTracerProvider, ROOT_CONTEXT, trace, TraceFlags } from '@opentelemetry/api';
import { startTracing } from '../src/index.js';

const received: Array<{ url: string | undefined; method: string | undefined; headers: IncomingHttpHeaders; body: Buffer }> = [];
const collector = createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    received.push({ url: req.url, method: req.method, headers: req.headers, body: Buffer.concat(chunks) });
    res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end();
  });
});
await new Promise<void>((r) => collector.listen(0, '127.0.0.1', r));
t.teardown(() => new Promise<void>((r) => collector.close(() => r())));

for (const k of Object.keys(process.env)) if (k.startsWith('OTEL_')) delete process.env[k];
process.env['OTEL_EXPORTER_OTLP_ENDPOINT'] = `http://127.0.0.1:${(collector.address() as AddressInfo).port}`;
process.env['OTEL_RESOURCE_ATTRIBUTES'] = 'deployment.environment.name=otlp-env-marker';

t.test('spans are exported over OTLP/HTTP protobuf on shutdown', async (t) => {
  const handle = await startTracing({ serviceName: 'otlp-test-service' });
  t.equal(handle.enabled, true);
  t.equal(handle.tracesUrl, `${process.env['OTEL_EXPORTER_OTLP_ENDPOINT']}/v1/traces`);
  const noop = new ProxyTracerProvider().getDelegate();
  t.not((trace.getTracerProvider() as ProxyTracerProvider).getDelegate(), noop, 'an SDK tracer provider is registered');

  const tracer = trace.getTracer('otlp-test');
  const root = tracer.startSpan('sampled-root-span');
  t.equal(root.isRecording(), true, 'a root span is sampled (parentbased_always_on)');
  root.end();

  const unsampledParent = trace.setSpanContext(ROOT_CONTEXT, {
    traceId: '0af7651916cd43dd8448eb211c80319c',
    spanId: 'b7ad6b7169203331',
    traceFlags: TraceFlags.NONE,
    isRemote: true,
  });
  const child = tracer.startSpan('unsampled-child-span', {}, unsampledParent);
  t.equal(child.isRecording(), false, 'the child of an unsampled parent is not recorded');
  child.end();

  await handle.shutdown();
  t.ok(received.length >= 1, 'the collector got an export request');
  const all = Buffer.concat(received.map((r) => r.body)).toString('latin1');
  t.equal(received[0]!.url, '/v1/traces');
  t.equal(received[0]!.method, 'POST');
  t.equal(received[0]!.headers['content-type'], 'application/x-protobuf');
  t.ok(all.includes('sampled-root-span'), 'the span is in the body');
  t.notOk(all.includes('unsampled-child-span'), 'the unsampled span is not');
  t.ok(all.includes('otlp-test-service'), 'service.name from startTracing');
  t.ok(all.includes('deployment.environment.name') && all.includes('otlp-env-marker'), 'OTEL_RESOURCE_ATTRIBUTES applied');
  await handle.shutdown(); // idempotent
});
