/**
 * `make bench-authz` / `npm run bench -w @jwt-mesh/authz-service`: drives
 * `envoy.service.auth.v3.Authorization/Check` over gRPC at fixed arrival rates and prints a
 * markdown table of achieved rate, latency percentiles and errors per rate.
 *
 * - Open model: calls are scheduled on a timer at the target rate whatever the responses do,
 *   so a stalled server cannot slow the arrivals down (no coordinated omission). Latency is
 *   response time minus actual send time; the generator's own lateness (actual minus scheduled
 *   send time) is reported separately as "send lag", so a run where the generator could not
 *   keep its schedule is visible instead of silently measuring less load.
 * - The server runs as a child process (`src/main.ts`, the real entry point) by default, so the
 *   load generator does not share its event loop; `--in-process` runs it in this process.
 * - Real pieces: a JWK Set served over HTTP from a generated RS256 key, a pool of distinct
 *   tokens (each verified once, then served from the verified-token cache), revocation checked
 *   on every call against real Redis (with the core's short lookup cache, `REVOCATION_CACHE_TTL_MS`),
 *   a share of revoked tokens that must be denied, and mTLS between the client and the server
 *   unless `--plaintext`.
 *
 * Nothing is asserted: the issue's aim (p99 under 2 ms at 2,000 rps) is reported, not tested.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync, randomUUID, sign as cryptoSign, verify as cryptoVerify } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { cpus, loadavg } from 'node:os';
import * as grpc from '@grpc/grpc-js';
import { SignJWT, exportJWK, generateKeyPair } from 'jose';
import { createRedisRevocation } from '@jwt-mesh/core/redis';
import { loadAuthorizationProto } from '../src/proto.js';
import type { AuthorizationClient } from '../src/generated/envoy/service/auth/v3/Authorization.js';
import type { CheckRequest } from '../src/generated/envoy/service/auth/v3/CheckRequest.js';
import { makeTestCerts, type TestCerts } from '../test/helpers/certs.js';

const HELP = `Usage: npm run bench -w @jwt-mesh/authz-service -- [options]

Drives ext_authz Check over gRPC at fixed arrival rates (open model) and prints
achieved rate, p50/p90/p99/max latency (ms), errors and the generator's send lag.

Options:
  --rates <list>        comma-separated target rates, calls/s     (default 500,1000,2000,4000)
  --duration <s>        seconds measured per rate                  (default 5)
  --warmup <s>          seconds of warm-up at the first rate       (default 2)
  --tokens <n>          distinct valid tokens in the pool          (default 1000)
  --revoked <percent>   share of calls with a revoked token        (default 5)
  --channels <n>        gRPC client channels (HTTP/2 connections)  (default 2)
  --revocation-cache-ms <ms>  REVOCATION_CACHE_TTL_MS for the server; 0 = a Redis
                        round trip on every call                   (default: core default)
  --in-process          run the server in this process (default: a child process)
  --server-node-args=<flags>  extra node flags for the server child, e.g.
                        --server-node-args="--cpu-prof --cpu-prof-dir=prof"
                        (the = form: the value starts with a dash)  (default: none)
  --plaintext           no TLS between client and server (default: mTLS, as Envoy does)
  --redis-url <url>     Redis for revocation                       (default $REDIS_URL or redis://127.0.0.1:6379/0)
  --help                this text
`;

const { values: args } = parseArgs({
  options: {
    rates: { type: 'string', default: '500,1000,2000,4000' },
    duration: { type: 'string', default: '5' },
    warmup: { type: 'string', default: '2' },
    tokens: { type: 'string', default: '1000' },
    revoked: { type: 'string', default: '5' },
    channels: { type: 'string', default: '2' },
    'revocation-cache-ms': { type: 'string' },
    'in-process': { type: 'boolean', default: false },
    'server-node-args': { type: 'string', default: '' },
    plaintext: { type: 'boolean', default: false },
    'redis-url': { type: 'string', default: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379/0' },
    help: { type: 'boolean', default: false },
  },
  strict: true,
});

if (args.help) {
  process.stdout.write(HELP);
  process.exit(0);
}

function positive(name: string, raw: string, integer = true): number {
  const n = Number(raw);
  if (!Number.isFinite(n) || n < 0 || (integer && !Number.isInteger(n))) {
    console.error(`--${name}: expected a ${integer ? 'non-negative integer' : 'non-negative number'}, got ${JSON.stringify(raw)}`);
    process.exit(2);
  }
  return n;
}
const rates = args.rates.split(',').map((r) => positive('rates', r.trim()));
if (rates.length === 0 || rates.some((r) => r === 0)) {
  console.error('--rates: give at least one rate > 0');
  process.exit(2);
}
const durationS = positive('duration', args.duration, false);
const warmupS = positive('warmup', args.warmup, false);
const tokenCount = Math.max(1, positive('tokens', args.tokens));
const revokedPct = Math.min(100, positive('revoked', args.revoked, false));
const channelCount = Math.max(1, positive('channels', args.channels));
const redisUrl = args['redis-url'];

const here = dirname(fileURLToPath(import.meta.url));
const repoRoot = join(here, '..', '..');
const ISSUER = 'http://bench-issuer.local';
const AUDIENCE = 'jwt-mesh';
const prefix = `jwtmesh-bench:${randomUUID()}:`;

// Measured first, before the server, the token pool and the load exist.
const rawRs256 = rawRs256PerSecond();
console.error(`# raw RS256: ${Math.round(rawRs256)} node:crypto verifications/s on one core`);

// ---- issuer: key pair, JWKS endpoint, token pool -------------------------------------------
const { publicKey, privateKey } = await generateKeyPair('RS256', { modulusLength: 2048 });
const kid = `bench-${randomUUID().slice(0, 8)}`;
const jwks = JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid, alg: 'RS256', use: 'sig' }] });
const jwksServer = createServer((req, res) => {
  if (req.url === '/.well-known/jwks.json') res.writeHead(200, { 'content-type': 'application/jwk-set+json' }).end(jwks);
  else res.writeHead(404).end();
});
await new Promise<void>((r) => jwksServer.listen(0, '127.0.0.1', r));
const jwksUrl = `http://127.0.0.1:${(jwksServer.address() as AddressInfo).port}/.well-known/jwks.json`;

// Tokens live 300 s (the default max lifetime); a long run re-mints nothing, so cap the run.
const totalS = warmupS + rates.length * (durationS + 1);
if (totalS > 240) {
  console.error(`the run would take ${totalS} s; tokens live 300 s: use fewer rates or a shorter --duration`);
  process.exit(2);
}

interface PoolEntry {
  readonly request: CheckRequest;
  readonly revoked: boolean;
}

function checkRequest(token: string): CheckRequest {
  return {
    attributes: {
      source: { address: { socket_address: { address: '127.0.0.1', port_value: 53124 } } },
      destination: { address: { socket_address: { address: '127.0.0.1', port_value: 10000 } } },
      request: {
        http: {
          id: randomUUID(),
          method: 'GET',
          path: '/api/orders?limit=10',
          host: 'localhost:10000',
          scheme: 'http',
          protocol: 'HTTP/1.1',
          headers: {
            ':authority': 'localhost:10000',
            ':method': 'GET',
            ':path': '/api/orders?limit=10',
            ':scheme': 'http',
            accept: 'application/json',
            'user-agent': 'jwt-mesh-bench',
            'x-forwarded-proto': 'http',
            'x-request-id': randomUUID(),
            traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
            authorization: `Bearer ${token}`,
          },
        },
      },
    },
  };
}

const now = Math.floor(Date.now() / 1000);
const revokedEvery = revokedPct > 0 ? Math.max(1, Math.round(100 / revokedPct)) : 0;
const pool: PoolEntry[] = [];
const toRevoke: string[] = [];
for (let i = 0; i < tokenCount; i++) {
  const jti = randomUUID();
  const token = await new SignJWT({
    iss: ISSUER,
    aud: AUDIENCE,
    sub: `user-${i % 97}`,
    iat: now,
    exp: now + 300,
    jti,
    client_id: 'bench',
    scope: 'orders:read orders:write',
    sid: randomUUID(),
    roles: ['customer'],
  })
    .setProtectedHeader({ alg: 'RS256', kid, typ: 'at+jwt' })
    .sign(privateKey);
  const revoked = revokedEvery > 0 && i % revokedEvery === revokedEvery - 1;
  if (revoked) toRevoke.push(jti);
  pool.push({ request: checkRequest(token), revoked });
}

const publisher = createRedisRevocation({ redisUrl, prefix });
await publisher.ready();
// The issuer's re-sync: the revoked jtis, then the sync marker the verifiers require.
await publisher.resync(async () => {
  for (const jti of toRevoke) await publisher.revoke({ kind: 'jti', id: jti }, now + 600);
});

// ---- the server under test ------------------------------------------------------------------
let certs: TestCerts | undefined;
if (!args.plaintext) certs = makeTestCerts();

const serverEnv: NodeJS.ProcessEnv = {
  ...process.env,
  AUTHZ_PORT: '0',
  AUTHZ_HOST: '127.0.0.1',
  AUTHZ_METRICS_PORT: '0',
  AUTHZ_DEADLINE_MS: '200',
  JWT_ISSUER: ISSUER,
  JWT_AUDIENCE: AUDIENCE,
  JWKS_URL: jwksUrl,
  REDIS_URL: redisUrl,
  REDIS_PREFIX: prefix,
  LOG_LEVEL: 'info',
  ...(args['revocation-cache-ms'] !== undefined ? { REVOCATION_CACHE_TTL_MS: String(positive('revocation-cache-ms', args['revocation-cache-ms'])) } : {}),
  ...(certs
    ? { AUTHZ_TLS: 'true', AUTHZ_TLS_CERT: certs.files.serverCert, AUTHZ_TLS_KEY: certs.files.serverKey, AUTHZ_TLS_CA: certs.files.ca, AUTHZ_INSECURE_PLAINTEXT: 'false' }
    : { AUTHZ_INSECURE_PLAINTEXT: 'true', AUTHZ_TLS: '' }),
};

let child: ChildProcess | undefined;
let metricsUrl: string | undefined;
let metricsRegistry: { metrics(): Promise<string> } | undefined;

/** One scrape of the server's `/metrics`: what a step's figures are differences of. */
interface ServerSample {
  /** Cumulative `jwtmesh_authz_check_duration_seconds` bucket counts (both outcomes summed), by bound in seconds. */
  readonly checkBuckets: Map<number, number>;
  /** `process_cpu_user_seconds_total` + `process_cpu_system_seconds_total` (all threads); NaN in-process. */
  readonly cpuSeconds: number;
  /** `nodejs_gc_duration_seconds` (every kind summed): count, sum in seconds, cumulative buckets. */
  readonly gcCount: number;
  readonly gcSeconds: number;
  readonly gcBuckets: Map<number, number>;
}

/** Sums the cumulative buckets of one histogram over all its label sets, by `le` (seconds). */
function histogramBuckets(text: string, name: string): Map<number, number> {
  const out = new Map<number, number>();
  for (const m of text.matchAll(new RegExp(`^${name}_bucket\\{([^}]*)\\} (\\S+)$`, 'gm'))) {
    const le = /le="([^"]+)"/.exec(m[1]!)?.[1];
    if (le === undefined) continue;
    const bound = le === '+Inf' ? Number.POSITIVE_INFINITY : Number(le);
    out.set(bound, (out.get(bound) ?? 0) + Number(m[2]));
  }
  return out;
}

/** Sums every sample of `name` (a counter, or a histogram's `_sum` / `_count`) over its label sets. */
function total(text: string, name: string): number {
  let sum = 0;
  let seen = false;
  for (const m of text.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'gm'))) {
    sum += Number(m[1]);
    seen = true;
  }
  return seen ? sum : Number.NaN;
}

async function scrapeServer(): Promise<ServerSample> {
  const text = metricsUrl ? await (await fetch(metricsUrl)).text() : await metricsRegistry!.metrics();
  return {
    checkBuckets: histogramBuckets(text, 'jwtmesh_authz_check_duration_seconds'),
    cpuSeconds: total(text, 'process_cpu_user_seconds_total') + total(text, 'process_cpu_system_seconds_total'),
    gcCount: total(text, 'nodejs_gc_duration_seconds_count'),
    gcSeconds: total(text, 'nodejs_gc_duration_seconds_sum'),
    gcBuckets: histogramBuckets(text, 'nodejs_gc_duration_seconds'),
  };
}

/** The smallest bucket bound holding `p` % of the observations between two scrapes, in ms ("at most"). */
function bucketPercentile(before: Map<number, number>, after: Map<number, number>, p: number): string {
  const bounds = [...after.keys()].sort((a, b) => a - b);
  const count = (after.get(Number.POSITIVE_INFINITY) ?? 0) - (before.get(Number.POSITIVE_INFINITY) ?? 0);
  if (count <= 0) return 'n/a';
  for (const le of bounds) {
    if ((after.get(le) ?? 0) - (before.get(le) ?? 0) >= (p / 100) * count) return le === Number.POSITIVE_INFINITY ? '> 1000' : `≤ ${le * 1000}`;
  }
  return 'n/a';
}

/**
 * node:crypto RS256 verifications per second on one core, measured for about `ms` milliseconds
 * (a 2048-bit key, a JWT-sized signing input): the machine's yardstick, printed beside every
 * figure so that runs on machines of different speed can be read against each other (issue 12).
 */
function rawRs256PerSecond(ms = 500): number {
  const { publicKey: pub, privateKey: priv } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const data = Buffer.alloc(400, 'eyJhbGciOiJSUzI1NiIsInR5cCI6ImF0K2p3dCJ9');
  const signature = cryptoSign('sha256', data, priv);
  let n = 0;
  const start = performance.now();
  let elapsed = 0;
  do {
    for (let i = 0; i < 50; i++) if (!cryptoVerify('sha256', data, pub, signature)) throw new Error('raw RS256 verify failed');
    n += 50;
    elapsed = performance.now() - start;
  } while (elapsed < ms);
  return n / (elapsed / 1000);
}

let stopInProcess: (() => Promise<void>) | undefined;

/** Starts src/main.ts as a child and resolves its gRPC port once it logs "ready". */
function startChild(): Promise<number> {
  return new Promise((resolve, reject) => {
    const nodeArgs = args['server-node-args'].split(/\s+/).filter((a) => a !== '');
    child = spawn(process.execPath, [...nodeArgs, '--import', 'tsx', join(here, '..', 'src', 'main.ts')], {
      cwd: repoRoot,
      env: serverEnv,
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let port: number | undefined;
    const lines = createInterface({ input: child.stdout! });
    lines.on('line', (line) => {
      let entry: { msg?: string; port?: number; metricsPort?: number; level?: number };
      try {
        entry = JSON.parse(line) as typeof entry;
      } catch {
        return;
      }
      if (entry.msg === 'authz-service listening') {
        port = entry.port;
        metricsUrl = `http://127.0.0.1:${entry.metricsPort}/metrics`;
      }
      if (entry.msg?.startsWith('ready') && port !== undefined) resolve(port);
      if ((entry.level ?? 0) >= 40) process.stderr.write(`server: ${line}\n`);
    });
    child.once('exit', (code, signal) => reject(new Error(`server exited early (${code ?? signal})`)));
  });
}

/** The same wiring as main.ts, in this process (for --in-process). */
async function startInProcess(): Promise<number> {
  const { loadConfig } = await import('../src/config.js');
  const { loadPolicyFile } = await import('../src/policy.js');
  const { buildServer } = await import('../src/server.js');
  const { createAuthenticator, createRemoteKeySource, createVerifier } = await import('@jwt-mesh/core');
  const { pino } = await import('pino');
  const config = loadConfig(serverEnv);
  const v = config.verifier;
  const keys = createRemoteKeySource({ url: v.jwksUrl });
  const revocation = createRedisRevocation({ redisUrl: v.redisUrl, prefix: config.revocationKeyPrefix, cacheTtlMs: v.revocationCacheTtlMs });
  await revocation.ready();
  const authenticator = createAuthenticator({
    verifier: createVerifier({ issuer: v.issuer, audience: v.audience, keys }),
    revocation,
    policy: loadPolicyFile(config.policyFile),
    deadlineMs: config.deadlineMs,
  });
  const { createMetrics } = await import('../src/metrics.js');
  const metrics = createMetrics();
  metricsRegistry = metrics.registry;
  const authz = buildServer({
    authenticator,
    deadlineMs: config.deadlineMs,
    metrics,
    logger: pino({ level: 'warn' }),
    tls: certs ? { ca: certs.caCert, cert: certs.serverCert, key: certs.serverKey } : 'insecure-plaintext',
  });
  const port = await authz.start(0);
  stopInProcess = async () => {
    await authz.drain(1_000);
    await revocation.close();
  };
  return port;
}

const port = args['in-process'] ? await startInProcess() : await startChild();

const proto = loadAuthorizationProto();
const credentials = certs
  ? grpc.credentials.createSsl(certs.caCert, certs.clientKey, certs.clientCert)
  : grpc.credentials.createInsecure();
const clients: AuthorizationClient[] = Array.from(
  { length: channelCount },
  (_, i) =>
    new proto.envoy.service.auth.v3.Authorization(`127.0.0.1:${port}`, credentials, {
      'grpc.ssl_target_name_override': 'localhost',
      // Distinct channels = distinct HTTP/2 connections (Envoy opens one per worker).
      'grpc.channel_id': i,
      'grpc.use_local_subchannel_pool': 1,
    } as grpc.ChannelOptions),
);

// ---- open-model load -------------------------------------------------------------------------
interface RunResult {
  readonly target: number;
  readonly achieved: number;
  readonly sent: number;
  readonly allowed: number;
  readonly denied: number;
  readonly errors: number;
  /** Per call: response time minus actual send time, milliseconds. */
  readonly latenciesMs: Float64Array;
  /** Per call: actual send time minus scheduled time (how far the generator fell behind), milliseconds. */
  readonly lagMs: Float64Array;
}

let cursor = 0;

/**
 * Sends calls at `rate` per second for `seconds`, whatever the responses do (open model): a
 * 1 ms timer sends every call that is due; then waits for the stragglers.
 */
function run(rate: number, seconds: number): Promise<RunResult> {
  return new Promise((resolve) => {
    const total = Math.max(1, Math.round(rate * seconds));
    const latencies = new Float64Array(total);
    const lags = new Float64Array(total);
    const intervalNs = 1e9 / rate;
    let sent = 0;
    let done = 0;
    let allowed = 0;
    let denied = 0;
    let errors = 0;
    let lastDoneAt = 0n;
    const start = process.hrtime.bigint();
    const finish = (): void => {
      const elapsedS = Number(lastDoneAt - start) / 1e9;
      resolve({ target: rate, achieved: done / Math.max(elapsedS, seconds), sent, allowed, denied, errors, latenciesMs: latencies, lagMs: lags });
    };
    const tick = (): void => {
      const now = process.hrtime.bigint();
      const due = Math.min(total, Math.floor(Number(now - start) / intervalNs) + 1);
      while (sent < due) {
        const index = sent++;
        const sentAt = process.hrtime.bigint();
        lags[index] = Math.max(0, Number(sentAt - start) - index * intervalNs) / 1e6;
        const entry = pool[cursor++ % pool.length]!;
        const client = clients[index % clients.length]!;
        client.Check(entry.request, { deadline: Date.now() + 5_000 }, (err, res) => {
          const at = process.hrtime.bigint();
          latencies[index] = Number(at - sentAt) / 1e6;
          lastDoneAt = at;
          if (err || !res) errors++;
          else if (entry.revoked ? res.http_response === 'denied_response' : res.status?.code === 0) {
            if (entry.revoked) denied++;
            else allowed++;
          } else errors++; // a wrong decision counts as an error
          if (++done === total) finish();
        });
      }
      if (sent < total) setTimeout(tick, 1);
    };
    tick();
  });
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

const fmt = (n: number): string => (n < 10 ? n.toFixed(2) : n < 100 ? n.toFixed(1) : n.toFixed(0));

console.error(
  `# server: ${args['in-process'] ? 'in-process' : `child process (pid ${child?.pid})`}, ${certs ? 'mTLS' : 'plaintext'}, ` +
    `port ${port}; ${cpus().length} CPUs, load average ${loadavg().map((l) => l.toFixed(2)).join(' ')}; ${tokenCount} tokens (${toRevoke.length} revoked); ${channelCount} channel(s)`,
);
if (warmupS > 0) {
  console.error(`# warm-up: ${warmupS} s at ${rates[0]}/s`);
  await run(rates[0]!, warmupS);
}

const rows: string[] = [];
for (const rate of rates) {
  console.error(`# ${rate}/s for ${durationS} s ...`);
  const before = await scrapeServer();
  const r = await run(rate, durationS);
  const after = await scrapeServer();
  const load1 = loadavg()[0]!;
  const sorted = r.latenciesMs.slice().sort();
  const lag = r.lagMs.slice().sort();
  // Per Check the server decided (its own histogram count), not per call sent: calls the client
  // gave up on may never have reached the handler.
  const decided = (after.checkBuckets.get(Number.POSITIVE_INFINITY) ?? 0) - (before.checkBuckets.get(Number.POSITIVE_INFINITY) ?? 0);
  const cpuMsPerCheck = ((after.cpuSeconds - before.cpuSeconds) * 1000) / decided;
  const gcCount = after.gcCount - before.gcCount;
  const gcMs = (after.gcSeconds - before.gcSeconds) * 1000;
  rows.push(
    `| ${rate} | ${r.achieved.toFixed(0)} | ${r.sent} | ${fmt(percentile(sorted, 50))} | ${fmt(percentile(sorted, 90))} | ` +
      `${fmt(percentile(sorted, 99))} | ${fmt(sorted[sorted.length - 1] ?? Number.NaN)} | ${r.allowed} | ${r.denied} | ${r.errors} | ${fmt(percentile(lag, 99))} | ` +
      `${bucketPercentile(before.checkBuckets, after.checkBuckets, 50)} | ${bucketPercentile(before.checkBuckets, after.checkBuckets, 99)} | ` +
      `${Number.isNaN(cpuMsPerCheck) ? 'n/a' : cpuMsPerCheck.toFixed(3)} | ` +
      (Number.isNaN(gcCount)
        ? 'n/a | n/a | n/a | n/a | '
        : `${gcCount} | ${gcCount > 0 ? fmt(gcMs / gcCount) : '-'} | ${gcCount > 0 ? bucketPercentile(before.gcBuckets, after.gcBuckets, 100) : '-'} | ${fmt(gcMs)} | `) +
      `${load1.toFixed(2)} |`,
  );
  await new Promise((res) => setTimeout(res, 1_000)); // let the server settle between rates
}

console.log('');
console.log(
  `ext_authz Check over gRPC (${certs ? 'mTLS' : 'plaintext'}, server in ${args['in-process'] ? 'this process' : 'a child process'}), ` +
    `${durationS} s per rate; latency = response - send, seen by the client; "send lag" = how late the open-model generator sent (p99); ` +
    `"server" = time inside the Check handler from the server's own histogram (bucket upper bound); ` +
    `"CPU/Check" = the server process's user+sys CPU over the step / Checks it decided (all threads, from its process_cpu_*_seconds_total); ` +
    `"GC" = the server's GC pauses in the step (perf_hooks, nodejs_gc_duration_seconds: count, mean, max as a bucket upper bound, total); ` +
    `"load" = 1-minute load average after the step`,
);
console.log(`raw RS256 on this machine: ${Math.round(rawRs256).toLocaleString('en-US')} node:crypto verifications/s on one core (read the figures against it)`);
console.log('');
console.log(
  '| target rps | achieved rps | calls | p50 ms | p90 ms | p99 ms | max ms | allowed | denied (revoked) | errors | send lag p99 ms | server p50 ms | server p99 ms | ' +
    'server CPU ms/Check | GCs | GC mean ms | GC max ms | GC total ms | load |',
);
console.log('|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
for (const row of rows) console.log(row);
console.log('');
if (metricsUrl) {
  const text = await (await fetch(metricsUrl)).text();
  const lagP99 = Number(/^nodejs_eventloop_lag_p99_seconds (\S+)$/m.exec(text)?.[1] ?? Number.NaN);
  console.log(
    `server event-loop lag at the last scrape p99 ${fmt(lagP99 * 1000)} ms; ` +
      `load average at the end ${loadavg().map((l) => l.toFixed(2)).join(' ')} (other processes on this machine skew the tail)`,
  );
  console.log('');
}

// ---- teardown --------------------------------------------------------------------------------
for (const c of clients) c.close();
if (child) {
  const exited = new Promise((r) => child!.once('exit', r));
  child.kill('SIGTERM');
  await exited;
}
await stopInProcess?.();
await publisher.close();
jwksServer.close();
certs?.cleanup();
process.exit(0);
