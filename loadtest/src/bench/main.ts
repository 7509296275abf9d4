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
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { k8sServiceHost } from '@jwt-mesh/envoy';
import { DEMO_USERS } from '@jwt-mesh/stack';
import { request } from 'undici';
import { runLoad } from '../runner.js';
import { login, refreshTokens } from '../tokens.js';
import { benchEdgeConfig, filterNames, type EnvoyMode } from './configs.js';
import { findCapacity } from './capacity.js';
import { cpuPerRequest, cpuSnapshot, foreignCores, machineBusyMs } from './procstat.js';
import { authzVerifier, httpVerifier, propagationTrial, summarisePropagation, type PropagationTrial, type Verifier } from './propagation.js';
import { evaluateAims, MANY_TOKEN_MODES, MODE_LABELS, renderMarkdown, type BenchMode, type BenchResult, type ModeResult, type StepResult } from './report.js';
import { runProfile } from './profile.js';
import { runGeneratorCost } from './generator-cost.js';
import { rawRs256PerSec } from './machine.js';
import { createManyTokens, type ManyTokens } from './many-tokens.js';
import { runTracingCost } from './tracing-cost.js';
import type { TokenSource } from '../runner.js';
import { HELP, LOADTEST_DIR, parseBenchArgs, type BenchOptions } from './options.js';
import { authSidecarPort, orderRoute, pathProcesses, startRig, stopRig, type Rig } from './rig.js';
import { runMeta, say, stepFigures, updateReadme, uptime } from './results.js';

async function statusOf(url: string, token: string | null): Promise<number> {
  const res = await request(url, { headers: token ? { authorization: `Bearer ${token}` } : {}, signal: AbortSignal.timeout(10_000) });
  await res.body.dump();
  return res.statusCode;
}

async function runBench(opts: BenchOptions): Promise<number> {
  const t0 = Date.now();
  const uptimeBefore = uptime();
  const loadBefore = loadavg();
  say(`uptime before: ${uptimeBefore}`);
  if (loadBefore[0] !== undefined && loadBefore[0] > cpus().length * 0.5) {
    say(`WARNING: the 1-minute load average (${loadBefore[0].toFixed(2)}) is above half the core count: figures will be noisy`);
  }
  const rawRs256 = rawRs256PerSec();
  say(`raw RS256 (node:crypto verify, one core): ${rawRs256.toLocaleString('en-US')}/s`);
  const rig = await startRig({ ...opts, chainNoauth: opts.modes.includes('chain_noauth') });
  // Modes 3m and 4m: fresh distinct tokens at the start of each (access tokens live 300 s).
  let many: ManyTokens | null = null;
  const freshMany = async (): Promise<ManyTokens> => {
    const alice = DEMO_USERS.find((u) => u.username === 'alice') ?? (DEMO_USERS[0] as (typeof DEMO_USERS)[number]);
    const t = Date.now();
    many = await createManyTokens({ baseUrl: rig.stack.state.urls.auth, user: { username: alice.username, password: alice.password }, count: opts.manyTokens, families: opts.manyFamilies });
    say(`${many.tokens.length} distinct tokens from ${many.families} logins and their refreshes in ${((Date.now() - t) / 1000).toFixed(1)} s`);
    return many;
  };
  const tokensFor = (mode: BenchMode): TokenSource => (MANY_TOKEN_MODES.has(mode) && many ? many : rig.tokens);
  const modes: ModeResult[] = [];
  let propagation: BenchResult['propagation'] = null;
  let halfRate: number | null = null;
  const stepSec = opts.trialSec;
  try {
    // Is authentication enforced where it should be?
    const enforced: Record<BenchMode, { withToken: number; withoutToken: number }> = {} as never;
    for (const mode of opts.modes) {
      const url = `${rig.targets[mode]}/api/orders/ord-1001`;
      enforced[mode] = { withToken: await statusOf(url, rig.tokens.accessToken(0)), withoutToken: await statusOf(url, null) };
      if (mode === 'chain_noauth' && enforced[mode].withoutToken !== 200) throw new Error(`chain_noauth: a request without a token got ${enforced[mode].withoutToken}, expected 200 (authentication off at every hop)`);
      say(`${mode}: ${rig.targets[mode]} with a token -> ${enforced[mode].withToken}, without -> ${enforced[mode].withoutToken}`);
      if (enforced[mode].withToken !== 200) throw new Error(`${mode}: a valid token got ${enforced[mode].withToken}, expected 200 (see .run/bench/logs)`);
    }

    /**
     * One step, re-measured when its failure may not be the system's: on a shared machine another
     * process can take the cores for a while, or a single stall can put p99 over the SLO while the
     * rate was held. A failing step is measured again (at most twice more) when other processes
     * used more than `--foreign-max-cores` of CPU during it, or when only its tail failed (rate held,
     * nothing lost). The least disturbed failing attempt is kept unless a later one passes; the
     * report says how many attempts a step took and how much foreign CPU it saw.
     */
    const step = async (mode: BenchMode, rate: number, durationSec = stepSec): Promise<StepResult> => {
      let best = await stepOnce(mode, rate, durationSec);
      const first = best;
      for (let attempt = 2; attempt <= 3 && !best.pass; attempt++) {
        const disturbed = best.foreignCores > opts.foreignMaxCores;
        const tailOnly = best.failed === 0 && best.achieved >= 0.95 * rate;
        if (!disturbed && !(tailOnly && attempt === 2)) break;
        say(`${mode.padEnd(9)} ${String(rate).padStart(6)} req/s: ${disturbed ? `other processes used ${best.foreignCores} cores` : 'only the tail failed (rate held, nothing lost)'}; measuring it again`);
        await sleep(disturbed ? 3000 : 500);
        const next = await stepOnce(mode, rate, durationSec);
        best = next.pass || next.foreignCores <= best.foreignCores ? next : best;
        best = { ...best, attempts: attempt, firstAttempt: { p99: first.p99, failed: first.failed, achieved: first.achieved } };
      }
      return best;
    };
    const stepOnce = async (mode: BenchMode, rate: number, durationSec = stepSec): Promise<StepResult> => {
      const procs = pathProcesses(mode, rig.accounted);
      const ours = () => Object.values(cpuSnapshot(rig.accounted)).reduce((a, b) => a + b, 0);
      const m0 = { machine: machineBusyMs(), ours: ours(), at: Date.now() };
      const before = cpuSnapshot(procs);
      const r = await runLoad({
        baseUrl: rig.targets[mode],
        ratePerSec: rate,
        durationSec,
        tokens: tokensFor(mode),
        routes: [orderRoute(mode === 'full' || mode === 'full_many' || mode === 'chain_noauth')],
        connections: opts.connections,
        timeoutMs: 2000,
        chainCheckEvery: mode === 'full' || mode === 'full_many' || mode === 'chain_noauth' ? 50 : 0,
        sloP99Ms: 200,
      });
      const after = cpuSnapshot(procs);
      const foreign = foreignCores(m0, { machine: machineBusyMs(), ours: ours(), at: Date.now() });
      const s: StepResult = {
        ...stepFigures(rate, r),
        cpuMsPerRequest: cpuPerRequest(before, after, r.answered),
        attempts: 1,
        foreignCores: foreign,
      };
      say(`${mode.padEnd(9)} ${String(rate).padStart(6)} req/s -> ${s.achieved} achieved, p50 ${s.p50} ms, p99 ${s.p99} ms, failed ${s.failed}, lag p99 ${s.lagP99} ms, foreign CPU ${foreign} cores: ${s.pass ? 'pass' : 'FAIL'}`);
      await sleep(1000); // let queues drain and the next step start clean
      return s;
    };

    for (const mode of opts.modes) {
      const filters =
        mode === 'full' || mode === 'full_many'
          ? ['envoy.filters.http.header_mutation', 'envoy.filters.http.ext_authz', 'envoy.filters.http.router']
          : mode === 'chain_noauth'
            ? ['envoy.filters.http.header_mutation', 'envoy.filters.http.router']
            : filterNames(benchEdgeConfigFor(rig, mode === 'ext_authz_many' ? 'ext_authz' : mode));
      const min = Math.min(...opts.rates);
      if (MANY_TOKEN_MODES.has(mode)) await freshMany();
      if (opts.warmupSec > 0) {
        // The warm-up of a many-token mode uses the 16-token pool: every many token stays cold.
        await runLoad({ baseUrl: rig.targets[mode], ratePerSec: min, durationSec: opts.warmupSec, tokens: rig.tokens, routes: [orderRoute(false)], chainCheckEvery: 0, timeoutMs: 2000 });
        await sleep(500);
      }
      const steps: StepResult[] = [];
      for (const rate of [...opts.rates].sort((a, b) => a - b)) {
        if (rate > opts.maxRate) break;
        const s = await step(mode, rate);
        steps.push(s);
        if (!s.pass) break; // higher rates would only fail slower
      }
      const search: StepResult[] = [];
      const searchStart = Date.now();
      const cap = opts.searchBudgetSec > 0
        ? await findCapacity(
            async (rate) => {
              const s = await step(mode, rate);
              search.push(s);
              return { rate, pass: s.pass };
            },
            {
              known: steps.map((s) => ({ rate: s.rate, pass: s.pass })),
              maxRate: opts.maxRate,
              haveTime: () => Date.now() - searchStart + (stepSec + 4) * 1000 <= opts.searchBudgetSec * 1000,
            },
          )
        : (() => {
            const passes = steps.filter((s) => s.pass).map((s) => s.rate);
            const lo = passes.length ? Math.max(...passes) : 0;
            const fail = steps.find((s) => !s.pass && s.rate > lo)?.rate ?? null;
            return { capacity: lo, firstFail: fail, trials: [], converged: false };
          })();
      say(`${mode}: capacity at the SLO ${cap.capacity} req/s${cap.firstFail ? ` (fails at ${cap.firstFail})` : ''}`);
      modes.push({
        mode,
        label: MODE_LABELS[mode],
        filters,
        target: rig.targets[mode],
        enforced: enforced[mode],
        steps,
        search,
        capacity: { rate: cap.capacity, firstFail: cap.firstFail, converged: cap.converged },
        half: null,
      });
    }

    const none = modes.find((m) => m.mode === 'none');
    if (none && none.capacity.rate > 0) {
      halfRate = Math.max(1, Math.round(none.capacity.rate / 2));
      say(`half of mode 1's capacity: ${halfRate} req/s for every mode but 5 and 4m`);
      // Modes 5 and 4m have their own comparison (modes 5 and 4 at half of mode 5's capacity);
      // half of mode 1's capacity is far beyond what any chain holds.
      for (const m of modes.filter((x) => x.mode !== 'chain_noauth' && x.mode !== 'full_many')) {
        if (MANY_TOKEN_MODES.has(m.mode)) await freshMany();
        m.half = await step(m.mode, halfRate);
      }
    }
    const noauth = modes.find((m) => m.mode === 'chain_noauth');
    const full = modes.find((m) => m.mode === 'full');
    if (noauth && full && noauth.capacity.rate > 0) {
      const rate = Math.max(1, Math.round(noauth.capacity.rate / 2));
      say(`half of mode 5's capacity: ${rate} req/s for modes 5 and 4 (the cost of authentication in the chain)`);
      noauth.halfChain = await step('chain_noauth', rate);
      full.halfChain = await step('full', rate);
    }

    if (opts.propagationTrials > 0) propagation = await measurePropagation(rig, opts.propagationTrials);
  } finally {
    await stopRig(rig);
  }
  const uptimeAfter = uptime();
  say(`uptime after: ${uptimeAfter}`);
  const result: BenchResult = {
    meta: {
      ...runMeta({ t0, loadBefore, rawRs256PerSec: rawRs256, uptimeBefore, uptimeAfter }),
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
    modes,
    halfRate,
    propagation,
    aims: [],
  };
  result.aims = evaluateAims(result);
  mkdirSync(opts.out, { recursive: true });
  const md = renderMarkdown(result);
  writeFileSync(join(opts.out, 'bench-latest.json'), `${JSON.stringify(result, null, 2)}\n`);
  writeFileSync(join(opts.out, 'bench-latest.md'), md);
  if (opts.readme && updateReadme(join(LOADTEST_DIR, 'README.md'), md)) say('updated the results table in loadtest/README.md');
  process.stdout.write(`\n${md}\n`);
  say(`results: ${join(opts.out, 'bench-latest.json')} and bench-latest.md`);
  return 0;
}

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
