/**
 * CPU time of processes from Linux `/proc/<pid>/stat` (utime + stime, every thread of the
 * process), to tell how much CPU each part of the path spends per request during a benchmark
 * step. Resolution: one clock tick (`getconf CLK_TCK`, 100 Hz on Linux, so 10 ms); over a
 * multi-second step that is well under 1 % of the figures reported.
 */
import { readdirSync, readFileSync } from 'node:fs';

/** Clock ticks per second of /proc times (USER_HZ; 100 on every mainstream Linux build). */
export const CLOCK_TICKS_PER_SEC = 100;

/**
 * Parses one `/proc/<pid>/stat` line.
 * @returns `{ pgrp, cpuMs }` (process group and utime+stime in milliseconds), or null when the line
 *   is not in the expected format.
 */
export function parseProcStat(line: string): { pgrp: number; cpuMs: number } | null {
  // Field 2 (comm) is parenthesised and may contain spaces or ')': split after the LAST ')'.
  const close = line.lastIndexOf(')');
  if (close < 0) return null;
  const rest = line.slice(close + 2).split(' ');
  // rest[0] is field 3 (state); pgrp is field 5, utime field 14, stime field 15.
  const pgrp = Number(rest[2]);
  const utime = Number(rest[11]);
  const stime = Number(rest[12]);
  if (!Number.isFinite(pgrp) || !Number.isFinite(utime) || !Number.isFinite(stime)) return null;
  return { pgrp, cpuMs: ((utime + stime) * 1000) / CLOCK_TICKS_PER_SEC };
}

/** CPU milliseconds used so far by process `pid` (0 when it is gone or /proc is not there). */
export function cpuMsOfPid(pid: number): number {
  try {
    return parseProcStat(readFileSync(`/proc/${pid}/stat`, 'utf8'))?.cpuMs ?? 0;
  } catch {
    return 0;
  }
}

/** CPU milliseconds used so far by every live process of process group `pgid`. */
export function cpuMsOfGroup(pgid: number): number {
  let total = 0;
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return 0;
  }
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const s = parseProcStat(readFileSync(`/proc/${e}/stat`, 'utf8'));
      if (s && s.pgrp === pgid) total += s.cpuMs;
    } catch {
      // the process ended between readdir and read
    }
  }
  return total;
}

/** A process to account for: a single pid, or a whole process group. */
export interface Accounted {
  name: string;
  pid: number;
  pgid?: number | null;
}

/** Snapshot of CPU milliseconds per accounted name (one pass over /proc), plus `generator` (this process). */
export function cpuSnapshot(parts: readonly Accounted[]): Record<string, number> {
  const out: Record<string, number> = {};
  const groups = new Map<number, string>();
  for (const p of parts) {
    out[p.name] = 0;
    if (p.pgid) groups.set(p.pgid, p.name);
    else out[p.name] = (out[p.name] ?? 0) + cpuMsOfPid(p.pid);
  }
  if (groups.size > 0) {
    let entries: string[] = [];
    try {
      entries = readdirSync('/proc');
    } catch {
      entries = [];
    }
    for (const e of entries) {
      if (!/^\d+$/.test(e)) continue;
      try {
        const st = parseProcStat(readFileSync(`/proc/${e}/stat`, 'utf8'));
        const name = st ? groups.get(st.pgrp) : undefined;
        if (st && name !== undefined) out[name] = (out[name] ?? 0) + st.cpuMs;
      } catch {
        // the process ended between readdir and read
      }
    }
  }
  const self = process.cpuUsage();
  out.generator = (self.user + self.system) / 1000;
  return out;
}

/** CPU milliseconds per request between two snapshots, for the names with any use; rounded to 3 decimals. */
export function cpuPerRequest(before: Record<string, number>, after: Record<string, number>, requests: number): Record<string, number> {
  const out: Record<string, number> = {};
  if (requests <= 0) return out;
  for (const [name, v] of Object.entries(after)) {
    const d = v - (before[name] ?? 0);
    if (d > 0) out[name] = Math.round((d / requests) * 1000) / 1000;
  }
  return out;
}

/**
 * Busy CPU milliseconds of the whole machine so far (all cores), from the first line of
 * /proc/stat: user + nice + system + irq + softirq + steal (idle and iowait excluded).
 * 0 when /proc is not there.
 */
export function machineBusyMs(): number {
  try {
    return parseMachineStat(readFileSync('/proc/stat', 'utf8'));
  } catch {
    return 0;
  }
}

/** Parses the `cpu ` line of /proc/stat into busy milliseconds (see {@link machineBusyMs}). */
export function parseMachineStat(text: string): number {
  const line = text.split('\n').find((l) => l.startsWith('cpu '));
  if (!line) return 0;
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = f;
  return ((user + nice + system + irq + softirq + steal) * 1000) / CLOCK_TICKS_PER_SEC;
}

/**
 * Cores' worth of CPU used by processes outside `ours` (and outside this process) between two
 * readings: (machine busy - our busy) / wall time. The benchmark re-measures a failing step that
 * ran while other work used the machine.
 */
export function foreignCores(before: { machine: number; ours: number; at: number }, after: { machine: number; ours: number; at: number }): number {
  const wall = after.at - before.at;
  if (wall <= 0) return 0;
  const foreign = after.machine - before.machine - (after.ours - before.ours);
  return Math.max(0, Math.round((foreign / wall) * 100) / 100);
}
