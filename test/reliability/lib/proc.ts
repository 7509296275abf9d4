/**
 * Process figures from /proc (Linux): resident set size and liveness of the stack's pids.
 */
import { readFileSync } from 'node:fs';

/** VmRSS of `pid` in kibibytes, or null when the process is gone. */
export function rssKiB(pid: number): number | null {
  try {
    const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/** True while `pid` exists and is not a zombie. */
export function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 3 (after the parenthesised command name) is the state; Z = zombie, X = dead.
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

/** RSS of every named pid, in MiB with one decimal (null when gone). */
export function rssTable(pids: Record<string, number>): Record<string, number | null> {
  return Object.fromEntries(
    Object.entries(pids).map(([name, pid]) => {
      const kib = rssKiB(pid);
      return [name, kib === null ? null : Math.round(kib / 102.4) / 10];
    }),
  );
}
