/**
 * Verification benchmark for @jwt-mesh/core (`make bench-verify`, `npm run bench -w @jwt-mesh/core`).
 *
 * For RS256, ES256 and EdDSA, on one core, one verification at a time, it prints
 * verifications per second and p50/p99 latency (microseconds) of:
 *   (a) raw      node:crypto.verify of the same token's signing input and signature (buffers
 *                prepared once: the physical limit);
 *   (b) jose     plain jose.jwtVerify (WebCrypto) with issuer/audience/typ/alg checks;
 *   (c) full     authenticator.decide(): Bearer parsing, size/header/alg/typ/kid, key lookup,
 *                signature, claims, revocation (Redis store, in-process cache hit), requirement;
 *                the verified-token cache is off;
 *   (d) cached   authenticator.decide() on a repeated token served from the verified-token
 *                cache (revocation still checked, from its cache).
 * and the ratio full/raw. No assertions: figures only.
 */
import { constants, generateKeyPairSync, sign, verify as cryptoVerify, type KeyObject } from 'node:crypto';
import { availableParallelism, loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { importJWK, jwtVerify, type JWK } from 'jose';
import type { JwsAlgorithm } from '../src/algorithms.js';
import { createAuthenticator } from '../src/authenticate.js';
import { createLocalKeySource } from '../src/jwks.js';
import { createMemoryRevocationForTests } from '../src/revocation/memory.js';
import { createRedisRevocation } from '../src/revocation/redis.js';
import type { RevocationChecker } from '../src/types.js';
import { createVerifier } from '../src/verify.js';

const HELP = `Usage: npm run bench -w @jwt-mesh/core -- [options]

Measures token verification on one core: raw node:crypto.verify, jose.jwtVerify, the core's
full check (claims + revocation cache hit), and the verified-token cache.

Options:
  --duration-ms <n>  measuring time per case, milliseconds (default 1500; warm-up is 1/5 of it)
  --alg <list>       comma-separated subset of RS256,ES256,EdDSA (default all)
  --redis-url <url>  Redis for the revocation store (default $REDIS_URL or redis://127.0.0.1:6379/0);
                     if it is not reachable within 2 s an in-memory checker is used and said so
  --json             also print the results as JSON
  -h, --help         this text
`;

const { values: args } = parseArgs({
  options: {
    'duration-ms': { type: 'string', default: '1500' },
    alg: { type: 'string', default: 'RS256,ES256,EdDSA' },
    'redis-url': { type: 'string', default: process.env['REDIS_URL'] ?? 'redis://127.0.0.1:6379/0' },
    json: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (args.help) {
  process.stdout.write(HELP);
  process.exit(0);
}
const durationMs = Number(args['duration-ms']);
if (!Number.isFinite(durationMs) || durationMs < 100) {
  process.stderr.write('--duration-ms must be a number >= 100\n');
  process.exit(2);
}
const algs = args.alg.split(',').map((a) => a.trim()) as JwsAlgorithm[];
for (const a of algs) {
  if (a !== 'RS256' && a !== 'ES256' && a !== 'EdDSA') {
    process.stderr.write(`unknown --alg ${a}\n`);
    process.exit(2);
  }
}

const ISSUER = 'https://issuer.bench';
const AUDIENCE = 'jwt-mesh';

interface Result {
  alg: JwsAlgorithm;
  kind: 'raw' | 'jose' | 'full' | 'cached';
  opsPerSec: number;
  p50us: number;
  p99us: number;
  n: number;
}

function keyPair(alg: JwsAlgorithm): { privateKey: KeyObject; publicKey: KeyObject } {
  if (alg === 'RS256') return generateKeyPairSync('rsa', { modulusLength: 2048 });
  if (alg === 'ES256') return generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return generateKeyPairSync('ed25519');
}

function signToken(alg: JwsAlgorithm, kid: string, privateKey: KeyObject, jti: string): string {
  const now = Math.floor(Date.now() / 1000);
  const header = { alg, kid, typ: 'at+jwt' };
  const payload = {
    iss: ISSUER,
    sub: 'user-42',
    aud: AUDIENCE,
    exp: now + 300,
    iat: now,
    jti,
    client_id: 'web',
    scope: 'orders:read orders:write profile:read',
    sid: 'sid-bench',
    roles: ['user'],
  };
  const input = `${Buffer.from(JSON.stringify(header)).toString('base64url')}.${Buffer.from(JSON.stringify(payload)).toString('base64url')}`;
  const data = Buffer.from(input);
  const sig =
    alg === 'RS256'
      ? sign('sha256', data, privateKey)
      : alg === 'ES256'
        ? sign('sha256', data, { key: privateKey, dsaEncoding: 'ieee-p1363' })
        : sign(null, data, privateKey);
  return `${input}.${sig.toString('base64url')}`;
}

/** Runs `fn` back to back for `ms`, recording each call's latency (ns). */
async function measure(fn: () => unknown, ms: number): Promise<{ opsPerSec: number; p50us: number; p99us: number; n: number }> {
  const warmEnd = performance.now() + ms / 5;
  while (performance.now() < warmEnd) await fn();
  const cap = 4_000_000;
  const samples = new Float64Array(cap);
  let n = 0;
  const start = process.hrtime.bigint();
  const end = start + BigInt(Math.round(ms * 1e6));
  let t0 = start;
  for (;;) {
    const r = fn();
    if (r instanceof Promise) await r;
    const t1 = process.hrtime.bigint();
    if (n < cap) samples[n++] = Number(t1 - t0);
    t0 = t1;
    if (t1 >= end) break;
  }
  const elapsedNs = Number(t0 - start);
  const sorted = samples.subarray(0, n).sort();
  const q = (p: number) => sorted[Math.min(n - 1, Math.floor(p * n))]! / 1000;
  return { opsPerSec: (n / elapsedNs) * 1e9, p50us: q(0.5), p99us: q(0.99), n };
}

async function revocationChecker(): Promise<{ checker: RevocationChecker; label: string; close(): Promise<void> }> {
  const redis = createRedisRevocation({
    redisUrl: args['redis-url'],
    prefix: `jwtmesh-bench:${process.pid}:`,
    cacheTtlMs: 60_000, // every lookup after the first is a cache hit, as in steady state
  });
  try {
    await redis.ready(2_000);
    await redis.resync(async () => undefined); // the issuer's re-sync marker, as in production
    return { checker: redis, label: 'Redis store, in-process cache hit', close: () => redis.close() };
  } catch {
    await redis.close();
    return { checker: createMemoryRevocationForTests(), label: 'in-memory checker (Redis NOT reachable)', close: async () => undefined };
  }
}

async function main(): Promise<void> {
  const rev = await revocationChecker();
  const results: Result[] = [];
  process.stderr.write(`bench: ${algs.join(', ')}; ${durationMs} ms per case; revocation: ${rev.label}\n`);

  for (const alg of algs) {
    const kid = `bench-${alg}`;
    const { privateKey, publicKey } = keyPair(alg);
    const jwk = { ...(publicKey.export({ format: 'jwk' }) as JWK), kid, alg, use: 'sig' };
    const keys = createLocalKeySource({ keys: [jwk] });
    const verifier = createVerifier({ issuer: ISSUER, audience: AUDIENCE, algorithms: [alg], keys });
    const token = signToken(alg, kid, privateKey, `jti-${alg}`);
    const request = { method: 'GET', path: '/api/orders', headers: { authorization: `Bearer ${token}` } };

    // (a) raw signature check of the same token, buffers prepared once.
    const dot = token.lastIndexOf('.');
    const data = Buffer.from(token.slice(0, dot));
    const sig = Buffer.from(token.slice(dot + 1), 'base64url');
    const keyArg =
      alg === 'RS256' ? { key: publicKey, padding: constants.RSA_PKCS1_PADDING } : alg === 'ES256' ? { key: publicKey, dsaEncoding: 'ieee-p1363' as const } : publicKey;
    const digest = alg === 'EdDSA' ? null : 'sha256';
    if (!cryptoVerify(digest, data, keyArg, sig)) throw new Error('raw verify failed');
    results.push({ alg, kind: 'raw', ...(await measure(() => cryptoVerify(digest, data, keyArg, sig), durationMs)) });

    // (b) plain jose.jwtVerify.
    const joseKey = await importJWK(jwk, alg);
    const joseOpts = { issuer: ISSUER, audience: AUDIENCE, algorithms: [alg], typ: 'at+jwt' };
    await jwtVerify(token, joseKey, joseOpts);
    results.push({ alg, kind: 'jose', ...(await measure(() => jwtVerify(token, joseKey, joseOpts), durationMs)) });

    // (c) full check, verified-token cache off; revocation from its cache.
    const full = createAuthenticator({ verifier, revocation: rev.checker, verifiedCacheMaxEntries: 0 });
    const d1 = await full.decide(request, { scopes: ['orders:read'] });
    if (!d1.allow) throw new Error(`full check denied: ${d1.error.code}`);
    results.push({ alg, kind: 'full', ...(await measure(() => full.decide(request, { scopes: ['orders:read'] }), durationMs)) });

    // (d) repeated token from the verified-token cache; revocation still checked.
    const cached = createAuthenticator({ verifier, revocation: rev.checker });
    const d2 = await cached.decide(request, { scopes: ['orders:read'] });
    if (!d2.allow) throw new Error(`cached check denied: ${d2.error.code}`);
    results.push({ alg, kind: 'cached', ...(await measure(() => cached.decide(request, { scopes: ['orders:read'] }), durationMs)) });
  }
  await rev.close();

  const fmt = (n: number) => Math.round(n).toLocaleString('en-US');
  const us = (n: number) => n.toFixed(1);
  const label = { raw: '(a) raw node:crypto.verify', jose: '(b) jose.jwtVerify', full: '(c) core full check', cached: '(d) core, verified-token cache' };
  const lines = [
    `Token verification, one core, sequential (node ${process.version}; revocation: ${rev.label})`,
    '',
    '| alg | case | verifications/s | p50 (µs) | p99 (µs) |',
    '|---|---|---:|---:|---:|',
  ];
  for (const r of results) lines.push(`| ${r.alg} | ${label[r.kind]} | ${fmt(r.opsPerSec)} | ${us(r.p50us)} | ${us(r.p99us)} |`);
  lines.push(
    '',
    '| alg | full/raw, by throughput (aim <= 1.5) | full/raw, by p50 | jose/raw, by throughput | cached checks/s (aim >= 200,000) |',
    '|---|---:|---:|---:|---:|',
  );
  for (const alg of algs) {
    const get = (k: Result['kind']) => results.find((r) => r.alg === alg && r.kind === k)!;
    const raw = get('raw');
    lines.push(
      `| ${alg} | ${(raw.opsPerSec / get('full').opsPerSec).toFixed(2)} | ${(get('full').p50us / raw.p50us).toFixed(2)} | ${(raw.opsPerSec / get('jose').opsPerSec).toFixed(2)} | ${fmt(get('cached').opsPerSec)} |`,
    );
  }
  lines.push('', `(load average at the end: ${loadavg().map((l) => l.toFixed(2)).join(' ')} on ${availableParallelism()} CPUs; other processes inflate p99 and lower throughput, p50 ratios are the steadier figure)`);
  process.stdout.write(`${lines.join('\n')}\n`);
  if (args.json) process.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
