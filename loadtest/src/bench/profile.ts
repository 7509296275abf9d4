/**
 * The CPU-profile pass (`make bench BENCH_ARGS=--profile`): the same rig as `make bench`, with
 * the V8 sampling profiler (what `node --cpu-prof` runs, started by ./cpu-prof-preload.mjs) on both authz-service replicas and on the three services, driven through
 * mode 3 (the bench Envoy with ext_authz: authz work only) and then mode 4 (the full chain), each
 * at a fixed arrival rate, then mode 4 alone at a low rate (`--profile-low-rate`, default 20 req/s). After the stack stops (the profiles are written at exit), every
 * `.cpuprofile` is summarised: busy CPU per request, the share of time by component (gRPC,
 * protobuf, logging, the verification core, Node internals, GC ...) and the top frames by self
 * time. Writes loadtest/results/profile-latest.{md,json}; the raw profiles stay in
 * loadtest/results/tmp/ (not committed; open them in Chrome DevTools or speedscope).
 * `--profile --tracing <percentage>` runs the same pass on a rig traced as `make up TRACING=on`
 * at that edge sampling percentage, and writes loadtest/results/profile-tracing-latest.{md,json}:
 * the OpenTelemetry SDK and its OTLP exporter are categories of their own.
 */
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join, relative } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { runLoad } from '../runner.js';
import type { BenchOptions } from './options.js';
import { LOADTEST_DIR } from './options.js';
import { orderRoute, startRig, stopRig } from './rig.js';

/** The parts of a V8 `.cpuprofile` (Chrome DevTools Profiler.Profile) this module reads. */
export interface CpuProfile {
  nodes: Array<{ id: number; callFrame: { functionName: string; url: string; lineNumber: number }; hitCount?: number }>;
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas?: number[];
}

/** A frame's self time. */
export interface FrameTime {
  frame: string;
  category: string;
  selfMs: number;
  /** Percentage of the busy (non-idle) time. */
  pct: number;
}

/** Summary of one profile. */
export interface ProfileSummary {
  file: string;
  /** Wall time covered by the profile, ms. */
  wallMs: number;
  /** Non-idle time (JS, native, GC), ms. */
  busyMs: number;
  /** Busy time by category, percentages of busy time, largest first. */
  categories: Array<{ category: string; ms: number; pct: number }>;
  /**
   * Busy time by the nearest *package* on the stack: native, Node-core, GC-free samples are
   * charged to the closest caller that belongs to an npm package or to jwt-mesh code (so a
   * socket write done for a log line counts as logging). Percentages of busy time.
   */
  attributed: Array<{ category: string; ms: number; pct: number }>;
  /** Top frames by self time. */
  top: FrameTime[];
}

/** Categories that are not a package: their time is charged to the nearest package caller in `attributed`. */
const LOW_LEVEL = /^(native bindings|Node |module loading|V8\/native)/;

/** The component a frame belongs to, from its script URL and function name. */
export function categoryOf(url: string, functionName: string): string {
  if (functionName === '(idle)') return 'idle';
  if (functionName === '(garbage collector)') return 'GC';
  if (functionName === '(program)') return 'V8/native (program)';
  if (functionName === '(root)') return 'root';
  const u = url.replace(/\\/g, '/');
  const pkgs: Array<[RegExp, string]> = [
    [/node_modules\/@grpc\/grpc-js\//, 'grpc-js'],
    [/node_modules\/@grpc\/proto-loader\/|node_modules\/protobufjs\//, 'protobufjs'],
    [/node_modules\/(pino|sonic-boom|thread-stream|fast-redact|@pinojs|pino-std-serializers|quick-format-unescaped|on-exit-leak-free|safe-stable-stringify)\//, 'logging (pino)'],
    [/node_modules\/(prom-client|tdigest|bintrees)\//, 'metrics (prom-client)'],
    [/node_modules\/(ioredis|redis-parser|denque|cluster-key-slot|@ioredis)\//, 'redis client (ioredis)'],
    [/node_modules\/jose\//, 'jose'],
    [/node_modules\/lru-cache\//, 'lru-cache'],
    [/node_modules\/zod\//, 'zod'],
    [/node_modules\/(fastify|find-my-way|avvio|light-my-request|@fastify|fast-json-stringify|fast-querystring|process-warning|abstract-logging|toad-cache|safe-regex2|ret)\//, 'fastify'],
    [/node_modules\/undici\//, 'undici'],
    [/node_modules\/@opentelemetry\/(exporter-|otlp-)/, 'OpenTelemetry OTLP exporter (serialise, send)'],
    [/node_modules\/@opentelemetry\//, 'OpenTelemetry SDK and API (spans, context, sampler)'],
    [/node_modules\/(tsx|esbuild|get-tsconfig)\//, 'tsx (loader)'],
    [/packages\/core\//, 'jwt-mesh core (verify, policy, revocation)'],
    [/packages\/(fastify-auth|grpc-auth)\//, 'jwt-mesh adapters (fastify-auth, grpc-auth)'],
    [/authz-service\/src\//, 'authz-service (Check adapter, metrics, logging glue)'],
    [/packages\/runtime\//, 'runtime'],
    [/services\/(orders|inventory|profile)\//, 'service handlers'],
    [/node_modules\//, 'other npm packages'],
  ];
  for (const [re, name] of pkgs) if (re.test(u)) return name;
  if (u === '' && /^[A-Z]\w*\$(decode|encode|toObject|fromObject|verify)$/.test(functionName)) return 'protobufjs';
  if (u === '') return 'native bindings (socket writes, crypto, ...)';
  const nodeParts: Array<[RegExp, string]> = [
    [/^node:internal\/http2\//, 'Node http2 (gRPC transport)'],
    [/^node:(_http_|http$|internal\/http)/, 'Node http/1.1'],
    [/^node:(_tls_|tls$|internal\/tls)/, 'Node TLS'],
    [/^node:internal\/crypto|^node:crypto/, 'Node crypto'],
    [/^node:(net|stream|internal\/streams|internal\/stream_base_commons|internal\/net)/, 'Node net/streams'],
    [/^node:internal\/modules|^node:internal\/source_map/, 'module loading'],
    [/^node:/, 'Node core (other: events, timers, buffers, ...)'],
  ];
  for (const [re, name] of nodeParts) if (re.test(u)) return name;
  return 'other';
}

/**
 * Summarises a profile: self time per node from the sample counts (each sample stands for the
 * profile's mean sampling interval), grouped by frame (function, file, line) and by category.
 */
export function summariseProfile(profile: CpuProfile, file: string, topN = 15): ProfileSummary {
  const parent = new Map<number, number>();
  for (const node of profile.nodes as Array<CpuProfile['nodes'][number] & { children?: number[] }>) {
    for (const c of node.children ?? []) parent.set(c, node.id);
  }
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const attributedOf = (id: number): string => {
    const own = byId.get(id);
    const ownCat = own ? categoryOf(own.callFrame.url, own.callFrame.functionName) : 'other';
    if (!LOW_LEVEL.test(ownCat)) return ownCat;
    for (let p = parent.get(id); p !== undefined; p = parent.get(p)) {
      const n = byId.get(p);
      if (!n) break;
      const c = categoryOf(n.callFrame.url, n.callFrame.functionName);
      if (c === 'root') break;
      if (!LOW_LEVEL.test(c)) return c;
    }
    return ownCat;
  };
  const attributed = new Map<string, number>();
  const wallMs = (profile.endTime - profile.startTime) / 1000;
  const perSampleMs = profile.samples.length > 0 ? wallMs / profile.samples.length : 0;
  const hits = new Map<number, number>();
  for (const id of profile.samples) hits.set(id, (hits.get(id) ?? 0) + 1);
  const byFrame = new Map<string, { category: string; ms: number }>();
  const byCategory = new Map<string, number>();
  let idleMs = 0;
  for (const node of profile.nodes) {
    const n = hits.get(node.id) ?? 0;
    if (n === 0) continue;
    const ms = n * perSampleMs;
    const cf = node.callFrame;
    const category = categoryOf(cf.url, cf.functionName);
    if (category === 'idle' || category === 'root') {
      idleMs += ms;
      continue;
    }
    const where = cf.url ? `${shortUrl(cf.url)}:${cf.lineNumber + 1}` : '';
    const key = `${cf.functionName || '(anonymous)'}${where ? ` ${where}` : ''}`;
    const prev = byFrame.get(key);
    byFrame.set(key, { category, ms: (prev?.ms ?? 0) + ms });
    byCategory.set(category, (byCategory.get(category) ?? 0) + ms);
    const a = category === 'GC' ? 'GC' : attributedOf(node.id);
    attributed.set(a, (attributed.get(a) ?? 0) + ms);
  }
  const busyMs = Math.max(wallMs - idleMs, 0);
  const pct = (ms: number) => (busyMs > 0 ? Math.round((ms / busyMs) * 1000) / 10 : 0);
  const r1 = (x: number) => Math.round(x * 10) / 10;
  return {
    file,
    wallMs: r1(wallMs),
    busyMs: r1(busyMs),
    categories: [...byCategory.entries()].sort((a, b) => b[1] - a[1]).map(([category, ms]) => ({ category, ms: r1(ms), pct: pct(ms) })),
    attributed: [...attributed.entries()].sort((a, b) => b[1] - a[1]).map(([category, ms]) => ({ category, ms: r1(ms), pct: pct(ms) })),
    top: [...byFrame.entries()]
      .sort((a, b) => b[1].ms - a[1].ms)
      .slice(0, topN)
      .map(([frame, v]) => ({ frame, category: v.category, selfMs: r1(v.ms), pct: pct(v.ms) })),
  };
}

function shortUrl(url: string): string {
  const u = url.replace(/^file:\/\//, '');
  const nm = u.lastIndexOf('node_modules/');
  if (nm >= 0) return u.slice(nm + 'node_modules/'.length);
  const m = /(packages|services|authz-service|auth-service)\/.*/.exec(u);
  return m ? m[0] : u;
}

function findProfiles(dir: string): string[] {
  try {
    return readdirSync(dir)
      .filter((f) => f.endsWith('.cpuprofile'))
      .map((f) => join(dir, f));
  } catch {
    return [];
  }
}

/** Renders profile summaries as markdown. */
export function renderProfileMarkdown(
  parts: Array<{ part: string; requests: number; summary: ProfileSummary }>,
  meta: { date: string; rate: number; fullRate: number; lowRate?: number; sec: number; edgeSamplePercent?: number | null },
): string {
  const L: string[] = [];
  L.push(`### CPU profile${typeof meta.edgeSamplePercent === 'number' ? `, tracing on (the edge samples ${meta.edgeSamplePercent} %)` : ''} — ${meta.date}`);
  L.push('');
  L.push(`V8 sampling profiler (as \`node --cpu-prof\`, 1 ms interval) in each process during the load window only (after a warm-up): mode 3 (bench Envoy + ext_authz) at ${meta.rate} req/s, then mode 4 (full chain) at ${meta.fullRate} req/s, ${meta.sec} s each${meta.lowRate ? `; then a second window, mode 4 alone at a low rate, ${meta.lowRate} req/s (rows "@ ${meta.lowRate} req/s")` : ''}. Load average at the end: ${loadavg().map((x) => x.toFixed(2)).join(' ')}. "busy" = not idle.`);
  L.push('');
  L.push('| process | requests seen | busy CPU (ms) | CPU µs / request | where the busy time goes (charged to the nearest package on the stack) |');
  L.push('|---|---:|---:|---:|---|');
  for (const p of parts) {
    const per = p.requests > 0 ? Math.round((p.summary.busyMs * 1000) / p.requests) : 0;
    const cats = p.summary.attributed.slice(0, 7).map((c) => `${c.category} ${c.pct} %`).join('; ');
    L.push(`| ${p.part} | ${p.requests} | ${p.summary.busyMs} | ${per} | ${cats} |`);
  }
  for (const p of parts) {
    L.push('');
    L.push(`**${p.part}: top frames by self time**`);
    L.push('');
    L.push('| self ms | % busy | frame | category |');
    L.push('|---:|---:|---|---|');
    for (const f of p.summary.top.slice(0, 12)) L.push(`| ${f.selfMs} | ${f.pct} | \`${f.frame.replace(/\|/g, '\\|')}\` | ${f.category} |`);
  }
  L.push('');
  return L.join('\n');
}

/** Runs the profile pass. @returns the exit status. */
export async function runProfile(opts: BenchOptions): Promise<number> {
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const profDir = join(LOADTEST_DIR, 'results', 'tmp', `profile-${stamp}`);
  const authzDir = join(profDir, 'authz');
  const servicesDir = join(profDir, 'services');
  mkdirSync(authzDir, { recursive: true });
  mkdirSync(servicesDir, { recursive: true });
  // Node 20 refuses --cpu-prof in NODE_OPTIONS; a preload module starts the same V8 profiler.
  const preload = `--import ${join(LOADTEST_DIR, 'src', 'bench', 'cpu-prof-preload.mjs')}`;
  // --profile --tracing <percentage>: the same pass on a rig traced as make up TRACING=on (one percentage, checked by parseBenchArgs).
  const edgeSamplePercent = typeof opts.tracing?.[0] === 'number' ? opts.tracing[0] : null;
  const rig = await startRig({ ...opts, edgeSamplePercent }, {
    authz: { NODE_OPTIONS: preload, JWT_MESH_CPU_PROF_DIR: authzDir },
    services: { NODE_OPTIONS: preload, JWT_MESH_CPU_PROF_DIR: servicesDir },
  });
  const pids = new Map(rig.stack.state.processes.map((p) => [p.pid, p.name]));
  const profiled = rig.stack.state.processes.filter((p) => p.name.startsWith('authz-') || ['orders', 'inventory', 'profile'].includes(p.name));
  const toggle = () => {
    for (const p of profiled) process.kill(p.pid, 'SIGUSR2');
  };
  const counts: Record<string, number> = {};
  try {
    // Warm up (JIT, connections, caches) before the profile window opens.
    const rateOf = (mode: 'ext_authz' | 'full') => (mode === 'full' ? opts.profileFullRate : opts.profileRate);
    for (const mode of ['ext_authz', 'full'] as const) {
      await runLoad({ baseUrl: rig.targets[mode], ratePerSec: rateOf(mode), durationSec: 3, tokens: rig.tokens, routes: [orderRoute(false)], timeoutMs: 2000, chainCheckEvery: 0 });
    }
    await sleep(500);
    toggle(); // start the profilers
    for (const mode of ['ext_authz', 'full'] as const) {
      process.stdout.write(`profile: ${mode} at ${rateOf(mode)} req/s for ${opts.profileSec} s\n`);
      const r = await runLoad({
        baseUrl: rig.targets[mode],
        ratePerSec: rateOf(mode),
        durationSec: opts.profileSec,
        tokens: rig.tokens,
        routes: [orderRoute(mode === 'full')],
        timeoutMs: 2000,
        chainCheckEvery: 0,
      });
      process.stdout.write(`profile: ${mode}: achieved ${r.achievedRate} req/s, p50 ${r.latency.p50} ms, p99 ${r.latency.p99} ms, failed ${r.failed}\n`);
      counts[mode] = r.answered;
      await sleep(500);
    }
    toggle(); // stop them: each process writes its .cpuprofile
    await sleep(1500);
    if (opts.profileLowRate > 0) {
      // A second window at a low rate through mode 4: where each hop's CPU goes when nothing
      // queues (each process writes a second, later .cpuprofile).
      toggle();
      process.stdout.write(`profile: full at ${opts.profileLowRate} req/s (low rate) for ${opts.profileSec} s\n`);
      const r = await runLoad({ baseUrl: rig.targets.full, ratePerSec: opts.profileLowRate, durationSec: opts.profileSec, tokens: rig.tokens, routes: [orderRoute(true)], timeoutMs: 2000, chainCheckEvery: 0 });
      process.stdout.write(`profile: full (low rate): achieved ${r.achievedRate} req/s, p50 ${r.latency.p50} ms, p99 ${r.latency.p99} ms, failed ${r.failed}\n`);
      counts.low = r.answered;
      await sleep(500);
      toggle();
      await sleep(1500);
    }
  } finally {
    await stopRig(rig);
  }
  const parts: Array<{ part: string; requests: number; summary: ProfileSummary }> = [];
  const checks = (counts.ext_authz ?? 0) + (counts.full ?? 0);
  // CPU.<time>.<pid>...: per process, the first file is the high-rate window, the second the low-rate one.
  const files = [...findProfiles(authzDir), ...findProfiles(servicesDir)].sort((a, b) => Number(/CPU\.(\d+)\./.exec(a)?.[1]) - Number(/CPU\.(\d+)\./.exec(b)?.[1]));
  const seenPid = new Set<number>();
  for (const file of files) {
    const pid = Number(/\.(\d+)\.\d+\.\d+\.cpuprofile$/.exec(file)?.[1]);
    const low = seenPid.has(pid);
    seenPid.add(pid);
    const name = pids.get(pid) ?? `pid ${pid}`;
    const part = low ? `${name} @ ${opts.profileLowRate} req/s` : name;
    const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
    // Each edge request is one Check on one of the replicas (least-request balancing: about half each).
    const replicas = rig.stack.state.urls.authzGrpc.length;
    const seen = low ? (counts.low ?? 0) : name.startsWith('authz-') ? checks : (counts.full ?? 0);
    const requests = name.startsWith('authz-') ? Math.round(seen / replicas) : seen;
    parts.push({ part, requests, summary: summariseProfile(profile, relative(LOADTEST_DIR, file)) });
  }
  parts.sort((a, b) => a.part.localeCompare(b.part));
  if (parts.length === 0) {
    process.stderr.write(`profile: no .cpuprofile written under ${profDir} (did the processes exit cleanly?)\n`);
    return 1;
  }
  const md = renderProfileMarkdown(parts, { date: new Date().toISOString(), rate: opts.profileRate, fullRate: opts.profileFullRate, lowRate: opts.profileLowRate, sec: opts.profileSec, edgeSamplePercent });
  const out = join(LOADTEST_DIR, 'results');
  const base = edgeSamplePercent === null ? 'profile-latest' : 'profile-tracing-latest';
  writeFileSync(join(out, `${base}.md`), md);
  writeFileSync(join(out, `${base}.json`), `${JSON.stringify({ counts, edgeSamplePercent, parts }, null, 2)}\n`);
  process.stdout.write(`\n${md}\nprofile: raw profiles in ${relative(process.cwd(), profDir)}; summary in loadtest/results/${base}.md\n`);
  if (process.env.KEEP_PROFILES !== '1') {
    // Keep only the newest raw set; older ones are large and never committed.
    for (const d of readdirSync(join(out, 'tmp')).filter((d) => d.startsWith('profile-') && d !== `profile-${stamp}`)) {
      rmSync(join(out, 'tmp', d), { recursive: true, force: true });
    }
  }
  return 0;
}
