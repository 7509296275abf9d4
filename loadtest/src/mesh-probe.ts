/**
 * What the mesh did during a k6 run, read from the mesh itself (for `make loadtest-10k`'s report):
 *
 * - every verifier's and the auth-service's Prometheus `/metrics` text, before and after;
 * - Redis `INFO commandstats` (calls per command), before and after (ioredis, as the issuer's ACL
 *   user when the stack runs Redis with ACL users; nothing is written to Redis);
 * - CPU milliseconds per process (`/proc/<pid>/stat`, utime + stime) before and after, and the
 *   peak resident set size (`VmRSS` of `/proc/<pid>/status`) sampled during the run.
 *
 * Processes come from the stack's state file (`.run/stack.json` of `make up`), plus k6.
 */
import { readFileSync } from 'node:fs';
import { redisClientOptions } from '@jwt-mesh/core/redis';
import type { RedisConnectionOptions } from '@jwt-mesh/core';
import { Redis } from 'ioredis';
import { cpuSnapshot, type Accounted } from './bench/procstat.js';

/** A process to watch: its part name and pid. */
export interface Watched {
  readonly name: string;
  readonly pid: number;
}

/** Resident set size of `pid` in bytes (`VmRSS`), or 0 when the process is gone. */
export function rssBytes(pid: number): number {
  try {
    const m = /^VmRSS:\s+(\d+)\s+kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** CPU milliseconds used so far by each watched process (utime + stime; 0 for a process that is gone). */
export function cpuMs(procs: readonly Watched[]): Record<string, number> {
  const snap = cpuSnapshot(procs.map((p): Accounted => ({ name: p.name, pid: p.pid })));
  delete snap.generator; // the probing Node process itself is not part of the run
  return snap;
}

/**
 * Samples every watched process every `intervalMs` until `stop()`: the resident set size (for
 * its peak) and the CPU milliseconds used so far (the last value seen, so that the CPU of a
 * process that ends before the final reading, such as k6, is still known).
 * @returns `stop()`, which gives the peak RSS in bytes and the last CPU ms per process name.
 */
export function sampleProcesses(procs: () => readonly Watched[], intervalMs = 1000): { stop(): { peakRssBytes: Record<string, number>; lastCpuMs: Record<string, number> } } {
  const peak: Record<string, number> = {};
  const lastCpu: Record<string, number> = {};
  const sample = () => {
    const list = procs();
    for (const p of list) peak[p.name] = Math.max(peak[p.name] ?? 0, rssBytes(p.pid));
    for (const [name, ms] of Object.entries(cpuMs(list))) if (ms > 0) lastCpu[name] = ms;
  };
  sample();
  const timer = setInterval(sample, intervalMs);
  return {
    stop() {
      clearInterval(timer);
      sample();
      return { peakRssBytes: { ...peak }, lastCpuMs: { ...lastCpu } };
    },
  };
}

/**
 * Calls per command from Redis `INFO commandstats` (`cmdstat_get:calls=12,...` -> `{ get: 12 }`),
 * read with ioredis (nothing is written to Redis).
 *
 * @param url - `redis://` or `rediss://` URL (a user and password in it are used)
 * @param connection - the ACL user to read as when the URL carries none (`make up`'s Redis
 *   refuses its `default` user: pass the issuer's, whose rules allow `INFO`)
 * @param timeoutMs - connect and command deadline, milliseconds
 * @throws Error when Redis cannot be reached within `timeoutMs` or answers an error (e.g. NOPERM)
 */
export async function redisCommandCalls(url: string, connection: RedisConnectionOptions = {}, timeoutMs = 5000): Promise<Record<string, number>> {
  const redis = new Redis(url, {
    ...redisClientOptions(url, connection),
    lazyConnect: true,
    connectTimeout: timeoutMs,
    commandTimeout: timeoutMs,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  });
  // ioredis closes a connection whose ready check Redis refuses, and the command then only says
  // "Connection is closed": keep Redis's own answer (NOAUTH, WRONGPASS, NOPERM) for the error.
  let cause: Error | undefined;
  redis.on('error', (err: Error) => (cause ??= err));
  try {
    await redis.connect();
    const text = await redis.info('commandstats');
    const calls: Record<string, number> = {};
    for (const m of text.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) calls[m[1] as string] = Number(m[2]);
    return calls;
  } catch (err) {
    const host = new URL(url).host;
    throw new Error(`redis ${host}: INFO commandstats failed: ${(cause ?? (err as Error)).message}`, { cause: cause ?? err });
  } finally {
    redis.disconnect();
  }
}

/** `GET url` of a Prometheus text endpoint; null when it does not answer 200 within `timeoutMs`. */
export async function scrapeMetrics(url: string, timeoutMs = 5000): Promise<string | null> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    return res.status === 200 ? await res.text() : null;
  } catch {
    return null;
  }
}

/**
 * Sum of the samples of metric `name` in Prometheus text whose labels include every pair of
 * `labels` (e.g. `{ result: 'hit' }`). @returns undefined when no sample of that name exists.
 */
export function metricSum(text: string, name: string, labels: Readonly<Record<string, string>> = {}): number | undefined {
  let sum: number | undefined;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (!m || m[1] !== name) continue;
    const have: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) have[l[1] as string] = l[2] as string;
    if (!Object.entries(labels).every(([k, v]) => have[k] === v)) continue;
    const v = Number(m[3]);
    if (Number.isFinite(v)) sum = (sum ?? 0) + v;
  }
  return sum;
}

/** Everything read from the mesh at one instant. */
export interface MeshSnapshot {
  /** Epoch milliseconds. */
  readonly at: number;
  /** CPU ms per process name. */
  readonly cpuMs: Record<string, number>;
  /** Redis calls per command (empty when Redis did not answer). */
  readonly redisCalls: Record<string, number>;
  /** `/metrics` text per scraped component (null when it did not answer). */
  readonly metrics: Record<string, string | null>;
}

/** Reads one {@link MeshSnapshot}: CPU, Redis commandstats, and every `/metrics` URL of `metricsUrls`. */
export async function meshSnapshot(
  procs: readonly Watched[],
  redisUrl: string,
  metricsUrls: Readonly<Record<string, string>>,
  redisConnection: RedisConnectionOptions = {},
): Promise<MeshSnapshot> {
  const entries = await Promise.all(Object.entries(metricsUrls).map(async ([name, url]) => [name, await scrapeMetrics(url)] as const));
  let redisCalls: Record<string, number> = {};
  try {
    redisCalls = await redisCommandCalls(redisUrl, redisConnection);
  } catch {
    redisCalls = {};
  }
  return { at: Date.now(), cpuMs: cpuMs(procs), redisCalls, metrics: Object.fromEntries(entries) };
}
