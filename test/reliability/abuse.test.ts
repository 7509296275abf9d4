/**
 * Abuse limits of the auth service, with two real replicas (`auth-service/src/main.ts` as
 * processes on free ports) sharing one database and one Redis (rate-limit counters under one
 * prefix), the shipped default limits (login 20/min per address and 10/min per username,
 * refresh 60/min per address), and TRUST_PROXY=loopback so each simulated client has its own
 * address (X-Forwarded-For from a loopback proxy, as behind the edge).
 *
 * Asserted:
 * - the login limits (per address, per username) and the refresh limit hold across the two
 *   replicas: requests alternate between them, and the first one past the limit gets 429 with
 *   `Retry-After` on either replica;
 * - a burst of N concurrent refreshes from client A does not exhaust the database pool for
 *   others: client B logs in during the burst and succeeds. The same burst against a third
 *   replica with the refresh limit lifted shows what the pool alone does (B must still succeed).
 * Printed: statuses and latencies of the burst and of B's login.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import t, { type Test } from 'tap';
import { freePort, REPO_ROOT, waitForHttp } from '@jwt-mesh/testkit';
import { createTestDatabase, redisPrefix, REDIS_URL } from '../../auth-service/test/helpers.js';
import { postJson, request, type Answer } from './lib/http.js';
import { markdownTable } from './lib/load.js';

t.setTimeout(180_000);

const BURST = 200;

interface Replica {
  name: string;
  url: string;
  proc: ChildProcess;
}

/** Starts auth-service/src/main.ts with `env`; stopped (SIGTERM) at teardown. */
async function startReplica(t: Test, name: string, logDir: string, env: Record<string, string>): Promise<Replica> {
  const port = await freePort();
  const log = createWriteStream(join(logDir, `${name}.log`));
  const proc = spawn(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'auth-service', 'src', 'main.ts')], {
    cwd: join(REPO_ROOT, 'auth-service'),
    env: { ...process.env, NODE_OPTIONS: '', PORT: String(port), HOST: '127.0.0.1', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  proc.stdout?.pipe(log);
  proc.stderr?.pipe(log);
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  t.teardown(async () => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
    await exited;
  });
  const url = `http://127.0.0.1:${port}`;
  await waitForHttp(`${url}/readyz`, { expectStatus: 200, timeoutMs: 60_000, intervalMs: 200 });
  return { name, url, proc };
}

const form = (o: Record<string, string>) => new URLSearchParams(o).toString();
const xff = (address: string) => ({ 'x-forwarded-for': address });

function refreshAt(r: Replica, refreshToken: string, address: string): Promise<Answer> {
  return request(`${r.url}/auth/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...xff(address) },
    body: form({ grant_type: 'refresh_token', refresh_token: refreshToken }),
  });
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return Math.round(sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number);
}

t.test('rate limits hold across two replicas sharing Redis; a refresh burst does not starve other clients', async (t) => {
  const databaseUrl = await createTestDatabase(t);
  const prefix = redisPrefix(t, 'abuse');
  const logDir = mkdtempSync(join(tmpdir(), 'jwtmesh-abuse-'));
  const common = {
    DATABASE_URL: databaseUrl,
    REDIS_URL,
    REDIS_PREFIX: prefix,
    TRUST_PROXY: 'loopback',
    LOG_LEVEL: 'warn',
    JWT_ISSUER: 'http://localhost:4000',
  };
  const a = await startReplica(t, 'auth-a', logDir, common);
  const b = await startReplica(t, 'auth-b', logDir, common);
  const replicas = [a, b];

  // Users, registered from distinct addresses (registration has its own per-address limit).
  const password = `pw-${randomBytes(6).toString('hex')}`;
  const users = Array.from({ length: 24 }, (_, i) => `abuse${i}.${randomBytes(3).toString('hex')}`);
  for (const [i, username] of users.entries()) {
    const r = await postJson(`${replicas[i % 2]!.url}/auth/register`, { username, password }, xff(`10.9.${Math.floor(i / 8)}.${i}`));
    if (r.status !== 201) throw new Error(`register ${username}: ${r.status ?? r.error}`);
  }
  const loginAt = (r: Replica, username: string, address: string, pw = password) => postJson(`${r.url}/auth/login`, { username, password: pw }, xff(address));

  await t.test('login: 20 per minute per address, counted across both replicas', async (t) => {
    const statuses: Array<number | string> = [];
    let limited: Answer | undefined;
    for (let i = 0; i < 22; i++) {
      const r = await loginAt(replicas[i % 2]!, users[i] as string, '10.1.0.1');
      statuses.push(r.status ?? r.error);
      if (r.status === 429) limited ??= r;
    }
    t.comment(`statuses (alternating auth-a, auth-b): ${statuses.join(' ')}`);
    t.same(statuses.slice(0, 20), Array(20).fill(200), 'the first 20 logins from one address succeed, 10 on each replica');
    t.same(statuses.slice(20), [429, 429], 'the 21st and 22nd get 429, on either replica');
    const retry = limited?.status !== undefined ? Number(limited.headers['retry-after']) : NaN;
    t.ok(retry >= 1 && retry <= 60, `429 carries Retry-After (${retry} s)`);
    t.match(limited?.status !== undefined ? limited.body : '', /too_many_requests/, 'and a too_many_requests error');
  });

  await t.test('login: 10 per minute per username, from many addresses, across both replicas', async (t) => {
    const victim = users[23] as string;
    const statuses: Array<number | string> = [];
    for (let i = 0; i < 12; i++) {
      const r = await loginAt(replicas[i % 2]!, victim, `10.2.0.${i + 1}`, i % 3 === 0 ? password : 'wrong-password');
      statuses.push(r.status ?? r.error);
    }
    t.comment(`statuses (alternating replicas, a new address each time, mostly wrong passwords): ${statuses.join(' ')}`);
    t.ok(statuses.slice(0, 10).every((s) => s === 200 || s === 400), 'the first 10 attempts are answered (200, or 400 invalid_grant)');
    t.same(statuses.slice(10), [429, 429], 'then 429 for that username, whatever the address and replica');
  });

  await t.test('refresh: 60 per minute per address, counted across both replicas', async (t) => {
    const first = await loginAt(a, users[22] as string, '10.3.0.9');
    t.equal(first.status, 200);
    let token = (first.json as { refresh_token: string }).refresh_token;
    const counts: Record<string, number> = {};
    let limited: Answer | undefined;
    let firstLimitedAt = -1;
    for (let i = 0; i < 62; i++) {
      const r = await refreshAt(replicas[i % 2]!, token, '10.3.0.1');
      const k = String(r.status ?? r.error);
      counts[k] = (counts[k] ?? 0) + 1;
      if (r.status === 200) token = (JSON.parse(r.body) as { refresh_token: string }).refresh_token;
      if (r.status === 429 && !limited) {
        limited = r;
        firstLimitedAt = i;
      }
    }
    t.comment(`62 refreshes from one address, alternating replicas: ${JSON.stringify(counts)}; first 429 at #${firstLimitedAt + 1}`);
    t.equal(counts['200'], 60, '60 refreshes succeed (30 on each replica)');
    t.equal(counts['429'], 2, 'the 61st and 62nd get 429');
    t.ok(limited?.status !== undefined && Number(limited.headers['retry-after']) >= 1, 'with Retry-After');
  });

  const burst = async (t: Test, target: Replica, label: string, loginUser: string, refreshUser: string) => {
    const aLogin = await loginAt(target, refreshUser, `10.4.${label.length}.1`);
    t.equal(aLogin.status, 200, 'client A logged in');
    const refreshToken = (aLogin.json as { refresh_token: string }).refresh_token;
    const t0 = performance.now();
    const burstDone = Promise.all(
      Array.from({ length: BURST }, async () => {
        const s = performance.now();
        const r = await refreshAt(target, refreshToken, '10.4.0.1');
        return { status: r.status ?? r.error, ms: performance.now() - s };
      }),
    );
    // Client B logs in while the burst is on the wire.
    await new Promise((resolve) => setTimeout(resolve, 5));
    const bStart = performance.now();
    const bLogin = await loginAt(target, loginUser, '10.5.0.1');
    const bMs = performance.now() - bStart;
    const results = await burstDone;
    const burstMs = performance.now() - t0;
    const byStatus: Record<string, number> = {};
    for (const r of results) byStatus[String(r.status)] = (byStatus[String(r.status)] ?? 0) + 1;
    const lat = results.map((r) => r.ms).sort((x, y) => x - y);
    const row = {
      replica: label,
      'burst (concurrent refreshes, one client)': BURST,
      'burst answers': Object.entries(byStatus).map(([k, v]) => `${k}: ${v}`).join(', '),
      'burst p50 / p99 / max (ms)': `${percentile(lat, 50)} / ${percentile(lat, 99)} / ${Math.round(lat[lat.length - 1] ?? 0)}`,
      'burst wall time (ms)': Math.round(burstMs),
      "client B's login": `${bLogin.status ?? bLogin.error} in ${Math.round(bMs)} ms`,
    };
    return { row, bLogin, byStatus };
  };

  await t.test('a refresh burst from one client does not exhaust the database pool for others', async (t) => {
    const limitedRun = await burst(t, a, 'default limits (60/min per address)', users[21] as string, users[20] as string);
    t.equal(limitedRun.bLogin.status, 200, "client B's login succeeds during the burst");
    t.equal(limitedRun.byStatus['500'] ?? 0, 0, 'no 500 in the burst');
    t.ok((limitedRun.byStatus['429'] ?? 0) >= BURST - 60, 'the limit turns most of the burst away before the database');

    // The same burst with the limit lifted: only the pool (10 connections, 2 s acquire timeout) and the database stand.
    const open = await startReplica(t, 'auth-unlimited', logDir, { ...common, REFRESH_RATE_LIMIT_PER_MIN: '1000000' });
    const openRun = await burst(t, open, 'refresh limit lifted', users[19] as string, users[18] as string);
    t.comment(`\nrefresh burst while another client logs in\n${markdownTable([limitedRun.row, openRun.row])}`);
    t.equal(openRun.bLogin.status, 200, "client B's login succeeds even with the refresh limit lifted");
    t.equal(openRun.byStatus['500'] ?? 0, 0, 'no 500 in the unlimited burst');
  });
});
