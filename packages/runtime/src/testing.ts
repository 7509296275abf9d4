/**
 * Test fixtures for the services and the plugin (`@jwt-mesh/runtime/testing`): a local
 * issuer (RS256 key pair generated per test file, its JWK Set served by a `node:http` server on
 * port 0, tokens minted with jose exactly as RFC 9068 shapes them), unique Redis prefixes, and a
 * log stream that keeps every line for assertions. Not for production code.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { SignJWT, exportJWK, generateKeyPair, type JWK } from 'jose';
import { markSyncedForTests } from '@jwt-mesh/core/redis';
import { createVerifierStack, type VerifierStack } from './stack.js';

/** Claims a test may set on a minted token. */
export interface MintOptions {
  sub?: string;
  /** Space-separated scopes. */
  scope?: string;
  sid?: string;
  jti?: string;
  roles?: string[];
  clientId?: string;
  /** Lifetime in seconds from `iat`. Default 120. */
  ttlSec?: number;
  /** `iat` offset from now in seconds (negative = in the past). Default 0. */
  iatOffsetSec?: number;
  /** Override the audience. */
  aud?: string;
  /** Override the issuer. */
  iss?: string;
}

/** A local token issuer for tests. */
export interface TestIssuer {
  readonly issuer: string;
  readonly audience: string;
  /** `http://127.0.0.1:<port>/.well-known/jwks.json` */
  readonly jwksUrl: string;
  readonly kid: string;
  /** Signs an access token (`typ: at+jwt`, RS256). Defaults: a random `sub`, `jti`, `sid`. */
  mint(opts?: MintOptions): Promise<string>;
  /** How many times the JWK Set was served. */
  jwksHits(): number;
  close(): Promise<void>;
}

/**
 * Starts a local issuer: a fresh RS256 key pair and a JWK Set server on 127.0.0.1, port 0.
 *
 * @param opts.issuer - `iss` (default `http://issuer.test`)
 * @param opts.audience - `aud` (default `jwt-mesh`)
 */
export async function startTestIssuer(opts: { issuer?: string; audience?: string } = {}): Promise<TestIssuer> {
  const issuer = opts.issuer ?? 'http://issuer.test';
  const audience = opts.audience ?? 'jwt-mesh';
  const { publicKey, privateKey } = await generateKeyPair('RS256', { extractable: true });
  const kid = `test-${randomBytes(6).toString('hex')}`;
  const jwk: JWK = { ...(await exportJWK(publicKey)), kid, alg: 'RS256', use: 'sig' };
  const body = JSON.stringify({ keys: [jwk] });
  let hits = 0;
  const server: Server = createServer((req, res) => {
    if (req.url === '/.well-known/jwks.json') {
      hits++;
      res.writeHead(200, { 'content-type': 'application/jwk-set+json' }).end(body);
      return;
    }
    res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  return {
    issuer,
    audience,
    kid,
    jwksUrl: `http://127.0.0.1:${port}/.well-known/jwks.json`,
    async mint(m: MintOptions = {}): Promise<string> {
      const now = Math.floor(Date.now() / 1000) + (m.iatOffsetSec ?? 0);
      const claims: Record<string, unknown> = {
        client_id: m.clientId ?? 'jwt-mesh-web',
        scope: m.scope ?? '',
        sid: m.sid ?? `sid-${randomUUID()}`,
        roles: m.roles ?? [],
      };
      return new SignJWT(claims)
        .setProtectedHeader({ alg: 'RS256', kid, typ: 'at+jwt' })
        .setIssuer(m.iss ?? issuer)
        .setAudience(m.aud ?? audience)
        .setSubject(m.sub ?? `user-${randomUUID()}`)
        .setJti(m.jti ?? randomUUID())
        .setIssuedAt(now)
        .setExpirationTime(now + (m.ttlSec ?? 120))
        .sign(privateKey);
    },
    jwksHits: () => hits,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** The Redis URL of the test environment (`REDIS_URL`, default local). */
export const TEST_REDIS_URL = process.env['REDIS_URL'] ?? 'redis://127.0.0.1:6379/0';

/** A Redis key prefix no other test file uses, e.g. `jwtmesh-test:orders:3f9a...:`. */
export function uniquePrefix(name: string): string {
  return `jwtmesh-test:${name}:${randomBytes(6).toString('hex')}:`;
}

/**
 * Does what the auth-service's re-sync does at start for a database with nothing revoked: writes
 * the sync marker `<prefix>rv:synced` on the test Redis, without which every verifier of that
 * prefix fails closed (`revocation_unavailable`). See `@jwt-mesh/core/redis`.
 * @throws the ioredis error when Redis cannot be reached within 5 s
 */
export async function markRevocationsSynced(prefix: string, redisUrl = TEST_REDIS_URL): Promise<void> {
  await markSyncedForTests(redisUrl, prefix);
}

/** A writable stream that keeps every pino line. */
export interface LogCapture {
  readonly stream: Writable;
  /** Every line so far, parsed. */
  lines(): Array<Record<string, unknown>>;
  /** Everything written so far, raw. */
  text(): string;
}

/** Captures log output for assertions (pass `stream` to `createLogger`). */
export function captureLogs(): LogCapture {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer | string, _enc, cb) {
      chunks.push(chunk.toString());
      cb();
    },
  });
  return {
    stream,
    text: () => chunks.join(''),
    lines: () =>
      chunks
        .join('')
        .split('\n')
        .filter((l) => l.trim() !== '')
        .map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

/**
 * Polls `check` until it is true: a bounded wait for something that happens in the
 * background (the first JWK Set fetch, the Redis subscriber). No timing is asserted.
 *
 * @throws Error naming `what` after `maxTries` polls `stepMs` apart
 */
export async function waitUntil(check: () => boolean, what: string, maxTries = 400, stepMs = 25): Promise<void> {
  for (let i = 0; i < maxTries; i++) {
    if (check()) return;
    await new Promise((r) => setTimeout(r, stepMs));
  }
  throw new Error(`gave up waiting for ${what}`);
}

/**
 * A verifier stack for a service under test: the issuer's JWK Set over HTTP, real Redis with
 * `prefix`, fail-closed. Resolves once it is ready (JWK Set fetched, subscriber ready).
 */
export async function readyTestStack(issuer: TestIssuer, prefix: string): Promise<VerifierStack> {
  await markRevocationsSynced(prefix);
  const stack = createVerifierStack({
    issuer: issuer.issuer,
    audience: issuer.audience,
    jwksUrl: issuer.jwksUrl,
    redisUrl: TEST_REDIS_URL,
    revocationPrefix: prefix,
  });
  await waitUntil(() => stack.readiness.report().ready, 'the verifier stack to be ready');
  return stack;
}
