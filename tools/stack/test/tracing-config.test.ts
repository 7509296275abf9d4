/**
 * How `make up` turns its variables into the stack's tracing (cli.ts `tracingFromEnv`) and how an
 * OTLP/HTTP base URL becomes the proxies' exporter target (stack.ts `otlpCollectorOf`).
 */
import t from 'tap';
import { readCliEnv, tracingFromEnv } from '../src/cli.js';
import { otlpCollectorOf } from '../src/stack.js';

t.test('TRACING and OTEL_EXPORTER_OTLP_ENDPOINT: off by default, the receiver, or your collector', async (t) => {
  t.equal(tracingFromEnv(readCliEnv({})), undefined, 'off by default');
  t.same(tracingFromEnv(readCliEnv({ TRACING: 'on' })), { receiverPort: 4318, edgeSamplePercent: 100 }, 'TRACING=on: the built-in receiver');
  t.same(tracingFromEnv(readCliEnv({ TRACING: 'TRUE', TRACE_RECEIVER_PORT: '14318', TRACE_SAMPLE_PERCENT: '12.5' })), { receiverPort: 14318, edgeSamplePercent: 12.5 });
  t.same(tracingFromEnv(readCliEnv({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4318' })), { endpoint: 'http://127.0.0.1:4318', edgeSamplePercent: 100 }, 'an endpoint turns it on');
  t.same(tracingFromEnv(readCliEnv({ TRACING: 'on', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' }))?.endpoint, 'http://collector:4318', 'the endpoint wins over the receiver');
  t.equal(tracingFromEnv(readCliEnv({ TRACING: 'off', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4318' })), undefined, 'TRACING=off wins over an endpoint');
  t.equal(tracingFromEnv(readCliEnv({ TRACING: '' })), undefined, 'empty means unset');
  t.throws(() => readCliEnv({ TRACING: 'maybe' }), /invalid TRACING/);
  t.throws(() => readCliEnv({ TRACE_SAMPLE_PERCENT: '101' }), /invalid TRACE_SAMPLE_PERCENT/);
  t.throws(() => readCliEnv({ TRACE_ID: 'xyz' }), /invalid TRACE_ID: must be 32 hex digits/);
  t.doesNotThrow(() => readCliEnv({ OTEL_EXPORTER_OTLP_ENDPOINT: 'grpc://elsewhere' }), 'an endpoint meant for something else never stops make down; make up checks it');
});

t.test('otlpCollectorOf: base URL, host and port for the exporter cluster, /v1/traces appended', async (t) => {
  t.same(otlpCollectorOf('http://127.0.0.1:4318'), { endpoint: 'http://127.0.0.1:4318', host: '127.0.0.1', port: 4318, tracesPath: '/v1/traces' });
  t.same(otlpCollectorOf('http://localhost:4318/'), { endpoint: 'http://localhost:4318', host: '127.0.0.1', port: 4318, tracesPath: '/v1/traces' }, 'localhost is loopback for Envoy');
  t.same(otlpCollectorOf('http://tempo.example:80/otlp/'), { endpoint: 'http://tempo.example/otlp', host: 'tempo.example', port: 80, tracesPath: '/otlp/v1/traces' }, 'a base path is kept');
  t.same(otlpCollectorOf('http://[::1]:4318'), { endpoint: 'http://[::1]:4318', host: '::1', port: 4318, tracesPath: '/v1/traces' });
  t.throws(() => otlpCollectorOf('https://collector:4318'), /must be an http:\/\/ URL/);
  t.throws(() => otlpCollectorOf('127.0.0.1:4318'), /must be an http:\/\/ URL|is not a URL/);
  t.throws(() => otlpCollectorOf('not a url'), /is not a URL/);
  t.throws(() => otlpCollectorOf('http://user:secret@collector:4318'), /must not carry credentials/);
  t.throws(() => otlpCollectorOf('http://collector:4318/?x=1'), /must not carry credentials, a query/);
});
