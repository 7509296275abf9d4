/**
 * The stack's OTLP/HTTP trace receiver (src/traces/receiver.ts), over real HTTP on loopback:
 * a valid protobuf export is stored and readable back through the API; a malformed body gets
 * 400, an oversized one 413 (declared, streamed or inflated from gzip), a wrong content type
 * 415; nothing a sender posts crashes it; the store keeps at most N traces and M spans per trace;
 * it refuses to listen anywhere but loopback.
 */
import { randomBytes } from 'node:crypto';
import { request } from 'node:http';
import { createRequire } from 'node:module';
import { gzipSync } from 'node:zlib';
import fc from 'fast-check';
import t, { type Test } from 'tap';
import { encodeExportRequest, type SpanInput, type StoredSpan } from '../src/traces/otlp.js';
import { MAX_STATS_SERVICES, startOtlpReceiver, type OtlpReceiver } from '../src/traces/receiver.js';
import { TraceStore } from '../src/traces/store.js';

const require = createRequire(import.meta.url);
const root = require('@opentelemetry/otlp-transformer/build/src/generated/root.js') as {
  opentelemetry: { proto: { collector: { trace: { v1: { ExportTraceServiceResponse: { decode(b: Uint8Array): Record<string, any> } } } } } };
};
const { ExportTraceServiceResponse } = root.opentelemetry.proto.collector.trace.v1;

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

/** One request; `chunks` are written one by one (chunked transfer encoding when no content-length is set). */
function post(url: string, opts: { method?: string; headers?: Record<string, string>; body?: Buffer; chunks?: Buffer[] }): Promise<Reply> {
  return new Promise((resolveReply, reject) => {
    const req = request(url, { method: opts.method ?? 'POST', headers: opts.headers ?? {}, agent: false }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () => resolveReply({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(parts) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    if (opts.chunks) {
      for (const c of opts.chunks) req.write(c);
      req.end();
    } else req.end(opts.body);
  });
}

const PROTOBUF = { 'content-type': 'application/x-protobuf' };
const ms = 1_000_000n;

async function receiver(t: Test, opts: Partial<Parameters<typeof startOtlpReceiver>[0]> = {}): Promise<OtlpReceiver> {
  const r = await startOtlpReceiver({ port: 0, ...opts });
  t.teardown(() => r.close());
  return r;
}

function hex(bytes: number): string {
  return randomBytes(bytes).toString('hex');
}

/** A small trace: edge -> sidecar-orders -> orders, ids fresh. */
function chain(traceId = hex(16)): { traceId: string; bySvc: Record<string, SpanInput[]> } {
  const t0 = 1_700_000_000_000n * ms;
  const edge = hex(8);
  const sidecar = hex(8);
  return {
    traceId,
    bySvc: {
      edge: [{ traceId, spanId: edge, name: 'edge /api/orders', kind: 'server', startTimeUnixNano: t0, endTimeUnixNano: t0 + 20n * ms, attributes: { 'http.status_code': '200' } }],
      'sidecar-orders': [{ traceId, spanId: sidecar, parentSpanId: edge, name: 'inbound orders', kind: 'server', startTimeUnixNano: t0 + 2n * ms, endTimeUnixNano: t0 + 18n * ms }],
      orders: [
        {
          traceId,
          spanId: hex(8),
          parentSpanId: sidecar,
          name: 'GET /api/orders/:id',
          kind: 'server',
          startTimeUnixNano: t0 + 3n * ms,
          endTimeUnixNano: t0 + 17n * ms,
          attributes: { 'jwt_mesh.verified_cache.hit': true, 'http.response.status_code': 200, ratio: 0.5 },
          status: 'ok',
        },
      ],
    },
  };
}

async function getJson(url: string): Promise<{ status: number; json: any }> {
  const r = await post(url, { method: 'GET' });
  let json: any = null;
  try {
    json = JSON.parse(r.body.toString('utf8'));
  } catch {
    json = r.body.toString('utf8');
  }
  return { status: r.status, json };
}

t.test('a valid OTLP/HTTP protobuf export is stored and readable through the API', async (t) => {
  const r = await receiver(t);
  t.match(r.url, /^http:\/\/127\.0\.0\.1:\d+$/, 'listens on 127.0.0.1');
  const { traceId, bySvc } = chain();
  for (const [service, spans] of Object.entries(bySvc)) {
    const res = await post(`${r.url}/v1/traces`, { headers: PROTOBUF, body: Buffer.from(encodeExportRequest(service, spans)) });
    t.equal(res.status, 200, `${service}: 200`);
    t.equal(res.headers['content-type'], 'application/x-protobuf', 'an OTLP protobuf response');
    const decoded = ExportTraceServiceResponse.decode(res.body);
    t.notOk(decoded['partialSuccess'], 'no partial success: everything accepted');
  }
  const list = await getJson(`${r.url}/api/traces`);
  t.equal(list.status, 200);
  t.equal(list.json.traces.length, 1);
  const summary = list.json.traces[0];
  t.equal(summary.traceId, traceId);
  t.equal(summary.spanCount, 3);
  t.same(summary.services, ['edge', 'sidecar-orders', 'orders'], 'services in the order their first span starts');
  t.same(summary.root, { serviceName: 'edge', name: 'edge /api/orders', spanId: bySvc['edge']?.[0]?.spanId });
  t.equal(summary.throughEdge, true);
  t.equal(summary.complete, true, 'one top span, the edge\'s');
  t.equal(summary.durationMs, 20);

  const one = await getJson(`${r.url}/api/traces/${traceId.toUpperCase()}`);
  t.equal(one.status, 200, 'trace ids are case-insensitive');
  const spans = one.json.spans as StoredSpan[];
  t.same(spans.map((s) => s.serviceName), ['edge', 'sidecar-orders', 'orders'], 'spans by start time');
  const orders = spans[2] as StoredSpan;
  const input = bySvc['orders']?.[0] as SpanInput;
  t.equal(orders.traceId, traceId);
  t.equal(orders.spanId, input.spanId);
  t.equal(orders.parentSpanId, input.parentSpanId);
  t.equal(orders.name, 'GET /api/orders/:id');
  t.equal(orders.kind, 'server');
  t.equal(orders.startTimeUnixNano, input.startTimeUnixNano.toString(), 'start time exact to the nanosecond');
  t.equal(orders.endTimeUnixNano, input.endTimeUnixNano.toString());
  t.same(orders.status, { code: 'ok', message: '' });
  t.same(orders.attributes, { 'jwt_mesh.verified_cache.hit': true, 'http.response.status_code': 200, ratio: 0.5 }, 'bool, int and double attributes');
  t.equal(orders.resource['service.name'], 'orders');
  t.equal(spans[0]?.parentSpanId, null, 'the edge span has no parent');

  t.equal((await getJson(`${r.url}/api/traces/${hex(16)}`)).status, 404, 'a trace not held: 404');
  t.equal((await getJson(`${r.url}/api/traces/not-a-trace-id`)).status, 400, 'not a trace id: 400');
  t.equal((await getJson(`${r.url}/healthz`)).status, 200);
});

t.test('gzip-encoded exports are accepted', async (t) => {
  const r = await receiver(t);
  const { traceId, bySvc } = chain();
  const res = await post(`${r.url}/v1/traces`, { headers: { ...PROTOBUF, 'content-encoding': 'gzip' }, body: gzipSync(encodeExportRequest('edge', bySvc['edge'] ?? [])) });
  t.equal(res.status, 200);
  t.equal(r.store.get(traceId)?.length, 1);
});

t.test('spans with invalid ids or times are refused as a partial success; the valid ones are kept', async (t) => {
  const r = await receiver(t);
  const traceId = hex(16);
  const t0 = 1_700_000_000_000n * ms;
  const body = encodeExportRequest('orders', [
    { traceId, spanId: hex(8), name: 'ok', startTimeUnixNano: t0, endTimeUnixNano: t0 + ms },
    { traceId: '00'.repeat(16), spanId: hex(8), name: 'zero trace id', startTimeUnixNano: t0, endTimeUnixNano: t0 },
    { traceId: hex(8), spanId: hex(8), name: 'short trace id', startTimeUnixNano: t0, endTimeUnixNano: t0 },
    { traceId, spanId: '00'.repeat(8), name: 'zero span id', startTimeUnixNano: t0, endTimeUnixNano: t0 },
    { traceId, spanId: hex(8), name: 'ends before it starts', startTimeUnixNano: t0, endTimeUnixNano: t0 - 1n },
  ]);
  const res = await post(`${r.url}/v1/traces`, { headers: PROTOBUF, body: Buffer.from(body) });
  t.equal(res.status, 200);
  const decoded = ExportTraceServiceResponse.decode(res.body);
  t.equal(Number(decoded['partialSuccess']?.rejectedSpans), 4, 'partial_success.rejected_spans = 4');
  t.match(decoded['partialSuccess']?.errorMessage, /invalid trace id, span id or time range/);
  t.same(r.store.get(traceId)?.map((s) => s.name), ['ok']);
});

t.test('a malformed body gets 400 and the receiver keeps serving', async (t) => {
  const r = await receiver(t);
  for (const [what, body] of [
    ['text', Buffer.from('this is not protobuf')],
    ['a length running past the end', Buffer.from([0x0a, 0xff, 0xff, 0xff, 0x0f, 0x01])],
    ['an invalid wire type', Buffer.from([0x0f])],
    ['a truncated varint', Buffer.from([0x08, 0xff])],
  ] as Array<[string, Buffer]>) {
    const res = await post(`${r.url}/v1/traces`, { headers: PROTOBUF, body });
    t.equal(res.status, 400, `${what}: 400`);
    t.match(res.body.toString(), /not an OTLP ExportTraceServiceRequest/, `${what}: says why`);
  }
  const gz = await post(`${r.url}/v1/traces`, { headers: { ...PROTOBUF, 'content-encoding': 'gzip' }, body: Buffer.from('not gzip') });
  t.equal(gz.status, 400, 'broken gzip: 400');
  // Whatever bytes a sender posts, the answer is 200 or 400, never a crash or a 500.
  await fc.assert(
    fc.asyncProperty(fc.uint8Array({ maxLength: 300 }), async (bytes) => {
      const res = await post(`${r.url}/v1/traces`, { headers: PROTOBUF, body: Buffer.from(bytes) });
      return res.status === 200 || res.status === 400;
    }),
    { numRuns: 200 },
  );
  t.equal((await getJson(`${r.url}/healthz`)).status, 200, 'still serving');
});

t.test('an oversized body gets 413, declared, streamed or inflated', async (t) => {
  const r = await receiver(t, { maxBodyBytes: 1024 });
  const big = Buffer.alloc(4096, 0x41);
  const declared = await post(`${r.url}/v1/traces`, { headers: { ...PROTOBUF, 'content-length': String(big.length) }, body: big });
  t.equal(declared.status, 413, 'content-length over the limit: 413');
  t.match(declared.body.toString(), /exceeds the receiver's limit of 1024 bytes/);
  const streamed = await post(`${r.url}/v1/traces`, { headers: PROTOBUF, chunks: [Buffer.alloc(600), Buffer.alloc(600)] });
  t.equal(streamed.status, 413, 'chunked past the limit: 413');
  const bomb = gzipSync(Buffer.alloc(64 * 1024));
  t.ok(bomb.length < 1024, 'the gzip body itself is small');
  const inflated = await post(`${r.url}/v1/traces`, { headers: { ...PROTOBUF, 'content-encoding': 'gzip' }, body: bomb });
  t.equal(inflated.status, 413, 'inflating past the limit: 413');
  t.match(inflated.body.toString(), /decompressed request body exceeds/);
  t.equal((await getJson(`${r.url}/healthz`)).status, 200, 'still serving');
});

t.test('other content types, encodings, methods and paths are refused', async (t) => {
  const r = await receiver(t);
  const json = await post(`${r.url}/v1/traces`, { headers: { 'content-type': 'application/json' }, body: Buffer.from('{}') });
  t.equal(json.status, 415, 'JSON: 415');
  t.match(json.body.toString(), /application\/x-protobuf/);
  t.equal((await post(`${r.url}/v1/traces`, { headers: { ...PROTOBUF, 'content-encoding': 'br' }, body: Buffer.alloc(1) })).status, 415, 'brotli: 415');
  t.equal((await post(`${r.url}/v1/traces`, { method: 'GET' })).status, 405);
  t.equal((await post(`${r.url}/api/traces`, { headers: PROTOBUF, body: Buffer.alloc(0) })).status, 405);
  t.equal((await post(`${r.url}/v1/metrics`, { method: 'GET' })).status, 404);
});

t.test('the store is bounded: the last N traces, at most M spans per trace', async (t) => {
  const r = await receiver(t, { maxTraces: 3, maxSpansPerTrace: 2 });
  const ids: string[] = [];
  for (let i = 0; i < 5; i++) {
    const { traceId, bySvc } = chain();
    ids.push(traceId);
    const res = await post(`${r.url}/v1/traces`, { headers: PROTOBUF, body: Buffer.from(encodeExportRequest('edge', bySvc['edge'] ?? [])) });
    t.equal(res.status, 200);
  }
  t.equal(r.store.size, 3, 'three traces held');
  t.same(new Set((await getJson(`${r.url}/api/traces`)).json.traces.map((x: { traceId: string }) => x.traceId)), new Set(ids.slice(2)), 'the last three');
  t.equal((await getJson(`${r.url}/api/traces/${ids[0]}`)).status, 404, 'the first was dropped');

  const { traceId, bySvc } = chain();
  await post(`${r.url}/v1/traces`, { headers: PROTOBUF, body: Buffer.from(encodeExportRequest('mixed', Object.values(bySvc).flat())) });
  t.equal(r.store.get(traceId)?.length, 2, 'two spans kept of three');
  const summary = r.store.list().find((x) => x.traceId === traceId);
  t.equal(summary?.droppedSpans, 1, 'the third counted as dropped');
  t.equal(r.store.size, 3, 'still three traces');

  t.throws(() => new TraceStore({ maxTraces: 0 }), RangeError);
  t.throws(() => new TraceStore({ maxSpansPerTrace: 1.5 }), RangeError);
});

t.test('complete means one top span, the edge\'s; a missing parent or a missing edge span is incomplete', async (t) => {
  let now = 1_000;
  const store = new TraceStore({ now: () => now });
  const { traceId, bySvc } = chain();
  const asStored = (service: string, s: SpanInput): StoredSpan => ({
    traceId: s.traceId,
    spanId: s.spanId,
    parentSpanId: s.parentSpanId ?? null,
    name: s.name,
    kind: 'server',
    serviceName: service,
    scope: '',
    startTimeUnixNano: s.startTimeUnixNano.toString(),
    endTimeUnixNano: s.endTimeUnixNano.toString(),
    status: { code: 'unset', message: '' },
    attributes: {},
    resource: {},
  });
  store.add((bySvc['orders'] ?? []).map((s) => asStored('orders', s)));
  let summary = store.list()[0];
  t.equal(summary?.complete, false, 'only the orders span: its parent is missing');
  t.equal(summary?.throughEdge, false);
  store.add((bySvc['edge'] ?? []).map((s) => asStored('edge', s)));
  summary = store.list()[0];
  t.equal(summary?.throughEdge, true, 'the edge span is the earliest top span');
  t.equal(summary?.complete, false, 'the sidecar span between them is still missing');
  now += 2500;
  store.add((bySvc['sidecar-orders'] ?? []).map((s) => asStored('sidecar-orders', s)));
  now += 700;
  summary = store.list()[0];
  t.equal(summary?.complete, true);
  t.equal(summary?.quietMs, 700, 'quiet since the last span arrived');
  t.equal(summary?.traceId, traceId);
});

t.test('GET /api/stats counts what was taken, per service, after the store let it go; counts only', async (t) => {
  const r = await receiver(t, { maxTraces: 1 });
  const empty = await getJson(`${r.url}/api/stats`);
  t.equal(empty.status, 200);
  t.same(empty.json, { exports: 0, spans: 0, rejected: 0, dropped: 0, evicted: 0, refused: 0, services: {} });

  const first = chain();
  const second = chain();
  for (const c of [first, second]) {
    for (const [service, spans] of Object.entries(c.bySvc)) {
      t.equal((await post(`${r.url}/v1/traces`, { headers: PROTOBUF, body: Buffer.from(encodeExportRequest(service, spans)) })).status, 200);
    }
  }
  // The same edge span again (dropped by the store), one invalid span (rejected), a body that does not decode (refused).
  const t0 = 1_700_000_000_000n * ms;
  const again = encodeExportRequest('edge', [...(second.bySvc['edge'] ?? []), { traceId: '00'.repeat(16), spanId: hex(8), name: 'zero trace id', startTimeUnixNano: t0, endTimeUnixNano: t0 }]);
  t.equal((await post(`${r.url}/v1/traces`, { headers: PROTOBUF, body: Buffer.from(again) })).status, 200);
  t.equal((await post(`${r.url}/v1/traces`, { headers: PROTOBUF, body: Buffer.from('not protobuf') })).status, 400);
  // A sender naming its service __proto__ is counted like any other name.
  const proto = chain();
  t.equal((await post(`${r.url}/v1/traces`, { headers: PROTOBUF, body: Buffer.from(encodeExportRequest('__proto__', proto.bySvc['orders'] ?? [])) })).status, 200);

  const stats = (await getJson(`${r.url}/api/stats`)).json;
  t.equal(r.store.size, 1, 'the store holds one trace');
  t.same(stats, {
    exports: 8,
    spans: 8,
    rejected: 1,
    dropped: 1,
    evicted: 2,
    refused: 1,
    services: { edge: { exports: 3, spans: 3 }, 'sidecar-orders': { exports: 2, spans: 2 }, orders: { exports: 2, spans: 2 }, ['__proto__']: { exports: 1, spans: 1 } },
  });
  t.ok(Object.hasOwn(stats.services, '__proto__'), '__proto__ is an own key, not a prototype');
  t.same(r.stats(), stats, 'the same figures in process');
  t.notMatch(JSON.stringify(stats), new RegExp(`${first.traceId}|${second.traceId}|edge /api/orders`), 'no trace id or span name');
});

t.test('GET /api/stats counts at most MAX_STATS_SERVICES names; the rest under (other)', async (t) => {
  const r = await receiver(t);
  const { traceId, bySvc } = chain();
  const span = bySvc['edge']?.[0] as SpanInput;
  for (let i = 0; i < MAX_STATS_SERVICES + 3; i++) {
    const body = encodeExportRequest(`svc-${i}`, [{ ...span, traceId, spanId: hex(8) }]);
    t.equal((await post(`${r.url}/v1/traces`, { headers: PROTOBUF, body: Buffer.from(body) })).status, 200);
  }
  const s = r.stats();
  t.equal(Object.keys(s.services).length, MAX_STATS_SERVICES + 1);
  t.same(s.services['(other)'], { exports: 3, spans: 3 });
  t.same(s.services['svc-0'], { exports: 1, spans: 1 });
  t.equal(s.spans, MAX_STATS_SERVICES + 3);
});

t.test('loopback only', async (t) => {
  await t.rejects(startOtlpReceiver({ port: 0, host: '0.0.0.0' }), /loopback only/);
  await t.rejects(startOtlpReceiver({ port: 0, host: '192.168.1.10' }), /loopback only/);
  const r = await receiver(t, { host: 'localhost' });
  t.match(r.url, /^http:\/\/127\.0\.0\.1:/);
});
