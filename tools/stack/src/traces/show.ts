/**
 * `make trace`: reads the built-in receiver's API (./receiver.ts) and prints one trace as a
 * waterfall (./waterfall.ts): the one asked for, or by default the latest complete one that reached a
 * service behind the edge ({@link pickTrace}), waiting briefly for spans still in the processes' export queues (the proxies
 * and the Node processes flush about once a second under `make up`).
 */
import { request as httpRequest } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import type { StoredSpan } from './otlp.js';
import { EDGE_SERVICE, type TraceSummary } from './store.js';
import { formatWaterfall, type WaterfallOptions } from './waterfall.js';

/** The service name the authz-service gives its spans (authz-service/src/main.ts, unless `OTEL_SERVICE_NAME` overrides it). */
const AUTHZ_SERVICE = 'authz-service';

/** Options of {@link showTrace}. */
export interface ShowTraceOptions {
  /** The receiver's base URL (`http://127.0.0.1:4318`). */
  receiver: string;
  /** The trace to show (32 hex digits). Default: {@link pickTrace}'s choice, the latest complete API call. */
  traceId?: string;
  /** How long to wait for the trace to appear and settle, milliseconds. Default 6000. */
  waitMs?: number;
  /** A trace has settled when no span of it arrived for this long, milliseconds. Default 1500. */
  settleMs?: number;
  /** Passed to {@link formatWaterfall}. */
  waterfall?: WaterfallOptions;
}

function getJson<T>(url: string, timeoutMs = 5000): Promise<{ status: number; body: T | string }> {
  return new Promise((resolveGet, reject) => {
    const req = httpRequest(url, { method: 'GET', agent: false, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        const status = res.statusCode ?? 0;
        try {
          resolveGet({ status, body: status === 200 ? (JSON.parse(text) as T) : text.trim() });
        } catch {
          resolveGet({ status, body: text.trim() });
        }
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

/**
 * The traces the receiver holds, newest first.
 * @throws Error naming the receiver when it does not answer or answers with an error.
 */
export async function fetchTraces(receiver: string): Promise<TraceSummary[]> {
  let r: { status: number; body: { traces: TraceSummary[] } | string };
  try {
    r = await getJson<{ traces: TraceSummary[] }>(`${receiver}/api/traces`);
  } catch (err) {
    throw new Error(`the trace receiver at ${receiver} does not answer (${(err as Error).message}); is the stack running with TRACING=on? (make ps)`);
  }
  if (r.status !== 200 || typeof r.body === 'string') throw new Error(`the trace receiver at ${receiver} answered ${r.status}: ${String(r.body)}`);
  return r.body.traces;
}

/**
 * The trace `make trace` shows without a trace id, from the receiver's list (newest first): the
 * newest structurally complete trace through the edge that reached a service behind it (a span of
 * a process other than the edge and authz-service), so that a later `GET /healthz`, which stops at
 * the edge, does not hide the last API call; else the newest complete one through the edge, else
 * the newest through the edge, else the newest; null when there is none.
 */
export function pickTrace(traces: readonly TraceSummary[]): TraceSummary | null {
  const reachedService = (x: TraceSummary): boolean => x.services.some((s) => s !== EDGE_SERVICE && s !== AUTHZ_SERVICE);
  return (
    traces.find((x) => x.complete && reachedService(x)) ??
    traces.find((x) => x.complete) ??
    traces.find((x) => x.throughEdge) ??
    traces[0] ??
    null
  );
}

/**
 * Picks a trace, waits for it to settle, and formats it.
 * @returns the trace id, whether it was complete (see {@link TraceSummary.complete}), and the text.
 * @throws Error when the receiver does not answer, holds no trace, or does not hold `traceId`.
 */
export async function showTrace(opts: ShowTraceOptions): Promise<{ traceId: string; complete: boolean; text: string }> {
  const waitMs = opts.waitMs ?? 6000;
  const settleMs = opts.settleMs ?? 1500;
  const wanted = opts.traceId?.toLowerCase();
  if (wanted !== undefined && !/^[0-9a-f]{32}$/.test(wanted)) throw new Error(`TRACE_ID must be 32 hex digits (a W3C trace-id), got ${JSON.stringify(opts.traceId)}`);
  const deadline = Date.now() + waitMs;
  let traces: TraceSummary[] = [];
  let chosen: TraceSummary | null = null;
  for (;;) {
    traces = await fetchTraces(opts.receiver);
    chosen = wanted ? (traces.find((x) => x.traceId === wanted) ?? null) : pickTrace(traces);
    const settled = chosen !== null && chosen.quietMs >= settleMs && (wanted !== undefined || chosen.complete);
    if (settled || Date.now() >= deadline) break;
    await sleep(250);
  }
  if (!chosen) {
    if (wanted) throw new Error(`the receiver holds no trace ${wanted} (it keeps the most recent traces; ${traces.length} held)`);
    throw new Error('the receiver holds no trace yet: send a request through the edge (make demo), then make trace');
  }
  const r = await getJson<{ traceId: string; spans: StoredSpan[] }>(`${opts.receiver}/api/traces/${chosen.traceId}`);
  if (r.status !== 200 || typeof r.body === 'string') throw new Error(`the trace receiver answered ${r.status} for trace ${chosen.traceId}: ${String(r.body)}`);
  let text = formatWaterfall(r.body.spans, opts.waterfall);
  if (!chosen.complete) {
    text += chosen.throughEdge
      ? 'note: some spans of this trace have not arrived (a parent is missing); run make trace again in a moment\n'
      : 'note: this trace did not come through the edge (no edge span at its top)\n';
  }
  return { traceId: chosen.traceId, complete: chosen.complete, text };
}
