/**
 * One trace as a text waterfall (what `make trace` prints): one line per span, indented under its
 * parent, with the service name, the span name, the start offset from the trace's first span and
 * the duration (milliseconds), a bar placing the span on the trace's time line, and a few
 * attributes worth seeing at a glance (the verifiers' cache hit and outcome, HTTP status codes).
 *
 *   trace 4bf92f3577b34da6a3ce929d0e0e4736: 14 spans, 7 services, 38.20 ms
 *   service / span                              start ms    dur ms
 *   edge  edge /api/orders                          0.00     38.20 |████████████████████████████████████████|
 *     edge  async envoy.service.auth.v3...          0.31      4.02 |████                                    |
 */
import type { AttributeValue, StoredSpan } from './otlp.js';

/** Options of {@link formatWaterfall}. */
export interface WaterfallOptions {
  /** Characters of the time-line bar. Default 40. */
  barWidth?: number;
  /** Widest service-and-name column before it is cut with `…`. Default 80. */
  maxLabelWidth?: number;
  /** Attribute keys printed after the bar (`key=value`) when a span has them. Default {@link WATERFALL_ATTRIBUTES}. */
  attributes?: readonly string[];
}

/** Attributes the waterfall shows by default: the verifiers' cache hit and outcome, the response status. */
export const WATERFALL_ATTRIBUTES = [
  'jwt_mesh.verified_cache.hit',
  'jwt_mesh.outcome',
  'http.response.status_code',
  'http.status_code',
  'rpc.grpc.status_code',
] as const;

interface Node {
  span: StoredSpan;
  depth: number;
  orphan: boolean;
}

function ns(v: string): bigint {
  return BigInt(v);
}

function ms(nanos: bigint): string {
  return (Number(nanos) / 1e6).toFixed(2);
}

function show(v: AttributeValue): string {
  return typeof v === 'string' ? v : JSON.stringify(v);
}

function cut(text: string, width: number): string {
  return text.length <= width ? text.padEnd(width) : `${text.slice(0, width - 1)}…`;
}

/**
 * The spans in tree order: each top span (no parent, or a parent not in `spans`) by start time,
 * then its children by start time, depth first. A span caught in a parent cycle is listed as a
 * top span.
 */
export function treeOrder(spans: readonly StoredSpan[]): Array<{ span: StoredSpan; depth: number; orphan: boolean }> {
  const byStart = (a: StoredSpan, b: StoredSpan) => {
    const d = ns(a.startTimeUnixNano) - ns(b.startTimeUnixNano);
    return d > 0n ? 1 : d < 0n ? -1 : a.spanId < b.spanId ? -1 : 1;
  };
  const ids = new Set(spans.map((s) => s.spanId));
  const children = new Map<string, StoredSpan[]>();
  for (const s of spans) {
    if (s.parentSpanId !== null && ids.has(s.parentSpanId)) {
      const list = children.get(s.parentSpanId) ?? [];
      list.push(s);
      children.set(s.parentSpanId, list);
    }
  }
  const out: Node[] = [];
  const seen = new Set<string>();
  const visit = (span: StoredSpan, depth: number, orphan: boolean) => {
    if (seen.has(span.spanId)) return;
    seen.add(span.spanId);
    out.push({ span, depth, orphan });
    for (const c of (children.get(span.spanId) ?? []).sort(byStart)) visit(c, depth + 1, false);
  };
  const tops = spans.filter((s) => s.parentSpanId === null || !ids.has(s.parentSpanId)).sort(byStart);
  tops.forEach((s, i) => visit(s, 0, i > 0 && s.parentSpanId !== null));
  for (const s of [...spans].sort(byStart)) visit(s, 0, true); // cycles: whatever no top reached
  return out;
}

/**
 * Formats one trace's spans as a waterfall (see the module comment). Lines end with `\n`.
 * @param spans the spans of one trace (any order); an empty list gives a one-line note.
 */
export function formatWaterfall(spans: readonly StoredSpan[], opts: WaterfallOptions = {}): string {
  if (spans.length === 0) return 'no spans\n';
  const barWidth = opts.barWidth ?? 40;
  const maxLabel = opts.maxLabelWidth ?? 80;
  const keys = opts.attributes ?? WATERFALL_ATTRIBUTES;
  const nodes = treeOrder(spans);
  let t0 = ns((spans[0] as StoredSpan).startTimeUnixNano);
  let t1 = 0n;
  for (const s of spans) {
    if (ns(s.startTimeUnixNano) < t0) t0 = ns(s.startTimeUnixNano);
    if (ns(s.endTimeUnixNano) > t1) t1 = ns(s.endTimeUnixNano);
  }
  const total = t1 > t0 ? t1 - t0 : 0n;
  const services = new Set(spans.map((s) => s.serviceName));
  const labels = nodes.map(
    (n) => `${'  '.repeat(n.depth)}${n.span.serviceName}  ${n.span.name}${n.span.status.code === 'error' ? ' [error]' : ''}${n.orphan ? ' (parent not received)' : ''}`,
  );
  const labelWidth = Math.min(maxLabel, Math.max('service / span'.length, ...labels.map((l) => l.length)));
  const lines = [
    `trace ${(spans[0] as StoredSpan).traceId}: ${spans.length} span${spans.length === 1 ? '' : 's'}, ${services.size} service${services.size === 1 ? '' : 's'}, ${ms(total)} ms`,
    `${'service / span'.padEnd(labelWidth)}  ${'start ms'.padStart(9)} ${'dur ms'.padStart(9)}`,
  ];
  nodes.forEach((n, i) => {
    const start = ns(n.span.startTimeUnixNano) - t0;
    const dur = ns(n.span.endTimeUnixNano) - ns(n.span.startTimeUnixNano);
    let from = total === 0n ? 0 : Math.floor((Number(start) / Number(total)) * barWidth);
    from = Math.min(from, barWidth - 1);
    const to = total === 0n ? barWidth : Math.ceil((Number(start + dur) / Number(total)) * barWidth);
    const len = Math.max(1, Math.min(barWidth, to) - from);
    const bar = `${' '.repeat(from)}${'█'.repeat(len)}`.padEnd(barWidth);
    const attrs = keys
      .filter((k) => n.span.attributes[k] !== undefined)
      .map((k) => `${k}=${show(n.span.attributes[k] as AttributeValue)}`)
      .join(' ');
    lines.push(`${cut(labels[i] as string, labelWidth)}  ${ms(start).padStart(9)} ${ms(dur).padStart(9)} |${bar}|${attrs ? ` ${attrs}` : ''}`);
  });
  return `${lines.join('\n')}\n`;
}
