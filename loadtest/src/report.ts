/**
 * The report of a many-user k6 run (`make loadtest-10k`): reads k6's JSON summary
 * (`summary.json`, from `--summary-export`) and what the mesh did (`mesh.json`, written by
 * src/loadtest-users.ts from /metrics, Redis `INFO commandstats` and /proc) and renders the
 * Markdown table for loadtest/README.md. Never reads k6's text output.
 *
 *   npm run report -w @jwt-mesh/loadtest -- <run folder>     # prints the Markdown; default .run/loadtest-10k
 */
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { crossedThresholds, readSummary, stat, type K6Summary } from './k6.js';
import { metricSum, type MeshSnapshot } from './mesh-probe.js';

/** What src/loadtest-users.ts records beside k6's summary (`mesh.json`). */
export interface MeshRecord {
  /** The command that ran, for the report's header. */
  readonly command: string;
  readonly startedAt: string;
  /** Wall time of the k6 run, seconds. */
  readonly runSec: number;
  /** Seeding time, seconds (null when the users file was reused). */
  readonly seedSec: number | null;
  readonly vusTarget: number;
  /** Think time bounds, seconds. */
  readonly think: { readonly min: number; readonly max: number };
  /** Access-token lifetime the auth-service gave (expires_in of a probe login), seconds. */
  readonly accessTokenTtlSec: number;
  /** Phases of the ramping-vus executor, seconds. */
  readonly rampSec: number;
  readonly holdSec: number;
  readonly loadavgBefore: readonly number[];
  readonly loadavgAfter: readonly number[];
  readonly k6ExitCode: number | null;
  readonly machine: string;
  readonly before: MeshSnapshot;
  readonly after: MeshSnapshot;
  /** Peak resident set size per process (k6 included), bytes. */
  readonly peakRssBytes: Record<string, number>;
  /** The scraped components that verify tokens (authz replicas, services). */
  readonly verifiers: readonly string[];
}

/**
 * Metric names read for the cache hit rates at each verifier: a counter of lookups labelled
 * `result="hit"` / `result="miss"`, under either prefix the components use (`jwtmesh_` in
 * authz-service, `jwt_mesh_` in the services). A verifier that does not export it is reported
 * as such, never as 0 %.
 */
export const CACHE_METRICS = {
  verified: ['jwtmesh_verified_token_cache_lookups_total', 'jwt_mesh_verified_token_cache_lookups_total'],
  revocation: ['jwtmesh_revocation_cache_lookups_total', 'jwt_mesh_revocation_cache_lookups_total'],
} as const;

/** Token verifications per chain request: the authz replica Envoy asked, then orders, inventory, profile. */
export const VERIFICATIONS_PER_CHAIN_REQUEST = 4;

const ms = (n: number | undefined): string => (n === undefined ? '-' : n.toFixed(1));
const mb = (bytes: number | undefined): string => (bytes === undefined || bytes === 0 ? '-' : (bytes / 2 ** 20).toFixed(0));
const pct = (n: number | undefined, digits = 2): string => (n === undefined ? '-' : `${(n * 100).toFixed(digits)} %`);

/** Hit rate of one cache at one verifier between two scrapes, or a reason it is unknown. */
export function hitRate(before: string | null, after: string | null, names: readonly string[]): { rate: number; lookups: number } | string {
  if (after === null) return 'no /metrics answer';
  for (const name of names) {
    const hitsAfter = metricSum(after, name, { result: 'hit' });
    const missAfter = metricSum(after, name, { result: 'miss' });
    if (hitsAfter === undefined && missAfter === undefined) continue;
    const was = (result: string): number => (before === null ? 0 : (metricSum(before, name, { result }) ?? 0));
    const hits = (hitsAfter ?? 0) - was('hit');
    const misses = (missAfter ?? 0) - was('miss');
    const lookups = hits + misses;
    return lookups > 0 ? { rate: hits / lookups, lookups } : 'no lookups';
  }
  return 'not exported';
}

/**
 * Renders the report (Markdown) of one run.
 * @param summary k6's summary export; `mesh` what the mesh did.
 */
export function renderReport(summary: K6Summary, mesh: MeshRecord): string {
  const m = (metric: string, key: string) => stat(summary, metric, key);
  const requests = m('http_reqs', 'count') ?? 0;
  const api = 'http_req_duration{kind:api}';
  const login = 'http_req_duration{kind:auth,name:login}';
  const refresh = 'http_req_duration{kind:auth,name:refresh}';
  const vusReached = m('vus', 'max') ?? m('vus_max', 'max') ?? 0;
  const thinkMean = (mesh.think.min + mesh.think.max) / 2;
  const offered = mesh.vusTarget / (thinkMean + (m(api, 'avg') ?? 0) / 1000);
  const crossed = crossedThresholds(summary);
  const lines: string[] = [];
  lines.push(`### ${mesh.vusTarget.toLocaleString('en-US')} users — ${mesh.startedAt}`);
  lines.push('');
  lines.push(`\`${mesh.command}\` on ${mesh.machine}. Load average before: ${mesh.loadavgBefore.join(' ')}; after: ${mesh.loadavgAfter.join(' ')}. k6 ran ${mesh.runSec.toFixed(0)} s (ramp ${mesh.rampSec} s, hold ${mesh.holdSec} s, access tokens live ${mesh.accessTokenTtlSec} s)${mesh.seedSec === null ? '; users file reused' : `; seeding the users took ${mesh.seedSec.toFixed(0)} s`}. k6 exit code ${mesh.k6ExitCode ?? 'none'}: ${crossed.length === 0 ? 'every threshold held' : `crossed ${crossed.join('; ')}`}.`);
  lines.push('');
  lines.push('| figure | value |');
  lines.push('|---|---|');
  lines.push(`| VUs reached (target) | ${vusReached} (${mesh.vusTarget}) |`);
  lines.push(`| offered rate at full strength (VUs / (mean think ${thinkMean} s + mean API latency)) | ${offered.toFixed(1)} req/s |`);
  lines.push(`| achieved, whole run (ramps included) | ${(m('http_reqs', 'rate') ?? 0).toFixed(1)} req/s (${requests} requests: ${m(api, 'count') ?? 0} API, ${m(login, 'count') ?? 0} logins, ${m(refresh, 'count') ?? 0} refreshes) |`);
  lines.push(`| API p50 / p90 / p99 / max | ${ms(m(api, 'med'))} / ${ms(m(api, 'p(90)'))} / ${ms(m(api, 'p(99)'))} / ${ms(m(api, 'max'))} ms |`);
  lines.push(`| login p50 / p90 / p99 / max | ${ms(m(login, 'med'))} / ${ms(m(login, 'p(90)'))} / ${ms(m(login, 'p(99)'))} / ${ms(m(login, 'max'))} ms |`);
  lines.push(`| refresh p50 / p90 / p99 / max | ${ms(m(refresh, 'med'))} / ${ms(m(refresh, 'p(90)'))} / ${ms(m(refresh, 'p(99)'))} / ${ms(m(refresh, 'max'))} ms |`);
  lines.push(`| failed API requests | ${m('http_req_failed{kind:api}', 'passes') ?? 0} (${pct(m('http_req_failed{kind:api}', 'value'), 3)}) |`);
  lines.push(`| failed logins and refreshes (after retries) | ${m('http_req_failed{kind:auth}', 'passes') ?? 0} (${pct(m('http_req_failed{kind:auth}', 'value'), 3)}) |`);
  lines.push(`| failed checks (API / auth) | ${m('checks{kind:api}', 'fails') ?? 0} / ${m('checks{kind:auth}', 'fails') ?? 0} |`);
  lines.push(`| 429/503 answers to logins and refreshes, retried after Retry-After | ${m('auth_shed', 'count') ?? 0} |`);
  lines.push(`| sessions: logins / refreshes / re-logins / refresh invalid_grant (families revoked) | ${m('logins', 'count') ?? 0} / ${m('token_refreshes', 'count') ?? 0} / ${m('relogins', 'count') ?? 0} / ${m('refresh_invalid_grant', 'count') ?? 0} |`);
  const k6Peak = mesh.peakRssBytes['k6'];
  lines.push(`| k6 peak RSS | ${mb(k6Peak)} MB${k6Peak && vusReached ? ` (${(k6Peak / 2 ** 20 / vusReached).toFixed(2)} MB per VU)` : ''} |`);
  lines.push('');

  const names = Object.keys(mesh.after.cpuMs).sort();
  lines.push(`**Per process** (CPU per request: CPU time during the run / ${requests} requests sent by k6, API and auth together)`);
  lines.push('');
  lines.push('| process | peak RSS (MB) | CPU (s) | CPU ms / request |');
  lines.push('|---|---:|---:|---:|');
  let total = 0;
  for (const name of names) {
    const cpu = (mesh.after.cpuMs[name] ?? 0) - (mesh.before.cpuMs[name] ?? 0);
    if (name !== 'k6') total += cpu;
    lines.push(`| ${name} | ${mb(mesh.peakRssBytes[name])} | ${(cpu / 1000).toFixed(1)} | ${requests > 0 ? (cpu / requests).toFixed(3) : '-'} |`);
  }
  lines.push(`| **the mesh (every process but k6)** | | ${(total / 1000).toFixed(1)} | ${requests > 0 ? (total / requests).toFixed(3) : '-'} |`);
  lines.push('');

  lines.push('**Caches at each verifier** (hit rate over the run, from the verifier\'s /metrics)');
  lines.push('');
  lines.push('| verifier | verified-token cache | revocation cache |');
  lines.push('|---|---:|---:|');
  const show = (r: ReturnType<typeof hitRate>) => (typeof r === 'string' ? r : `${pct(r.rate, 1)} of ${r.lookups}`);
  for (const v of mesh.verifiers) {
    const b = mesh.before.metrics[v] ?? null;
    const a = mesh.after.metrics[v] ?? null;
    lines.push(`| ${v} | ${show(hitRate(b, a, CACHE_METRICS.verified))} | ${show(hitRate(b, a, CACHE_METRICS.revocation))} |`);
  }
  lines.push('');

  const calls: Array<[string, number]> = [];
  for (const [cmd, after] of Object.entries(mesh.after.redisCalls)) {
    if (cmd === 'info') continue; // this probe's own INFO
    const d = after - (mesh.before.redisCalls[cmd] ?? 0);
    if (d > 0) calls.push([cmd, d]);
  }
  calls.sort((x, y) => y[1] - x[1]);
  const redisTotal = calls.reduce((s, [, n]) => s + n, 0);
  if (Object.keys(mesh.after.redisCalls).length === 0) {
    lines.push('**Redis**: INFO commandstats did not answer.');
  } else {
    lines.push(`**Redis commands per request**: ${requests > 0 ? (redisTotal / requests).toFixed(2) : '-'} (${redisTotal} commands; ${calls.slice(0, 6).map(([c, n]) => `${c} ${n}`).join(', ') || 'none'}).`);
    // Every verifier's revocation lookup that misses its in-process cache is one MGET
    // (packages/core/src/revocation/redis.ts); a chain request is verified 4 times (one authz
    // replica, orders, inventory, profile).
    const mget = calls.find(([c]) => c === 'mget')?.[1] ?? 0;
    const verifications = (m('chain_requests', 'count') ?? 0) * VERIFICATIONS_PER_CHAIN_REQUEST;
    if (verifications > 0) {
      lines.push('');
      lines.push(
        `Revocation lookups that reached Redis (MGET): ${mget} for ${verifications} token verifications (${m('chain_requests', 'count') ?? 0} chain requests x ${VERIFICATIONS_PER_CHAIN_REQUEST} verifiers), so the in-process revocation caches answered about ${pct(Math.max(0, 1 - mget / verifications), 1)} of them (derived from Redis, all verifiers together).`,
      );
    }
  }
  return `${lines.join('\n')}\n`;
}

/** Reads `<dir>/summary.json` and `<dir>/mesh.json` and renders the report. @throws Error naming a missing file. */
export function reportFromDir(dir: string): string {
  const summary = readSummary(join(dir, 'summary.json'));
  if (!summary) throw new Error(`${join(dir, 'summary.json')}: no k6 summary there (did k6 finish?)`);
  let mesh: MeshRecord;
  try {
    mesh = JSON.parse(readFileSync(join(dir, 'mesh.json'), 'utf8')) as MeshRecord;
  } catch (err) {
    throw new Error(`${join(dir, 'mesh.json')}: ${(err as Error).message}`);
  }
  return renderReport(summary, mesh);
}

const invokedDirectly = process.argv[1] !== undefined && /[/\\]report\.[tj]s$/.test(process.argv[1]);
if (invokedDirectly) {
  const arg = process.argv[2];
  if (arg === '--help' || arg === '-h') {
    process.stdout.write('Usage: npm run report -w @jwt-mesh/loadtest -- [run folder]   (default .run/loadtest-10k: summary.json + mesh.json)\n');
  } else {
    try {
      process.stdout.write(reportFromDir(resolve(arg ?? join(process.env.INIT_CWD ?? process.cwd(), '.run', 'loadtest-10k'))));
    } catch (err) {
      process.stderr.write(`report: ${(err as Error).message}\n`);
      process.exitCode = 2;
    }
  }
}
