/**
 * The waterfall `make trace` prints (src/traces/waterfall.ts): one line per span, indented under
 * its parent, children by start time, start offset and duration in milliseconds, a bar placed on
 * the trace's time line, the attributes worth a glance; and pickTrace's default choice.
 */
import t from 'tap';
import type { StoredSpan } from '../src/traces/otlp.js';
import { pickTrace } from '../src/traces/show.js';
import type { TraceSummary } from '../src/traces/store.js';
import { formatWaterfall, treeOrder } from '../src/traces/waterfall.js';

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const T0 = 1_700_000_000_000_000_000n;

/** A span starting `startMs` after T0 and lasting `durMs`. */
function span(id: string, parent: string | null, service: string, name: string, startMs: number, durMs: number, extra: Partial<StoredSpan> = {}): StoredSpan {
  const start = T0 + BigInt(Math.round(startMs * 1e6));
  return {
    traceId: TRACE,
    spanId: id.padStart(16, '0'),
    parentSpanId: parent === null ? null : parent.padStart(16, '0'),
    name,
    kind: 'server',
    serviceName: service,
    scope: '',
    startTimeUnixNano: start.toString(),
    endTimeUnixNano: (start + BigInt(Math.round(durMs * 1e6))).toString(),
    status: { code: 'unset', message: '' },
    attributes: {},
    resource: { 'service.name': service },
    ...extra,
  };
}

// Given out of order on purpose: the formatter sorts.
const spans: StoredSpan[] = [
  span('5', '4', 'orders', 'GET /api/orders/:id', 3, 14, { attributes: { 'jwt_mesh.verified_cache.hit': true, 'jwt_mesh.outcome': 'ok', 'internal.detail': 'x' } }),
  span('2', '1', 'edge', 'async envoy.service.auth.v3.Authorization.Check egress', 0.5, 1.5),
  span('1', null, 'edge', 'edge /api/orders', 0, 20, { attributes: { 'http.status_code': '200' } }),
  span('3', '2', 'authz-service', 'Check', 0.75, 1),
  span('4', '1', 'sidecar-orders', 'inbound orders', 2, 16),
  span('6', '5', 'orders', 'verify', 3.5, 0, { status: { code: 'error', message: 'denied' } }),
];

t.test('tree order: depth first, children by start time', async (t) => {
  t.same(
    treeOrder(spans).map((n) => `${n.depth}:${n.span.spanId.replace(/^0+/, '')}`),
    ['0:1', '1:2', '2:3', '1:4', '2:5', '3:6'],
  );
});

t.test('the waterfall: header, indentation by parent, offsets and durations in ms, bars, attributes', async (t) => {
  const text = formatWaterfall(spans, { barWidth: 20 });
  const lines = text.trimEnd().split('\n');
  t.equal(lines[0], `trace ${TRACE}: 6 spans, 4 services, 20.00 ms`);
  t.match(lines[1], /^service \/ span\s+start ms\s+dur ms$/);
  const rows = lines.slice(2);
  t.equal(rows.length, 6, 'one line per span');
  t.match(rows[0], /^edge {2}edge \/api\/orders\s+0\.00\s+20\.00 \|█{20}\| http\.status_code=200$/, 'the root spans the whole bar');
  t.match(rows[1], /^ {2}edge {2}async envoy\.service\.auth\.v3\.Authorization\.Check egress\s+0\.50\s+1\.50 \|█{2} {18}\|$/, 'the ext_authz call, one level in');
  t.match(rows[2], /^ {4}authz-service {2}Check\s+0\.75\s+1\.00 \|█{2} {18}\|$/, 'the Check span under it');
  t.match(rows[3], /^ {2}sidecar-orders {2}inbound orders\s+2\.00\s+16\.00 \|( {2})█{16}( {2})\|$/, 'the sidecar from 10 % to 90 % of the bar');
  t.match(rows[4], /^ {4}orders {2}GET \/api\/orders\/:id\s+3\.00\s+14\.00 \| {3}█{14} {3}\| jwt_mesh\.verified_cache\.hit=true jwt_mesh\.outcome=ok$/, 'the cache hit and outcome shown, other attributes not');
  t.match(rows[5], /^ {6}orders {2}verify \[error\]\s+3\.50\s+0\.00 \| {3}█ {16}\|$/, 'a zero-length span still gets one cell; errors are marked');
  const columns = rows.map((r) => r.indexOf('|'));
  t.equal(new Set(columns).size, 1, 'the bars line up');
});

t.test('spans whose parent never arrived are listed at the top level and marked', async (t) => {
  const partial = spans.filter((s) => s.spanId.replace(/^0+/, '') !== '4');
  const order = treeOrder(partial);
  t.same(order.map((n) => `${n.depth}:${n.span.spanId.replace(/^0+/, '')}:${n.orphan}`), ['0:1:false', '1:2:false', '2:3:false', '0:5:true', '1:6:false']);
  t.match(formatWaterfall(partial), /orders {2}GET \/api\/orders\/:id \(parent not received\)/);
  t.equal(formatWaterfall([]), 'no spans\n');
  const long = formatWaterfall([span('1', null, 'edge', 'x'.repeat(200), 0, 1)], { maxLabelWidth: 30 });
  t.match(long, /^edge {2}x{23}… /m, 'a long name is cut to the label width');
});

t.test('pickTrace: the newest complete trace through the edge, else the newest through the edge, else the newest', async (t) => {
  const s = (id: string, complete: boolean, throughEdge: boolean): TraceSummary => ({
    traceId: id,
    spanCount: 1,
    services: [],
    root: null,
    startTimeUnixNano: '0',
    durationMs: 0,
    throughEdge,
    complete,
    lastReceivedAt: '',
    quietMs: 0,
    droppedSpans: 0,
  });
  // Newest first, as the receiver lists them.
  t.equal(pickTrace([s('a', false, false), s('b', false, true), s('c', true, true), s('d', true, true)])?.traceId, 'c');
  t.equal(pickTrace([s('a', false, false), s('b', false, true)])?.traceId, 'b');
  t.equal(pickTrace([s('a', false, false)])?.traceId, 'a');
  t.equal(pickTrace([]), null);
});

t.test('pickTrace: a complete trace that reached a service behind the edge wins over a newer one that stopped at the edge', async (t) => {
  const s = (id: string, services: string[]): TraceSummary => ({
    traceId: id,
    spanCount: services.length,
    services,
    root: null,
    startTimeUnixNano: '0',
    durationMs: 0,
    throughEdge: true,
    complete: true,
    lastReceivedAt: '',
    quietMs: 0,
    droppedSpans: 0,
  });
  // A GET /healthz through the edge after the chain call: edge + authz only, and newer.
  const health = s('h', ['edge', 'authz-service']);
  const chain = s('c', ['edge', 'authz-service', 'sidecar-orders', 'orders']);
  t.equal(pickTrace([health, chain])?.traceId, 'c', 'the chain call, not the newer /healthz');
  t.equal(pickTrace([health])?.traceId, 'h', 'with no such trace, the newest complete one');
});
