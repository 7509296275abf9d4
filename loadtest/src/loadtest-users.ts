/**
 * `make loadtest-10k`: 10,000 concurrent users, each its own registered user with its own session,
 * against the mesh `make up` started (read from its state file, `.run/stack.json`).
 *
 * 1. Validates every knob (a bad one stops the run, naming it) and refuses a non-loopback edge.
 * 2. Seeds the users, unless `USERS_FILE` already holds enough: the auth-service's bulk command
 *    `npm run seed-users -w @jwt-mesh/auth-service -- --count VUS --prefix loadtest- --out FILE`
 *    (plus `SEED_ARGS`, e.g. its lower KDF cost that applies only to those users), timed.
 * 3. Logs in once as the first user to read the access-token lifetime (`expires_in`), and
 *    refuses a hold shorter than it: the run must outlive the tokens so that every VU refreshes.
 * 4. Reads the mesh (CPU per process, Redis INFO commandstats, every verifier's /metrics), runs
 *    `k6 run loadtest/k6/load.ts` (VU n logs in as user n, ramp, hold, refresh as tokens age),
 *    samples the peak RSS of k6 and of every mesh process, reads the mesh again.
 * 5. Writes `summary.json` (k6), `mesh.json` and `report.md` (src/report.ts) in `RUN_DIR`, prints
 *    the report, and exits with k6's code (0 every threshold held, 99 one was crossed), 2 on a
 *    bad knob, a missing stack, a failed seeding or probe login.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { readState } from '@jwt-mesh/stack';
import { REPO_ROOT } from '@jwt-mesh/testkit';
import { z } from 'zod';
import { readEnv } from './env.js';
import { tokenAnswerProblem } from '../k6/lib/scenario.js';
import { assertLoopbackTarget } from './guard.js';
import { finishK6Report, k6Binary, runK6 } from './k6.js';
import { meshSnapshot, sampleProcesses, type Watched } from './mesh-probe.js';
import { renderReport, type MeshRecord } from './report.js';

export const HELP = `make loadtest-10k [VUS=10000] [RAMP=600] [HOLD=420] [THINK_MIN_SEC=60] [THINK_MAX_SEC=120] ...

10,000 concurrent users against the mesh that make up started: k6 run loadtest/k6/load.ts with
one VU per registered user (VU n takes user n of USERS_FILE; each logs in once, during the ramp,
and refreshes its own session as its token ages), then the report (loadtest/README.md).

Variables (environment or make variables; a bad value stops the run naming it):
  VUS             concurrent users, 1..20000 (default 10000)
  RAMP            seconds to reach VUS, 10..3600 (default 600: logins spread over 10 min)
  HOLD            seconds at VUS, 10..3600 (default 420); must exceed the access-token lifetime
  RAMP_DOWN       seconds, 0..600 (default 60)
  THINK_MIN_SEC, THINK_MAX_SEC  think time between a user's requests (default 60..120 s: with
                  10,000 users about 110 req/s, within what the full path holds on 2 cores)
  REFRESH_MARGIN_SEC  refresh this long before the token expires (default 60)
  USERS_FILE      the seeded users, JSON [{username,password}] (default RUN_DIR/users.json);
                  seeded with the auth-service's seed-users command when missing or too short
  SEED_ARGS       extra arguments of seed-users (e.g. its lower KDF cost for load-test users)
  STACK_STATE     the stack's state file (default .run/stack.json, what make up writes)
  BASE_URL        the edge (default: the stack's, from STACK_STATE); loopback only
  RUN_DIR         where summary.json, mesh.json, report.md go (default .run/loadtest-10k)
  P99_MS, LOGIN_P99_MS, REFRESH_P99_MS, MAX_FAILED_RATE: thresholds (loadtest/README.md)

The stack needs its login and refresh rate limits raised for one client address, e.g.
  LOGIN_RATE_LIMIT_PER_MIN=100000 LOGIN_USERNAME_RATE_LIMIT_PER_MIN=100000 \\
  REFRESH_RATE_LIMIT_PER_MIN=100000 make up
(add ACCESS_TOKEN_TTL_SEC=120 to make a shorter run outlive the tokens).
Exit status: k6's (0 every threshold held, 99 one was crossed); 2 bad variable, no stack, failed
seeding or login; the run is bounded by RAMP + HOLD + RAMP_DOWN + 10 min and by VUS x 10,000 requests.
`;

const seconds = (min: number, max: number, dflt: number) => z.coerce.number().int().min(min).max(max).default(dflt);
const envSchema = z.object({
  VUS: seconds(1, 20_000, 10_000),
  RAMP: seconds(10, 3600, 600),
  HOLD: seconds(10, 3600, 420),
  RAMP_DOWN: seconds(0, 600, 60),
  THINK_MIN_SEC: z.coerce.number().min(0).max(600).default(60),
  THINK_MAX_SEC: z.coerce.number().min(0).max(600).default(120),
  REFRESH_MARGIN_SEC: seconds(5, 3600, 60),
  USERS_FILE: z.string().min(1).optional(),
  SEED_ARGS: z.string().default(''),
  STACK_STATE: z.string().min(1).default(join(REPO_ROOT, '.run', 'stack.json')),
  BASE_URL: z.string().url().optional(),
  RUN_DIR: z.string().min(1).default(join(REPO_ROOT, '.run', 'loadtest-10k')),
});
type Knobs = z.infer<typeof envSchema>;

/** Reads and checks the knobs (empty = unset). @throws Error naming the variable. */
export function readKnobs(env: NodeJS.ProcessEnv): Knobs {
  const knobs = readEnv(envSchema, env);
  if (knobs.THINK_MAX_SEC < knobs.THINK_MIN_SEC) throw new Error(`THINK_MAX_SEC (${knobs.THINK_MAX_SEC}) is below THINK_MIN_SEC (${knobs.THINK_MIN_SEC})`);
  return knobs;
}

/** The soft limit on open files of this process (`/proc/self/limits`), or null when unknown. */
function openFilesLimit(): number | null {
  try {
    const m = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    return m ? (m[1] === 'unlimited' ? Number.MAX_SAFE_INTEGER : Number(m[1])) : null;
  } catch {
    return null;
  }
}

/** Users in a users file (a JSON array, or `{users: [...]}`); 0 when it is missing or unreadable. */
function usersIn(file: string): number {
  if (!existsSync(file)) return 0;
  try {
    const doc = JSON.parse(readFileSync(file, 'utf8')) as unknown;
    const list = Array.isArray(doc) ? doc : (doc as { users?: unknown }).users;
    return Array.isArray(list) ? list.length : 0;
  } catch {
    return 0;
  }
}

function firstUser(file: string): { username: string; password: string } {
  const doc = JSON.parse(readFileSync(file, 'utf8')) as unknown;
  const list = (Array.isArray(doc) ? doc : (doc as { users: unknown[] }).users) as Array<{ username: string; password: string }>;
  return list[0] as { username: string; password: string };
}

const say = (line: string) => process.stdout.write(`loadtest-10k: ${line}\n`);

async function run(env: NodeJS.ProcessEnv): Promise<number> {
  let knobs: Knobs;
  let k6: string;
  try {
    knobs = readKnobs(env);
    k6 = k6Binary(env);
  } catch (err) {
    process.stderr.write(`loadtest-10k: ${(err as Error).message}\n`);
    return 2;
  }
  const state = readState(resolve(knobs.STACK_STATE));
  if (!state || !state.ready) {
    process.stderr.write(`loadtest-10k: no running stack in ${knobs.STACK_STATE} (start it with make up; see --help for the rate limits to raise)\n`);
    return 2;
  }
  const baseUrl = (knobs.BASE_URL ?? state.urls.edge).replace(/\/+$/, '');
  try {
    await assertLoopbackTarget(baseUrl);
  } catch (err) {
    process.stderr.write(`loadtest-10k: ${(err as Error).message}\n`);
    return 2;
  }
  const fds = openFilesLimit();
  if (fds !== null && fds < knobs.VUS + 1024) {
    process.stderr.write(`loadtest-10k: the open-files limit is ${fds}, below VUS + 1024 = ${knobs.VUS + 1024} (one connection per VU): raise it (ulimit -n; the make target raises it to the hard limit)\n`);
    return 2;
  }
  const runDir = resolve(knobs.RUN_DIR);
  mkdirSync(runDir, { recursive: true });
  const usersFile = resolve(knobs.USERS_FILE ?? join(runDir, 'users.json'));

  // ---- users ------------------------------------------------------------------------------------
  let seedSec: number | null = null;
  if (usersIn(usersFile) < knobs.VUS) {
    const args = ['run', 'seed-users', '--silent', '-w', '@jwt-mesh/auth-service', '--', '--count', String(knobs.VUS), '--prefix', 'loadtest-', '--out', usersFile, ...knobs.SEED_ARGS.split(/\s+/).filter(Boolean)];
    say(`seeding ${knobs.VUS} users: npm ${args.join(' ')}`);
    const t0 = Date.now();
    try {
      execFileSync('npm', args, { cwd: REPO_ROOT, stdio: 'inherit', env: { ...env, DATABASE_URL: state.database.url } });
    } catch (err) {
      process.stderr.write(`loadtest-10k: seeding failed (${(err as Error).message.split('\n')[0]}); the auth-service's seed-users command must be in this checkout\n`);
      return 2;
    }
    seedSec = (Date.now() - t0) / 1000;
    if (usersIn(usersFile) < knobs.VUS) {
      process.stderr.write(`loadtest-10k: ${usersFile} holds ${usersIn(usersFile)} users after seeding, fewer than VUS=${knobs.VUS}\n`);
      return 2;
    }
    say(`seeded in ${seedSec.toFixed(1)} s`);
  }

  // ---- the access-token lifetime, from one login ----------------------------------------------
  let ttlSec: number;
  try {
    const u = firstUser(usersFile);
    const res = await fetch(`${baseUrl}/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(u), signal: AbortSignal.timeout(30_000) });
    const body = (await res.json().catch(() => null)) as { expires_in?: number } | null;
    const problem = res.status === 200 ? tokenAnswerProblem(body) : `status ${res.status}`;
    if (problem !== null) throw new Error(`probe login as ${u.username}: ${problem}`);
    ttlSec = body?.expires_in as number;
  } catch (err) {
    process.stderr.write(`loadtest-10k: ${(err as Error).message}\n`);
    return 2;
  }
  if (knobs.HOLD <= ttlSec) {
    process.stderr.write(`loadtest-10k: HOLD (${knobs.HOLD} s) must exceed the access-token lifetime (${ttlSec} s) so that every user refreshes; raise HOLD or start make up with a lower ACCESS_TOKEN_TTL_SEC\n`);
    return 2;
  }

  // ---- the run ---------------------------------------------------------------------------------
  const procs: Watched[] = state.processes.map((p) => ({ name: p.name, pid: p.pid }));
  const metricsUrls: Record<string, string> = { auth: `${state.urls.auth}/metrics` };
  state.urls.authzMetrics.forEach((u, i) => (metricsUrls[`authz-${i + 1}`] = u));
  for (const [name, s] of Object.entries(state.urls.services)) metricsUrls[name] = `${s.app}/metrics`;
  const verifiers = Object.keys(metricsUrls).filter((n) => n !== 'auth');
  // make up's Redis refuses its default user: read INFO as the issuer's ACL user (allowed INFO).
  const issuerAcl = state.redis.acl?.issuer;
  const redisAs = issuerAcl ? { username: issuerAcl.username, password: readFileSync(issuerAcl.passwordFile, 'utf8').trim() } : {};
  const before = await meshSnapshot(procs, state.redis.url, metricsUrls, redisAs);
  const loadavgBefore = loadavg().map((x) => Math.round(x * 100) / 100);
  const startedAt = new Date().toISOString();
  const totalSec = knobs.RAMP + knobs.HOLD + knobs.RAMP_DOWN;
  say(`k6 run loadtest/k6/load.ts: ${knobs.VUS} users against ${baseUrl}, ramp ${knobs.RAMP} s, hold ${knobs.HOLD} s, think ${knobs.THINK_MIN_SEC}..${knobs.THINK_MAX_SEC} s (load average ${loadavgBefore.join(' ')})`);
  let k6Pid = 0;
  const watched = () => (k6Pid ? [...procs, { name: 'k6', pid: k6Pid }] : procs);
  const sampler = sampleProcesses(watched, 2000);
  const t0 = Date.now();
  const result = await runK6({
    k6,
    script: 'load.ts',
    vars: {
      BASE_URL: baseUrl,
      USERS_FILE: usersFile,
      VUS: String(knobs.VUS),
      RAMP: `${knobs.RAMP}s`,
      DURATION: `${knobs.HOLD}s`,
      RAMP_DOWN: `${knobs.RAMP_DOWN}s`,
      THINK_MIN_SEC: String(knobs.THINK_MIN_SEC),
      THINK_MAX_SEC: String(knobs.THINK_MAX_SEC),
      REFRESH_MARGIN_SEC: String(knobs.REFRESH_MARGIN_SEC),
      MAX_ITERATIONS: String(knobs.VUS * 10_000),
    },
    summaryFile: join(runDir, 'summary.json'),
    args: ['--no-color', '--quiet'],
    // k6 initialises every VU before the first iteration (minutes for 10,000 on two cores), then stops gracefully.
    timeoutMs: (totalSec + 600) * 1000,
    env,
    onSpawn: (pid) => {
      k6Pid = pid;
    },
  });
  const runSec = (Date.now() - t0) / 1000;
  const { peakRssBytes, lastCpuMs } = sampler.stop();
  const read = await meshSnapshot(procs, state.redis.url, metricsUrls, redisAs);
  // k6 has exited by now: its CPU is the last value the sampler saw (it started at 0).
  const after = { ...read, cpuMs: { ...read.cpuMs, k6: lastCpuMs['k6'] ?? 0 } };
  const mesh: MeshRecord = {
    command: `make loadtest-10k VUS=${knobs.VUS} RAMP=${knobs.RAMP} HOLD=${knobs.HOLD} THINK_MIN_SEC=${knobs.THINK_MIN_SEC} THINK_MAX_SEC=${knobs.THINK_MAX_SEC}`,
    startedAt,
    runSec,
    seedSec,
    vusTarget: knobs.VUS,
    think: { min: knobs.THINK_MIN_SEC, max: knobs.THINK_MAX_SEC },
    accessTokenTtlSec: ttlSec,
    rampSec: knobs.RAMP,
    holdSec: knobs.HOLD,
    loadavgBefore,
    loadavgAfter: loadavg().map((x) => Math.round(x * 100) / 100),
    k6ExitCode: result.code,
    machine: `${cpus().length} cores (${cpus()[0]?.model.trim() ?? 'unknown'}), ${Math.round(totalmem() / 2 ** 30)} GiB`,
    before: { ...before, cpuMs: { ...before.cpuMs, k6: 0 } },
    after,
    peakRssBytes,
    verifiers,
  };
  writeFileSync(join(runDir, 'mesh.json'), `${JSON.stringify(mesh, null, 1)}\n`);
  return finishK6Report('loadtest-10k', result, runDir, (summary) => renderReport(summary, mesh), say);
}

if (process.argv.includes('--help') || process.argv.includes('-h')) {
  process.stdout.write(HELP);
} else {
  run(process.env).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      process.stderr.write(`loadtest-10k: ${(err as Error).stack ?? String(err)}\n`);
      process.exitCode = 2;
    },
  );
}
