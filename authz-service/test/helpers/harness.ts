/**
 * Test harness: a real JWK Set served over node:http (port 0) from generated jose key pairs,
 * tokens minted with jose `SignJWT`, the real core (remote key source, verifier, Redis
 * revocation with a unique prefix, policy) behind a real gRPC server on 127.0.0.1:0, and a
 * typed gRPC client. Fixtures are recorded-style `CheckRequest` JSON files with a `{{token}}`
 * placeholder.
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { SignJWT, exportJWK, generateKeyPair, type CryptoKey, type JWTPayload } from 'jose';
import { pino } from 'pino';
import {
  createAuthenticator,
  createRemoteKeySource,
  createVerifier,
  type Authenticator,
  type Policy,
  type RevocationChecker,
} from '@jwt-mesh/core';
import { createRedisRevocation, markSyncedForTests } from '@jwt-mesh/core/redis';
import { buildServer, type AuthzServer, type TlsMaterial } from '../../src/server.js';
import { createMetrics, type AuthzMetrics } from '../../src/metrics.js';
import { loadPolicyFile } from '../../src/policy.js';
import { loadAuthorizationProto } from '../../src/proto.js';
import type { AuthorizationClient } from '../../src/generated/envoy/service/auth/v3/Authorization.js';
import type { CheckRequest } from '../../src/generated/envoy/service/auth/v3/CheckRequest.js';
import type { CheckResponse__Output } from '../../src/generated/envoy/service/auth/v3/CheckResponse.js';

const here = dirname(fileURLToPath(import.meta.url));
export const FIXTURES = join(here, '..', 'fixtures');
export const DEFAULT_POLICY_FILE = join(here, '..', '..', 'policy.yaml');
export const ISSUER = 'http://issuer.test';
export const AUDIENCE = 'jwt-mesh';
export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379/0';

/** A unique Redis key prefix per test server group, so parallel test files never collide. */
export const uniquePrefix = (): string => `jwtmesh-test:authz:${randomUUID()}:`;

/**
 * A fresh prefix with the issuer's sync marker written on the test Redis (what the auth-service's
 * re-sync does at start with nothing revoked); without it, verifiers fail closed.
 */
export async function syncedPrefix(redisUrl = REDIS_URL): Promise<string> {
  const prefix = uniquePrefix();
  await markSyncedForTests(redisUrl, prefix);
  return prefix;
}

/** A JWK Set served over HTTP, plus a signer for its key. */
export interface Issuer {
  readonly jwksUrl: string;
  readonly kid: string;
  readonly privateKey: CryptoKey;
  /** Mints an access token (RFC 9068 header and claims); overrides replace/extend defaults. */
  mint(claims?: JWTPayload & Record<string, unknown>, header?: Record<string, unknown>): Promise<string>;
  close(): Promise<void>;
}

/** Starts a JWKS endpoint on 127.0.0.1:0 with one fresh RS256 key. */
export async function startIssuer(): Promise<Issuer> {
  const { publicKey, privateKey } = await generateKeyPair('RS256', { modulusLength: 2048 });
  const kid = `k-${randomUUID().slice(0, 8)}`;
  const jwk = { ...(await exportJWK(publicKey)), kid, alg: 'RS256', use: 'sig' };
  const body = JSON.stringify({ keys: [jwk] });
  const server: Server = createServer((req, res) => {
    if (req.url === '/.well-known/jwks.json') res.writeHead(200, { 'content-type': 'application/jwk-set+json' }).end(body);
    else res.writeHead(404).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    jwksUrl: `http://127.0.0.1:${port}/.well-known/jwks.json`,
    kid,
    privateKey,
    async mint(claims = {}, header = {}) {
      const now = Math.floor(Date.now() / 1000);
      const payload: JWTPayload & Record<string, unknown> = {
        iss: ISSUER,
        aud: AUDIENCE,
        sub: 'user-42',
        iat: now,
        exp: now + 300,
        jti: randomUUID(),
        client_id: 'web-app',
        scope: 'orders:read orders:write inventory:read profile:read',
        sid: randomUUID(),
        roles: ['customer'],
        ...claims,
      };
      return new SignJWT(payload).setProtectedHeader({ alg: 'RS256', kid, typ: 'at+jwt', ...header }).sign(privateKey);
    },
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  };
}

/** Options of {@link startAuthz}. */
export interface AuthzOptions {
  readonly issuer: Issuer;
  /** Redis key prefix (shared by servers that should see the same revocations). */
  readonly prefix?: string;
  readonly redisUrl?: string;
  /** Replaces the Redis revocation checker (injected faults). */
  readonly revocation?: RevocationChecker;
  readonly policy?: Policy;
  readonly deadlineMs?: number;
  readonly tls?: TlsMaterial;
  /** Redis lookup timeout, milliseconds. */
  readonly lookupTimeoutMs?: number;
  /** Revocation lookup cache lifetime, milliseconds (core default 1_000). */
  readonly cacheTtlMs?: number;
  /** `REVOCATION_FAIL_MODE`: `deny` (closed, default) or `allow` (open). */
  readonly onUnavailable?: 'deny' | 'allow';
  /** Wait for the Redis connections before serving (default true; false for an unreachable Redis). */
  readonly awaitRedis?: boolean;
  /** Replaces the whole core authenticator (injected faults in the adapter tests). */
  readonly authenticator?: Authenticator;
}

/** A running ext_authz server and a client for it. */
export interface RunningAuthz {
  readonly port: number;
  readonly authz: AuthzServer;
  readonly metrics: AuthzMetrics;
  readonly client: AuthorizationClient;
  /** The Redis store when one was created (for publishing revocations). */
  readonly redis: ReturnType<typeof createRedisRevocation> | undefined;
  check(req: CheckRequest): Promise<CheckResponse__Output>;
  close(): Promise<void>;
}

let proto: ReturnType<typeof loadAuthorizationProto> | undefined;

/** A typed Authorization client for `127.0.0.1:port`. */
export function makeClient(port: number, credentials = grpc.credentials.createInsecure(), options: grpc.ChannelOptions = {}): AuthorizationClient {
  proto ??= loadAuthorizationProto();
  return new proto.envoy.service.auth.v3.Authorization(`127.0.0.1:${port}`, credentials, options);
}

/** One Check call as a promise (5 s call deadline). */
export function callCheck(client: AuthorizationClient, req: CheckRequest): Promise<CheckResponse__Output> {
  return new Promise((resolve, reject) => {
    client.Check(req, { deadline: Date.now() + 5_000 }, (err, res) => (err || !res ? reject(err ?? new Error('no response')) : resolve(res)));
  });
}

/** Builds the real core + server on 127.0.0.1:0 (plaintext unless `tls` is given). */
export async function startAuthz(opts: AuthzOptions): Promise<RunningAuthz> {
  const keys = createRemoteKeySource({ url: opts.issuer.jwksUrl });
  const verifier = createVerifier({ issuer: ISSUER, audience: AUDIENCE, keys });
  const redis =
    opts.revocation === undefined
      ? createRedisRevocation({
          redisUrl: opts.redisUrl ?? REDIS_URL,
          prefix: opts.prefix ?? uniquePrefix(),
          ...(opts.lookupTimeoutMs !== undefined ? { lookupTimeoutMs: opts.lookupTimeoutMs } : {}),
          ...(opts.cacheTtlMs !== undefined ? { cacheTtlMs: opts.cacheTtlMs } : {}),
          ...(opts.onUnavailable !== undefined ? { onUnavailable: opts.onUnavailable } : {}),
        })
      : undefined;
  const deadlineMs = opts.deadlineMs ?? 1_000;
  const authenticator = opts.authenticator ?? createAuthenticator({
    verifier,
    revocation: opts.revocation ?? redis!,
    policy: opts.policy ?? loadPolicyFile(DEFAULT_POLICY_FILE),
    deadlineMs,
  });
  const metrics = createMetrics();
  const authz = buildServer({
    authenticator,
    deadlineMs,
    logger: pino({ level: 'silent' }),
    metrics,
    tls: opts.tls ?? 'insecure-plaintext',
  });
  if (opts.awaitRedis !== false) {
    await redis?.ready();
    await redis?.resync(async () => undefined); // no issuer here: nothing to publish, the marker says so
  }
  const port = await authz.start(0);
  authz.setHealth('SERVING');
  const client = makeClient(port);
  return {
    port,
    authz,
    metrics,
    client,
    redis,
    check: (req) => callCheck(client, req),
    async close() {
      client.close();
      await authz.drain(1_000);
      await redis?.close();
    },
  };
}

/**
 * Loads `test/fixtures/<name>.json`, replacing `{{token}}` with `token`. `header_map` entries
 * carry `raw_value` as text in the files for readability; they are turned into bytes here, as
 * Envoy sends them.
 */
export function fixture(name: string, token = ''): CheckRequest {
  const text = readFileSync(join(FIXTURES, `${name}.json`), 'utf8').replaceAll('{{token}}', token);
  const req = JSON.parse(text) as CheckRequest;
  const list = req.attributes?.request?.http?.header_map?.headers;
  if (list) for (const h of list) if (typeof h.raw_value === 'string') h.raw_value = Buffer.from(h.raw_value, 'utf8');
  return req;
}

/** A TCP port on 127.0.0.1 with nothing listening (bound, then closed). */
export async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

/** The ok_response / denied_response headers as a plain `{ name: value }` object. */
export function headersOf(list: ReadonlyArray<{ header: { key: string; value: string } | null }> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const h of list ?? []) if (h.header) out[h.header.key] = h.header.value;
  return out;
}

export const GRPC = { OK: 0, INVALID_ARGUMENT: 3, PERMISSION_DENIED: 7, UNAVAILABLE: 14, UNAUTHENTICATED: 16 };
/** envoy.type.v3.StatusCode names (the client decodes enums as strings) to HTTP numbers. */
export const HTTP: Record<string, number> = { BadRequest: 400, Unauthorized: 401, Forbidden: 403, ServiceUnavailable: 503 };

/** The parts of a denied CheckResponse (throws when it is not a deny). */
export function denied(res: CheckResponse__Output) {
  const d = res.denied_response;
  if (!d) throw new Error(`expected a denied_response, got ${res.http_response}`);
  return { grpc: res.status?.code, http: HTTP[String(d.status?.code)], headers: headersOf(d.headers), body: JSON.parse(d.body) as { error: string; error_description: string } };
}

/** The parts of an allowed CheckResponse (throws when it is not an allow). */
export function okHeaders(res: CheckResponse__Output) {
  const ok = res.ok_response;
  if (!ok) throw new Error(`expected an ok_response, got ${res.http_response}`);
  return { set: headersOf(ok.headers), actions: ok.headers.map((h) => h.append_action), removed: [...ok.headers_to_remove].sort(), ok };
}
