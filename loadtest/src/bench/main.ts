/**
 * `make bench`: one run, side by side, on this machine, with the same Envoy binary and the same
 * upstream:
 *   1. no authentication (the floor);
 *   2. Envoy's native jwt_authn with the auth service's JWK Set (cannot revoke);
 *   3. jwt-mesh ext_authz (verification + revocation + route policy);
 *   4. the full path: ext_authz at the edge and local verification in orders -> inventory -> profile.
 * For each: a grid of arrival rates, then the capacity at the SLO (p99 < 200 ms, no failed
 * request), the step at half of mode 1's capacity, CPU per request by process; then the
 * revocation-propagation figure. Writes loadtest/results/bench-latest.{json,md} and the table in
 * loadtest/README.md. `--profile` instead runs the CPU-profile pass (see ./profile.ts);
 * `--tracing <list>` the tracing-cost comparison (see ./tracing-cost.ts).
 */
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { k8sServiceHost } from '@jwt-mesh/envoy';
import { DEMO_USERS } from '@jwt-mesh/stack';
import { request } from 'undici';
import type { TokenSource } from '../runner.js';
import { login, refreshTokens } from '../tokens.js';
import { benchEdgeConfig, filterNames, type EnvoyMode } from './configs.js';
import { runGeneratorCost } from './generator-cost.js';
import { createManyTokens, type ManyTokens } from './many-tokens.js';
import { HELP, parseBenchArgs, type BenchOptions } from './options.js';
import { cpuPerRequest } from './procstat.js';
import { runProfile } from './profile.js';
import { authzVerifier, httpVerifier, propagationTrial, summarisePropagation, type PropagationTrial, type Verifier } from './propagation.js';
import { evaluateAims, MANY_TOKEN_MODES, MODE_LABELS, renderMarkdown, type BenchMode, type BenchResult, type ModeResult, type RunMeta, type StepResult } from './report.js';
import { beginRun, endRun, say, stepFigures, writeResults } from './results.js';
import { authSidecarPort, pathProcesses, startRig, stopRig, type Rig } from './rig.js';
import { loadStep, measureCapacity, remeasureFailing, warmUp } from './steps.js';
import { runTracingCost } from './tracing-cost.js';

/** The HTTP status of GET `url`, with `token` as a Bearer token when given (10 s timeout, body discarded). */
async function statusOf(url: string, token: string | null): Promise<number> {
  const res = await request(url, { headers: token ? { authorization: `Bearer ${token}` } : {}, signal: AbortSignal.timeout(10_000) });
  await res.body.dump();
  return res.statusCode;
}

/** What `make bench` without another pass measures on one rig, and what it needs between steps. */
interface BenchRun {
  opts: BenchOptions;
  rig: Rig;
  /** Modes 3m and 4m: the distinct tokens of the mode running, fresh at its start (access tokens live 300 s). */
  many: ManyTokens | null;
}

/** The side-by-side run: every mode of `opts.modes` on one rig, the steps at half capacity, revocation propagation. @returns the exit status. */
async function runBench(opts: BenchOptions): Promise<number> {
  const start = beginRun();
  const rig = await startRig({ ...opts, chainNoauth: opts.modes.includes('chain_noauth') });
  const run: BenchRun = { opts, rig, many: null };
  const modes: ModeResult[] = [];
  let propagation: BenchResult['propagation'] = null;
  let halfRate: number | null = null;
  try {
    const enforced = await checkEnforced(rig, opts.modes);
    for (const mode of opts.modes) modes.push(await measureMode(run, mode, enforced[mode]));
    halfRate = await measureAtHalfCapacity(run, modes);
    if (opts.propagationTrials > 0) propagation = await measurePropagation(rig, opts.propagationTrials);
  } finally {
    await stopRig(rig);
  }
  const result = benchResult(opts, endRun(start), { modes, halfRate, propagation });
  writeResults(opts, 'bench-latest', result, renderMarkdown(result), { marker: 'bench', table: 'results table' });
  return 0;
}

/**
 * Is authentication enforced where it should be? One request with a valid token and one without
 * to each mode's target. @returns both statuses per mode
 * @throws Error when a valid token does not get 200, or mode 5 refuses a request without a token
 */
async function checkEnforced(rig: Rig, modes: readonly BenchMode[]): Promise<Record<BenchMode, { withToken: number; withoutToken: number }>> {
  const enforced: Record<BenchMode, { withToken: number; withoutToken: number }> = {} as never;
  for (const mode of modes) {
    const url = `${rig.targets[mode]}/api/orders/ord-1001`;
    enforced[mode] = { withToken: await statusOf(url, rig.tokens.accessToken(0)), withoutToken: await statusOf(url, null) };
    if (mode === 'chain_noauth' && enforced[mode].withoutToken !== 200) throw new Error(`chain_noauth: a request without a token got ${enforced[mode].withoutToken}, expected 200 (authentication off at every hop)`);
    say(`${mode}: ${rig.targets[mode]} with a token -> ${enforced[mode].withToken}, without -> ${enforced[mode].withoutToken}`);
    if (enforced[mode].withToken !== 200) throw new Error(`${mode}: a valid token got ${enforced[mode].withToken}, expected 200 (see .run/bench/logs)`);
  }
  return enforced;
}

/** Modes 3m and 4m: `opts.manyTokens` fresh distinct tokens from `opts.manyFamilies` logins and their refreshes. */
async function freshMany(run: BenchRun): Promise<ManyTokens> {
  const { opts, rig } = run;
  const alice = DEMO_USERS.find((u) => u.username === 'alice') ?? (DEMO_USERS[0] as (typeof DEMO_USERS)[number]);
  const t = Date.now();
  const many = await createManyTokens({ baseUrl: rig.stack.state.urls.auth, user: { username: alice.username, password: alice.password }, count: opts.manyTokens, families: opts.manyFamilies });
  run.many = many;
  say(`${many.tokens.length} distinct tokens from ${many.families} logins and their refreshes in ${((Date.now() - t) / 1000).toFixed(1)} s`);
  return many;
}

/** The tokens a step of `mode` sends: the many distinct ones in modes 3m and 4m, else the rig's pool. */
function tokensFor(run: BenchRun, mode: BenchMode): TokenSource {
  return MANY_TOKEN_MODES.has(mode) && run.many ? run.many : run.rig.tokens;
}

/** One step of `mode` at `rate` req/s, measured again when its failure may not be the system's (see {@link remeasureFailing}); the report says how many attempts it took and what the first one measured. */
async function step(run: BenchRun, mode: BenchMode, rate: number): Promise<StepResult> {
  return remeasureFailing(rate, run.opts.foreignMaxCores, () => stepOnce(run, mode, rate), {
    announce: (best, disturbed) =>
      say(`${mode.padEnd(9)} ${String(rate).padStart(6)} req/s: ${disturbed ? `other processes used ${best.foreignCores} cores` : 'only the tail failed (rate held, nothing lost)'}; measuring it again`),
    keep: (kept, attempt, first) => ({ ...kept, attempts: attempt, firstAttempt: { p99: first.p99, failed: first.failed, achieved: first.achieved } }),
  });
}

/** One measurement of `mode` at `rate` req/s for `--trial-sec`: latency, failures, CPU ms per request of the mode's path. */
async function stepOnce(run: BenchRun, mode: BenchMode, rate: number): Promise<StepResult> {
  const { r, before, after, foreign } = await loadStep(run.rig, mode, rate, run.opts, { tokens: tokensFor(run, mode), procs: pathProcesses(mode, run.rig.accounted) });
  const s: StepResult = {
    ...stepFigures(rate, r),
    cpuMsPerRequest: cpuPerRequest(before, after, r.answered),
    attempts: 1,
    foreignCores: foreign,
  };
  say(`${mode.padEnd(9)} ${String(rate).padStart(6)} req/s -> ${s.achieved} achieved, p50 ${s.p50} ms, p99 ${s.p99} ms, failed ${s.failed}, lag p99 ${s.lagP99} ms, foreign CPU ${foreign} cores: ${s.pass ? 'pass' : 'FAIL'}`);
  await sleep(1000); // let queues drain and the next step start clean
  return s;
}

/** The HTTP filters of the Envoy that serves `mode` (the stack's edge for modes 4 and 4m, the edge without ext_authz for mode 5). */
function modeFilters(rig: Rig, mode: BenchMode): string[] {
  return mode === 'full' || mode === 'full_many'
    ? ['envoy.filters.http.header_mutation', 'envoy.filters.http.ext_authz', 'envoy.filters.http.router']
    : mode === 'chain_noauth'
      ? ['envoy.filters.http.header_mutation', 'envoy.filters.http.router']
      : filterNames(benchEdgeConfigFor(rig, mode === 'ext_authz_many' ? 'ext_authz' : mode));
}

/** One mode: fresh many tokens where it needs them, the warm-up, the fixed rates and the capacity search. */
async function measureMode(run: BenchRun, mode: BenchMode, enforced: ModeResult['enforced']): Promise<ModeResult> {
  const { opts, rig } = run;
  const filters = modeFilters(rig, mode);
  if (MANY_TOKEN_MODES.has(mode)) await freshMany(run);
  await warmUp(rig, mode, opts);
  const { steps, search, capacity } = await measureCapacity((rate) => step(run, mode, rate), opts, opts.trialSec + 4);
  say(`${mode}: capacity at the SLO ${capacity.rate} req/s${capacity.firstFail ? ` (fails at ${capacity.firstFail})` : ''}`);
  return { mode, label: MODE_LABELS[mode], filters, target: rig.targets[mode], enforced, steps, search, capacity, half: null };
}

/**
 * Every mode but 5 and 4m once more at half of mode 1's capacity (`half`), and modes 5 and 4 at
 * half of mode 5's (`halfChain`: the cost of authentication in the chain), when those ran.
 * @returns half of mode 1's capacity, req/s, or null when mode 1 did not run or held nothing
 */
async function measureAtHalfCapacity(run: BenchRun, modes: ModeResult[]): Promise<number | null> {
  let halfRate: number | null = null;
  const none = modes.find((m) => m.mode === 'none');
  if (none && none.capacity.rate > 0) {
    halfRate = Math.max(1, Math.round(none.capacity.rate / 2));
    say(`half of mode 1's capacity: ${halfRate} req/s for every mode but 5 and 4m`);
    // Modes 5 and 4m have their own comparison (modes 5 and 4 at half of mode 5's capacity);
    // half of mode 1's capacity is far beyond what any chain holds.
    for (const m of modes.filter((x) => x.mode !== 'chain_noauth' && x.mode !== 'full_many')) {
      if (MANY_TOKEN_MODES.has(m.mode)) await freshMany(run);
      m.half = await step(run, m.mode, halfRate);
    }
  }
  const noauth = modes.find((m) => m.mode === 'chain_noauth');
  const full = modes.find((m) => m.mode === 'full');
  if (noauth && full && noauth.capacity.rate > 0) {
    const rate = Math.max(1, Math.round(noauth.capacity.rate / 2));
    say(`half of mode 5's capacity: ${rate} req/s for modes 5 and 4 (the cost of authentication in the chain)`);
    noauth.halfChain = await step(run, 'chain_noauth', rate);
    full.halfChain = await step(run, 'full', rate);
  }
  return halfRate;
}

/** The document `make bench` writes: the run's facts and settings, every mode, the aims met or not. */
function benchResult(opts: BenchOptions, meta: RunMeta & { rawRs256PerSec: number }, measured: Pick<BenchResult, 'modes' | 'halfRate' | 'propagation'>): BenchResult {
  const result: BenchResult = {
    meta: {
      ...meta,
      settings: {
        rates: opts.rates,
        trialSec: opts.trialSec,
        warmupSec: opts.warmupSec,
        searchBudgetSec: opts.searchBudgetSec,
        pool: opts.pool,
        manyTokens: opts.manyTokens,
        manyFamilies: opts.manyFamilies,
        connections: opts.connections,
        envoyConcurrency: opts.envoyConcurrency,
        maxRate: opts.maxRate,
        foreignMaxCores: opts.foreignMaxCores,
      },
      notes: [
        'Everything (load generator, Envoys, authz replicas, services, auth service, Redis, PostgreSQL) shares this machine; the generator\'s own CPU is in the CPU columns as "generator".',
        'Tokens come from a small pool, so after the first request per token every verifier answers from its verified-token cache (as in production, where a token is reused for its whole lifetime); revocation is still looked up on every request (short in-process cache + Redis, invalidated by pub/sub).',
      ],
    },
    sloP99Ms: 200,
    modes: measured.modes,
    halfRate: measured.halfRate,
    propagation: measured.propagation,
    aims: [],
  };
  result.aims = evaluateAims(result);
  return result;
}

/** The bench Envoy config of `mode` as the rig renders it (listener ports left to the OS), to read its HTTP filters. */
function benchEdgeConfigFor(rig: Rig, mode: EnvoyMode): Record<string, unknown> {
  const st = rig.stack.state;
  return benchEdgeConfig(mode, {
    ports: { edge: { http: 0, https: 0, admin: 0 }, authz: st.urls.authzGrpc, services: { auth: { inbound: authSidecarPort(st) } } },
    certDir: st.certDir,
    upstreamPort: rig.upstream.port,
    issuer: st.jwt.issuer,
    audience: st.jwt.audience,
  });
}

/** The revocation-propagation figure over `trials` trials (see ./propagation.ts). */
async function measurePropagation(rig: Rig, trials: number): Promise<NonNullable<BenchResult['propagation']>> {
  const st = rig.stack.state;
  const certs = rig.stack.certs;
  const edge = certs.workloads['edge'];
  if (!edge) throw new Error('no edge certificate in the stack PKI');
  const tls = { ca: readFileSync(certs.ca.cert), cert: readFileSync(edge.cert), key: readFileSync(edge.key), serverName: k8sServiceHost('authz') };
  const verifiers: Verifier[] = [
    ...st.urls.authzGrpc.map((addr, i) => authzVerifier(`authz-${i + 1}`, addr, tls, { method: 'GET', path: '/api/orders/ord-1001' })),
  ];
  const svc = st.urls.services;
  if (svc.orders) verifiers.push(httpVerifier('orders', svc.orders.app, '/api/orders/ord-none', 404));
  if (svc.inventory) verifiers.push(httpVerifier('inventory', svc.inventory.app, '/api/inventory/sku-none', 404));
  if (svc.profile) verifiers.push(httpVerifier('profile', svc.profile.app, '/api/profile/me', 200));
  const alice = DEMO_USERS.find((u) => u.username === 'alice') ?? (DEMO_USERS[0] as (typeof DEMO_USERS)[number]);
  let session = await login(st.urls.auth, { username: alice.username, password: alice.password });
  const results: PropagationTrial[] = [];
  const timeoutMs = 3000;
  say(`revocation propagation: ${trials} trials over ${verifiers.map((v) => v.name).join(', ')}`);
  try {
    for (let i = 0; i < trials; i++) {
      session = await refreshTokens(st.urls.auth, session.refresh_token);
      const token = session.access_token;
      const revoke = async () => {
        const res = await request(`${st.urls.auth}/auth/revoke`, {
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
          body: new URLSearchParams({ token, token_type_hint: 'access_token' }).toString(),
          signal: AbortSignal.timeout(10_000),
        });
        await res.body.dump();
        if (res.statusCode !== 200) throw new Error(`POST /auth/revoke answered ${res.statusCode}`);
      };
      results.push(await propagationTrial(verifiers, token, revoke, timeoutMs));
      await sleep(50);
    }
  } finally {
    await Promise.all(verifiers.map((v) => v.close()));
  }
  const summary = summarisePropagation(results);
  say(`revocation propagation: every verifier p50 ${summary.all.p50} ms, p99 ${summary.all.p99} ms, max ${summary.all.max} ms`);
  return { ...summary, verifiers: verifiers.map((v) => v.name), timeoutMs };
}

/** Entry point. @returns the exit status. */
export async function main(argv: string[]): Promise<number> {
  let opts: BenchOptions | 'help';
  try {
    opts = parseBenchArgs(argv);
  } catch (e) {
    process.stderr.write(`bench: ${(e as Error).message}\n\n${HELP}`);
    return 2;
  }
  if (opts === 'help') {
    process.stdout.write(HELP);
    return 0;
  }
  if (opts.profile) return runProfile(opts);
  if (opts.generatorCost) return runGeneratorCost(opts, opts.generatorRates);
  if (opts.tracing) return runTracingCost(opts);
  return runBench(opts);
}

if (process.argv[1] && /[/\\]bench[/\\]main\.[tj]s$/.test(process.argv[1])) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (e: unknown) => {
      process.stderr.write(`bench: ${(e as Error).stack ?? String(e)}\n`);
      process.exitCode = 1;
    },
  );
}
