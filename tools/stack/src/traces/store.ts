/**
 * The receiver's memory: the spans of the last N traces, grouped by trace id. Bounded twice: at
 * most `maxTraces` traces (the one updated longest ago is dropped first) and at most
 * `maxSpansPerTrace` spans in one trace (later ones are counted and dropped), so a busy or
 * hostile sender cannot grow it without limit.
 */
import type { StoredSpan } from './otlp.js';

/** Options of {@link TraceStore}. */
export interface TraceStoreOptions {
  /** Traces kept; the least recently updated one is dropped beyond it. Default 200. */
  maxTraces?: number;
  /** Spans kept per trace; later spans of a full trace are dropped (and counted). Default 2000. */
  maxSpansPerTrace?: number;
  /** Clock, milliseconds since the epoch (tests). Default `Date.now`. */
  now?: () => number;
}

/** One trace as listed by {@link TraceStore.list}. */
export interface TraceSummary {
  traceId: string;
  spanCount: number;
  /** Service names in the order their first span starts. */
  services: string[];
  /**
   * The trace's top span: the earliest-starting span whose parent is not in the trace (the
   * edge's span when the request came through the edge), or null for an empty trace.
   */
  root: { serviceName: string; name: string; spanId: string } | null;
  /** Start of the earliest span, Unix epoch nanoseconds (decimal). */
  startTimeUnixNano: string;
  /** From the earliest start to the latest end, milliseconds. */
  durationMs: number;
  /** The top span is the edge proxy's (service `edge`). */
  throughEdge: boolean;
  /**
   * Structurally complete: exactly one span has no parent in the trace, and it is the edge's.
   * Spans still in flight in some process's export queue would leave a hole (a span whose parent
   * is missing) or lack the edge's span, which ends last.
   */
  complete: boolean;
  /** When the trace's last span arrived (ISO 8601). */
  lastReceivedAt: string;
  /** Milliseconds since then. */
  quietMs: number;
  /** Spans dropped because the trace had {@link TraceStoreOptions.maxSpansPerTrace}. */
  droppedSpans: number;
}

interface Entry {
  spans: Map<string, StoredSpan>;
  lastReceivedAt: number;
  dropped: number;
}

/** The service name the edge proxy's spans carry (`service_name` of its tracer, envoy/src/render.ts). */
export const EDGE_SERVICE = 'edge';

/** What {@link TraceStore.add} did. */
export interface AddResult {
  /** Spans stored. */
  stored: number;
  /** Spans not stored: their trace was full, or a span with the same id was already there. */
  dropped: number;
  /** Traces evicted to make room. */
  evicted: number;
}

/** Bounded in-memory span store. Not shared between processes. */
export class TraceStore {
  readonly maxTraces: number;
  readonly maxSpansPerTrace: number;
  private readonly now: () => number;
  /** Insertion order = update order: the first key is the least recently updated trace. */
  private readonly traces = new Map<string, Entry>();

  /** @throws RangeError when a limit is not a positive integer. */
  constructor(opts: TraceStoreOptions = {}) {
    this.maxTraces = opts.maxTraces ?? 200;
    this.maxSpansPerTrace = opts.maxSpansPerTrace ?? 2000;
    this.now = opts.now ?? Date.now;
    for (const [name, v] of [['maxTraces', this.maxTraces], ['maxSpansPerTrace', this.maxSpansPerTrace]] as const) {
      if (!Number.isInteger(v) || v < 1) throw new RangeError(`TraceStore: ${name} must be a positive integer (got ${v})`);
    }
  }

  /** Number of traces held. */
  get size(): number {
    return this.traces.size;
  }

  /** Stores spans (any mix of traces); a span id already stored in its trace is ignored. */
  add(spans: readonly StoredSpan[]): AddResult {
    const result: AddResult = { stored: 0, dropped: 0, evicted: 0 };
    const at = this.now();
    for (const span of spans) {
      let entry = this.traces.get(span.traceId);
      if (entry) {
        this.traces.delete(span.traceId); // re-inserted below: most recently updated last
      } else {
        while (this.traces.size >= this.maxTraces) {
          const oldest = this.traces.keys().next().value as string;
          this.traces.delete(oldest);
          result.evicted += 1;
        }
        entry = { spans: new Map(), lastReceivedAt: at, dropped: 0 };
      }
      this.traces.set(span.traceId, entry);
      entry.lastReceivedAt = at;
      if (entry.spans.has(span.spanId) || entry.spans.size >= this.maxSpansPerTrace) {
        if (!entry.spans.has(span.spanId)) entry.dropped += 1;
        result.dropped += 1;
        continue;
      }
      entry.spans.set(span.spanId, span);
      result.stored += 1;
    }
    return result;
  }

  /** The spans of one trace, by start time; undefined when the trace is not held. */
  get(traceId: string): StoredSpan[] | undefined {
    const entry = this.traces.get(traceId);
    return entry ? [...entry.spans.values()].sort(byStart) : undefined;
  }

  /** Every trace held, the most recently started first. */
  list(): TraceSummary[] {
    const now = this.now();
    const out: TraceSummary[] = [];
    for (const [traceId, entry] of this.traces) out.push(summarize(traceId, [...entry.spans.values()], entry, now));
    return out.sort((a, b) => (BigInt(b.startTimeUnixNano) > BigInt(a.startTimeUnixNano) ? 1 : BigInt(b.startTimeUnixNano) < BigInt(a.startTimeUnixNano) ? -1 : 0));
  }

  /** Forgets every trace. */
  clear(): void {
    this.traces.clear();
  }
}

function byStart(a: StoredSpan, b: StoredSpan): number {
  const d = BigInt(a.startTimeUnixNano) - BigInt(b.startTimeUnixNano);
  return d > 0n ? 1 : d < 0n ? -1 : 0;
}

/** The spans of a trace whose parent is not among them (the tops of the tree), earliest first. */
export function topSpans(spans: readonly StoredSpan[]): StoredSpan[] {
  const ids = new Set(spans.map((s) => s.spanId));
  return spans.filter((s) => s.parentSpanId === null || !ids.has(s.parentSpanId)).sort(byStart);
}

function summarize(traceId: string, spans: StoredSpan[], entry: Entry, now: number): TraceSummary {
  const sorted = [...spans].sort(byStart);
  const tops = topSpans(sorted);
  const first = sorted[0];
  let end = 0n;
  for (const s of sorted) if (BigInt(s.endTimeUnixNano) > end) end = BigInt(s.endTimeUnixNano);
  const start = first ? BigInt(first.startTimeUnixNano) : 0n;
  const services: string[] = [];
  for (const s of sorted) if (!services.includes(s.serviceName)) services.push(s.serviceName);
  const top = tops[0];
  const throughEdge = top?.serviceName === EDGE_SERVICE;
  return {
    traceId,
    spanCount: sorted.length,
    services,
    root: top ? { serviceName: top.serviceName, name: top.name, spanId: top.spanId } : null,
    startTimeUnixNano: start.toString(),
    durationMs: first ? Number(end - start) / 1e6 : 0,
    throughEdge,
    complete: throughEdge && tops.length === 1,
    lastReceivedAt: new Date(entry.lastReceivedAt).toISOString(),
    quietMs: Math.max(0, now - entry.lastReceivedAt),
    droppedSpans: entry.dropped,
  };
}
