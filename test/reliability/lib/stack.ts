/**
 * The whole mesh for one reliability / hostile test file: `startStack` from @jwt-mesh/stack on
 * free loopback ports, with
 * - a fresh PostgreSQL database cloned from the migrated template (auth-service's test helper),
 *   or the `databaseUrl` given (e.g. through a TCP proxy the test controls);
 * - a dedicated `redis-server` started by the stack on a free port (never the machine's Redis),
 *   so a test may stop and restart it (`stack.stopPart('redis')`);
 * - a temp run folder (logs, certificates, state file with every pid);
 * and stopped at teardown. Start-up lines go to `t.comment` only when it fails.
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startStack, stackStateSchema, type Stack, type StackOptions, type StackState } from '@jwt-mesh/stack';
import { createTestDatabase } from '../../../auth-service/test/helpers.js';

/** Minimal structural type of tap's `t` used here. */
export interface TapLike {
  teardown(fn: () => unknown): void;
  comment(...args: unknown[]): void;
}

/** A started test stack. */
export interface TestStack {
  stack: Stack;
  state: StackState;
  /** The database the auth-service uses (what the test passed, or the clone). */
  databaseUrl: string;
  runDir: string;
  /** The current pid of each part, read from the state file (updated when a part is restarted). */
  pids(): Record<string, number>;
}

/**
 * Starts the stack for a test; stopped at teardown.
 * @param opts.label - a short name for the run folder
 * @param opts.databaseUrl - use this database (already migrated) instead of a fresh clone
 * @param opts.stack - more {@link StackOptions} (env per part, policy rules, parts, ...)
 */
export async function startTestStack(
  t: TapLike,
  opts: { label: string; databaseUrl?: string; stack?: Partial<StackOptions> },
): Promise<TestStack> {
  const databaseUrl = opts.databaseUrl ?? (await createTestDatabase(t));
  // Free ports are picked before the processes bind them; with other suites starting stacks in
  // parallel one may be taken in between (EADDRINUSE). Such a start is retried on new ports.
  let stack: Stack | undefined;
  let runDir = '';
  let stateFile = '';
  for (let attempt = 1; stack === undefined; attempt++) {
    runDir = mkdtempSync(join(tmpdir(), `jwtmesh-${opts.label}-`));
    stateFile = join(runDir, 'stack.json');
    const lines: string[] = [];
    try {
      stack = await startStack({
        runDir,
        stateFile,
        ports: 'free',
        databaseUrl,
        // The default Redis prefix: the Redis server is this stack's own.
        onProgress: (line) => lines.push(line),
        readyTimeoutMs: 120_000,
        ...opts.stack,
      });
    } catch (err) {
      if (attempt < 3 && /EADDRINUSE|address already in use/.test(String((err as Error).message))) {
        t.comment(`stack start hit a port taken in between (attempt ${attempt}); retrying on new ports`);
        continue;
      }
      t.comment(lines.join('\n'));
      throw err;
    }
  }
  const started = stack;
  t.teardown(() => started.stop());
  return {
    stack: started,
    state: started.state,
    databaseUrl,
    runDir,
    pids() {
      const state = stackStateSchema.parse(JSON.parse(readFileSync(stateFile, 'utf8')));
      return Object.fromEntries(state.processes.map((p) => [p.name, p.pid]));
    },
  };
}

/** A demo user's password from the stack state (alice, bob, admin). */
export function passwordOf(state: StackState, username: string): string {
  const u = state.users.find((x) => x.username === username);
  if (!u) throw new Error(`no demo user ${username}`);
  return u.password;
}
