/**
 * Steady open-model load for the fault tests, on the load runner's scheduler
 * (`runOpenModel` from @jwt-mesh/loadtest: request i leaves at start + i / rate whatever happened
 * before, so a stall shows up in full instead of slowing the sender down).
 *
 * Every request is recorded (when it left and ended, relative to the start of the load; its
 * status or transport error), so a test can look at one window (e.g. "while Redis was down").
 * {@link figures} sums records up as the tables print them: requests sent, succeeded, failed by
 * status, and the longest gap between two successes.
 */
import { setMaxListeners } from 'node:events';
import { performance } from 'node:perf_hooks';
import { runOpenModel, type OpenModelResult, type Outcome } from '@jwt-mesh/loadtest';
import type { Answer } from './http.js';

/** One request of a load run. Times in milliseconds since the start of the load. */
export interface LoadRecord {
  seq: number;
  sentAt: number;
  endAt: number;
  status?: number;
  error?: string;
  ok: boolean;
  /** Free label set by the sender (e.g. which token or which path). */
  tag?: string;
  /** Part of the body of a failed answer, for the report. */
  detail?: string;
}

/** A running load. */
export interface Load {
  /** Milliseconds since the load started. */
  now(): number;
  readonly records: LoadRecord[];
  /** Resolves when every request has settled. */
  readonly done: Promise<OpenModelResult>;
}

/** What a sender returns: an {@link Answer} and an optional tag. */
export type Sent = Answer & { tag?: string };

/**
 * Starts a load in the background.
 * @param opts.ratePerSec - arrivals per second
 * @param opts.durationSec - arrival window, seconds
 * @param opts.send - sends request `seq`
 * @param opts.isOk - success test (default: 2xx)
 */
export function startLoad(opts: {
  ratePerSec: number;
  durationSec: number;
  send: (seq: number, signal: AbortSignal) => Promise<Sent>;
  isOk?: (a: Sent) => boolean;
  maxInFlight?: number;
  drainTimeoutMs?: number;
}): Load {
  const t0 = performance.now();
  const now = () => performance.now() - t0;
  const records: LoadRecord[] = [];
  const isOk = opts.isOk ?? ((a: Sent) => a.status !== undefined && a.status >= 200 && a.status < 300);
  const done = runOpenModel({
    ratePerSec: opts.ratePerSec,
    durationSec: opts.durationSec,
    maxInFlight: opts.maxInFlight ?? 512,
    drainTimeoutMs: opts.drainTimeoutMs ?? 15_000,
    async send(seq, signal): Promise<Outcome> {
      // One shared abort signal for every request of the run (aborted after the drain timeout).
      if (seq === 0) setMaxListeners(0, signal);
      const sentAt = now();
      const a = await opts.send(seq, signal);
      const ok = isOk(a);
      const rec: LoadRecord = { seq, sentAt, endAt: now(), ok };
      if (a.status !== undefined) rec.status = a.status;
      else rec.error = a.error;
      if (a.tag !== undefined) rec.tag = a.tag;
      if (!ok) rec.detail = a.status !== undefined ? a.body.slice(0, 160) : (a.detail ?? '');
      records.push(rec);
      return a.status !== undefined ? { status: ok ? 200 : a.status === 200 ? 599 : a.status } : { error: a.error };
    },
  });
  return { now, records, done };
}

/** The figures of one table row. */
export interface Figures {
  sent: number;
  succeeded: number;
  /** Failures by status (`"503"`) or transport error (`"ECONNRESET"`). */
  failedBy: Record<string, number>;
  failed: number;
  /** Longest time between two consecutive successful completions (and from `from` to the first), ms. */
  longestGapMs: number;
}

/**
 * Sums up the records sent in [from, to) (milliseconds since the start of the load).
 */
export function figures(records: readonly LoadRecord[], from = 0, to = Number.POSITIVE_INFINITY): Figures {
  const inWindow = records.filter((r) => r.sentAt >= from && r.sentAt < to);
  const failedBy: Record<string, number> = {};
  let succeeded = 0;
  const ends: number[] = [];
  for (const r of inWindow) {
    if (r.ok) {
      succeeded++;
      ends.push(r.endAt);
    } else {
      const k = r.status !== undefined ? String(r.status) : (r.error ?? 'error');
      failedBy[k] = (failedBy[k] ?? 0) + 1;
    }
  }
  ends.sort((a, b) => a - b);
  const start = inWindow.length ? Math.min(...inWindow.map((r) => r.sentAt)) : 0;
  let gap = 0;
  let prev = start;
  for (const e of ends) {
    gap = Math.max(gap, e - prev);
    prev = e;
  }
  const lastSent = inWindow.length ? Math.max(...inWindow.map((r) => r.sentAt)) : 0;
  if (lastSent > prev) gap = Math.max(gap, lastSent - prev);
  return { sent: inWindow.length, succeeded, failedBy, failed: inWindow.length - succeeded, longestGapMs: Math.round(gap) };
}

/** `{"503": 2, "ECONNRESET": 1}` as `503: 2, ECONNRESET: 1` (or `none`). */
export function formatFailed(failedBy: Record<string, number>): string {
  const parts = Object.entries(failedBy).sort(([a], [b]) => a.localeCompare(b));
  return parts.length ? parts.map(([k, v]) => `${k}: ${v}`).join(', ') : 'none';
}

/** A markdown table from rows of the same keys. */
export function markdownTable(rows: ReadonlyArray<Record<string, string | number>>): string {
  if (rows.length === 0) return '(no rows)';
  const cols = Object.keys(rows[0] as Record<string, unknown>);
  const cell = (v: unknown) => String(v).replace(/\|/g, '\\|');
  const widths = cols.map((c) => Math.max(c.length, ...rows.map((r) => cell(r[c]).length)));
  const line = (vals: string[]) => `| ${vals.map((v, i) => v.padEnd(widths[i] as number)).join(' | ')} |`;
  return [line(cols), line(widths.map((w) => '-'.repeat(w))), ...rows.map((r) => line(cols.map((c) => cell(r[c]))))].join('\n');
}

/** A table row for a phase of a fault run. */
export function phaseRow(phase: string, f: Figures): Record<string, string | number> {
  return {
    phase,
    sent: f.sent,
    succeeded: f.succeeded,
    'failed (by status)': formatFailed(f.failedBy),
    'longest gap between successes (ms)': f.longestGapMs,
  };
}
