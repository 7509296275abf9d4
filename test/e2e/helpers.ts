/**
 * Helpers of the end-to-end suites: one stack per test file, started by the same `startStack()`
 * that `make up` runs (real Envoy, authz-service replicas, auth-service, services, PostgreSQL,
 * Redis), on free loopback ports, with its own database and Redis database so files can run in
 * parallel; raw HTTP requests (paths sent exactly as written, no URL normalization); tokens
 * minted with the issuer's own signing key (read from the stack's database) for the cases a
 * login cannot produce (expired, wrong issuer, wrong typ, ...); a recording upstream.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, request as httpRequest, type IncomingHttpHeaders, type Server } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { importPKCS8, SignJWT, type JWTPayload } from 'jose';
import pg from 'pg';
import { DEMO_USERS, startStack, type DemoUser, type Stack, type StackOptions } from '@jwt-mesh/stack';
import { REPO_ROOT } from '@jwt-mesh/testkit';

/** Anything with tap's `teardown`. */
export interface Teardown {
  teardown(fn: () => unknown): void;
}

const DEFAULT_DATABASE_URL = 'postgresql://postgres@127.0.0.1:5432/jwt_mesh';
const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379/0';

/**
 * A database of its own for one e2e file on the server of DATABASE_URL (`jwt_mesh_e2e_<name>`).
 * It is kept between runs (the stack migrates it once), so its signing key is stable too.
 */
export function e2eDatabaseUrl(name: string): string {
  const u = new URL(process.env['DATABASE_URL'] || DEFAULT_DATABASE_URL);
  u.pathname = `/jwt_mesh_e2e_${name}`;
  return u.toString();
}

/**
 * A Redis logical database of its own for one e2e file. The verifiers read revocations under the
 * default key prefix (`jwtmesh:`; no verifier takes a prefix setting yet), so the isolation
 * between parallel files is the database number. Pub/sub channels are server-wide: another
 * file's revocation messages only evict cache entries, which are re-read from this database.
 */
export function e2eRedisUrl(db: number): string {
  const u = new URL(process.env['REDIS_URL'] || DEFAULT_REDIS_URL);
  u.pathname = `/${db}`;
  return u.toString();
}

/** The demo users with a unique suffix (so reruns start from fresh accounts). */
export function uniqueUsers(): { alice: DemoUser; bob: DemoUser; admin: DemoUser; all: DemoUser[] } {
  const suffix = randomBytes(3).toString('hex');
  const all = DEMO_USERS.map((u) => ({ ...u, scopes: [...u.scopes], roles: [...u.roles], username: `${u.username}-${suffix}` }));
  const [alice, bob, admin] = all as [DemoUser, DemoUser, DemoUser];
  return { alice, bob, admin, all };
}

/** A request as sent and answered. */
export interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
  json: Record<string, unknown> | null;
}

/** Options of {@link send}. */
export interface SendOptions {
  /** Base URL (`http://127.0.0.1:port` or `https://...`). */
  base: string;
  /** Path sent exactly as given (no normalization of `..`, `//`, `%2e`). */
  path: string;
  method?: string;
  headers?: Record<string, string | string[]>;
  body?: string;
  /** TLS client material for https. */
  tls?: { ca?: Buffer; cert?: Buffer; key?: Buffer; servername?: string };
  timeoutMs?: number;
}

/**
 * One HTTP request with node:http(s), the path untouched.
 * @throws Error on a connection error or timeout (no HTTP answer).
 */
export function send(opts: SendOptions): Promise<Answer> {
  const u = new URL(opts.base);
  const isHttps = u.protocol === 'https:';
  const request = isHttps ? httpsRequest : httpRequest;
  return new Promise((resolveAnswer, reject) => {
    const req = request(
      {
        host: u.hostname,
        port: u.port,
        method: opts.method ?? 'GET',
        path: opts.path,
        headers: opts.headers ?? {},
        agent: false,
        timeout: opts.timeoutMs ?? 10_000,
        ...(isHttps ? { ca: opts.tls?.ca, cert: opts.tls?.cert, key: opts.tls?.key, servername: opts.tls?.servername ?? u.hostname } : {}),
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const body = Buffer.concat(chunks).toString('utf8');
          let json: Record<string, unknown> | null = null;
          try {
            const v: unknown = JSON.parse(body);
            if (v && typeof v === 'object' && !Array.isArray(v)) json = v as Record<string, unknown>;
          } catch {
            // not JSON
          }
          resolveAnswer({ status: res.statusCode ?? 0, headers: res.headers, body, json });
        });
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`request timed out after ${opts.timeoutMs ?? 10_000} ms`)));
    req.on('error', reject);
    req.end(opts.body);
  });
}

/** What the recording upstream saw of one request. */
export interface Recorded {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  rawHeaders: string[];
}

/** A plain HTTP upstream on 127.0.0.1 that records every request and answers 200 `{ "ok": true, "path": ... }`. */
export async function recordingUpstream(t: Teardown): Promise<{ port: number; seen: Recorded[]; server: Server }> {
  const seen: Recorded[] = [];
  const server = createServer((req, res) => {
    seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, rawHeaders: req.rawHeaders });
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ ok: true, path: req.url }));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  return { port: (server.address() as AddressInfo).port, seen, server };
}

/** The issuer's current signing key, read from the auth-service's database (the same row it signs with). */
export async function issuerKey(databaseUrl: string): Promise<{ kid: string; alg: string; pem: string }> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const r = await client.query<{ kid: string; alg: string; private_key_pem: string }>(
      `SELECT kid, alg, private_key_pem FROM signing_keys
        WHERE private_key_pem IS NOT NULL AND activated_at <= now() AND (retires_at IS NULL OR retires_at > now())
        ORDER BY activated_at DESC, created_at DESC LIMIT 1`,
    );
    const row = r.rows[0];
    if (!row) throw new Error('issuerKey: no usable signing key in the database');
    return { kid: row.kid, alg: row.alg, pem: row.private_key_pem };
  } finally {
    await client.end();
  }
}

/** Claims and header overrides of a minted token. `null` removes a claim. */
export interface MintOptions {
  claims?: Record<string, unknown>;
  header?: Record<string, unknown>;
}

/** A stack for one test file plus what its tests need. */
export interface E2e {
  stack: Stack;
  /** The edge's HTTP base URL. */
  edge: string;
  users: ReturnType<typeof uniqueUsers>;
  databaseUrl: string;
  /** Logs in through the edge; returns the token response and the decoded claims. */
  login(user: DemoUser, scope?: string): Promise<{ access: string; refresh: string; claims: Record<string, unknown> }>;
  /** Signs a token with the issuer's own key (valid unless the options break it). */
  mint(opts?: MintOptions): Promise<string>;
  /** Everything each part of the stack logged is under this folder. */
  logDir: string;
}

/** Decodes a JWT payload (no verification). */
export function claimsOf(jwt: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(jwt.split('.')[1] ?? '', 'base64url').toString('utf8')) as Record<string, unknown>;
}

/**
 * Starts the stack for one test file: free ports, the file's own database and Redis database,
 * unique demo users, higher login rate limits (tests log in more than people do), logs under
 * `.run/e2e/<name>-<time>/`. Everything is stopped at teardown, also when a test fails.
 */
export async function startE2e(
  t: Teardown,
  opts: { name: string; redisDb: number } & Pick<StackOptions, 'extraUpstreams' | 'policyRules' | 'env' | 'parts' | 'tracing'>,
): Promise<E2e> {
  const runDir = mkdtempSync(join(tmpdir(), `jwt-mesh-e2e-${opts.name}-`));
  const logDir = join(REPO_ROOT, '.run', 'e2e', `${opts.name}-${new Date().toISOString().replace(/[:.]/g, '-')}`);
  const users = uniqueUsers();
  const databaseUrl = e2eDatabaseUrl(opts.name);
  const lines: string[] = [];
  let stack: Stack;
  try {
    stack = await startStack({
      runDir,
      logDir,
      stateFile: false,
      ports: 'free',
      databaseUrl,
      redisUrl: e2eRedisUrl(opts.redisDb),
      users: users.all,
      readyTimeoutMs: 120_000,
      onProgress: (l) => lines.push(l),
      ...(opts.extraUpstreams ? { extraUpstreams: opts.extraUpstreams } : {}),
      ...(opts.policyRules ? { policyRules: opts.policyRules } : {}),
      ...(opts.parts ? { parts: opts.parts } : {}),
      ...(opts.tracing ? { tracing: opts.tracing } : {}),
      env: {
        ...opts.env,
        auth: {
          LOGIN_RATE_LIMIT_PER_MIN: '10000',
          LOGIN_USERNAME_RATE_LIMIT_PER_MIN: '10000',
          REFRESH_RATE_LIMIT_PER_MIN: '10000',
          REGISTER_RATE_LIMIT_PER_MIN: '10000',
          ...opts.env?.auth,
        },
      },
    });
  } catch (err) {
    rmSync(runDir, { recursive: true, force: true });
    process.stdout.write(`# stack progress:\n${lines.map((l) => `#   ${l}`).join('\n')}\n`);
    throw err;
  }
  process.stdout.write(`# ${opts.name}: stack ready (${lines.length} steps); logs in ${logDir}\n`);
  t.teardown(async () => {
    await stack.stop();
    rmSync(runDir, { recursive: true, force: true });
  });
  const edge = stack.state.urls.edge;
  const key = await issuerKey(databaseUrl);
  const privateKey = await importPKCS8(key.pem, key.alg);
  return {
    stack,
    edge,
    users,
    databaseUrl,
    logDir,
    async login(user, scope) {
      const r = await send({
        base: edge,
        method: 'POST',
        path: '/auth/login',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ username: user.username, password: user.password, ...(scope ? { scope } : {}) }),
      });
      if (r.status !== 200 || typeof r.json?.['access_token'] !== 'string') {
        throw new Error(`login ${user.username}: ${r.status} ${r.body.slice(0, 200)}`);
      }
      const access = r.json['access_token'] as string;
      return { access, refresh: String(r.json['refresh_token']), claims: claimsOf(access) };
    },
    async mint(o = {}) {
      const now = Math.floor(Date.now() / 1000);
      const claims: Record<string, unknown> = {
        iss: stack.state.jwt.issuer,
        sub: randomUUID(),
        aud: stack.state.jwt.audience,
        iat: now,
        exp: now + 120,
        jti: randomUUID(),
        client_id: 'jwt-mesh',
        scope: 'orders:read orders:write inventory:read inventory:write profile:read',
        sid: randomUUID(),
        roles: ['user'],
      };
      for (const [k, v] of Object.entries(o.claims ?? {})) {
        if (v === null) delete claims[k];
        else claims[k] = v;
      }
      const header = { alg: key.alg, kid: key.kid, typ: 'at+jwt', ...o.header };
      return new SignJWT(claims as JWTPayload).setProtectedHeader(header as { alg: string }).sign(privateKey);
    },
  };
}

/** Sum of the samples of a Prometheus counter whose labels match `labelFilter`. */
export async function counterSum(metricsUrl: string, metric: string, labelFilter: (labels: string) => boolean = () => true): Promise<number> {
  const r = await send({ base: metricsUrl, path: new URL(metricsUrl).pathname || '/metrics' });
  let sum = 0;
  for (const line of r.body.split('\n')) {
    if (!line.startsWith(metric)) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+([0-9.eE+-]+)/.exec(line);
    if (!m || m[1] !== metric) continue;
    if (labelFilter(m[2] ?? '')) sum += Number(m[3]);
  }
  return sum;
}

/** Requests each authz replica has received from the edge Envoy (admin `/clusters`, per-host `rq_total`), keyed by `host:port`. */
export async function authzRequestsByHost(edgeAdmin: string): Promise<Record<string, number>> {
  const r = await send({ base: edgeAdmin, path: '/clusters?format=json' });
  const doc = JSON.parse(r.body) as {
    cluster_statuses?: Array<{
      name: string;
      host_statuses?: Array<{
        address?: { socket_address?: { address: string; port_value: number } };
        stats?: Array<{ name: string; value?: string | number }>;
      }>;
    }>;
  };
  const out: Record<string, number> = {};
  const authz = doc.cluster_statuses?.find((c) => c.name === 'authz');
  for (const h of authz?.host_statuses ?? []) {
    const a = h.address?.socket_address;
    if (!a) continue;
    const total = h.stats?.find((s) => s.name === 'rq_total');
    out[`${a.address}:${a.port_value}`] = Number(total?.value ?? 0);
  }
  return out;
}

/** Health flags of each authz host as the edge sees them (`healthy` when no failure flag is set). */
export async function authzHealthByHost(edgeAdmin: string): Promise<Record<string, string>> {
  const r = await send({ base: edgeAdmin, path: '/clusters?format=json' });
  const doc = JSON.parse(r.body) as {
    cluster_statuses?: Array<{
      name: string;
      host_statuses?: Array<{
        address?: { socket_address?: { address: string; port_value: number } };
        health_status?: Record<string, unknown>;
      }>;
    }>;
  };
  const out: Record<string, string> = {};
  const authz = doc.cluster_statuses?.find((c) => c.name === 'authz');
  for (const h of authz?.host_statuses ?? []) {
    const a = h.address?.socket_address;
    if (!a) continue;
    const flags = Object.entries(h.health_status ?? {})
      .filter(([k, v]) => k !== 'eds_health_status' && v === true)
      .map(([k]) => k);
    out[`${a.address}:${a.port_value}`] = flags.length === 0 ? 'healthy' : flags.join(',');
  }
  return out;
}
