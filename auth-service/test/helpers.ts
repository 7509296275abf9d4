/**
 * Test helpers: a fresh PostgreSQL database per test file (cloned from a migrated template),
 * a unique Redis prefix per app, a fake clock, and an app wired with real Prisma, Redis and
 * the core's Redis revocation store.
 *
 * The server comes from DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/jwt_mesh);
 * only the database name is replaced. Databases are dropped at teardown.
 */
import { createHash, randomBytes } from 'node:crypto';
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { FastifyInstance } from 'fastify';
import { Redis } from 'ioredis';
import pg from 'pg';
import { createRedisRevocation, type RedisRevocation } from '@jwt-mesh/core/redis';
import { buildApp, createLogger } from '../src/app.js';
import type { Clock } from '../src/clock.js';
import { configFrom, type Config } from '../src/config.js';
import { createPrisma, type PrismaClient } from '../src/db.js';
import { createKeyStore, type KeyStore } from '../src/keys.js';
import { createMetrics, type Metrics } from '../src/metrics.js';
import type { ScryptParams } from '../src/passwords.js';
import { republishRevocations } from '../src/revocation-sync.js';

const run = promisify(execFile);

export const AUTH_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const SERVER_URL = process.env['DATABASE_URL'] || 'postgresql://postgres@127.0.0.1:5432/jwt_mesh';
export const REDIS_URL = process.env['REDIS_URL'] || 'redis://127.0.0.1:6379/0';
/** A cheaper scrypt cost for tests (the default cost is exercised in passwords.test.ts). */
export const TEST_SCRYPT: ScryptParams = Object.freeze({ log2N: 12, r: 8, p: 1 });

/** Minimal structural type of tap's `t` used here. */
interface T {
  teardown(fn: () => unknown): void;
}

/** The URL of database `name` on the test server. */
export function databaseUrl(name: string): string {
  const u = new URL(SERVER_URL);
  u.pathname = `/${name}`;
  return u.toString();
}

async function admin<R>(fn: (c: pg.Client) => Promise<R>): Promise<R> {
  const c = new pg.Client({ connectionString: databaseUrl('postgres') });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

/** Runs the offline migrate CLI (node --experimental-wasm-modules) with arguments. */
export async function migrateCli(args: string[], env: NodeJS.ProcessEnv = process.env): Promise<{ stdout: string; stderr: string }> {
  return run(
    process.execPath,
    ['--experimental-wasm-modules', '--no-warnings=ExperimentalWarning', '--import', 'tsx', path.join(AUTH_DIR, 'scripts/migrate.ts'), ...args],
    { cwd: AUTH_DIR, env, timeout: 120_000 },
  );
}

function migrationsHash(): { hash: string; count: number } {
  const dir = path.join(AUTH_DIR, 'prisma/migrations');
  const names = readdirSync(dir, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name).sort();
  const h = createHash('sha256');
  for (const n of names) h.update(n).update(readFileSync(path.join(dir, n, 'migration.sql')));
  return { hash: h.digest('hex').slice(0, 12), count: names.length };
}

const LOCK = 727_073_692;

/**
 * A fresh, fully migrated database for this test file, dropped at teardown.
 * Clones `jwt_mesh_test_tpl_<hash of the migrations>` (created once with the migrate CLI).
 */
export async function createTestDatabase(t: T): Promise<string> {
  const { hash, count } = migrationsHash();
  const template = `jwt_mesh_test_tpl_${hash}`;
  const name = `jwt_mesh_test_${randomBytes(6).toString('hex')}`;
  await admin(async (c) => {
    await c.query('SELECT pg_advisory_lock($1)', [LOCK]);
    try {
      const exists = (await c.query('SELECT 1 FROM pg_database WHERE datname = $1', [template])).rowCount === 1;
      let complete = false;
      if (exists) {
        const tc = new pg.Client({ connectionString: databaseUrl(template) });
        await tc.connect();
        try {
          const r = await tc.query('SELECT count(*)::int AS n FROM _prisma_migrations WHERE finished_at IS NOT NULL AND rolled_back_at IS NULL');
          complete = r.rows[0]?.n === count;
        } catch {
          complete = false;
        } finally {
          await tc.end();
        }
      }
      if (!complete) {
        const stale = await c.query("SELECT datname FROM pg_database WHERE datname LIKE 'jwt\\_mesh\\_test\\_tpl\\_%'");
        for (const row of stale.rows as Array<{ datname: string }>) await c.query(`DROP DATABASE IF EXISTS "${row.datname}" WITH (FORCE)`);
        await migrateCli(['deploy', '--url', databaseUrl(template)]);
      }
      await c.query(`CREATE DATABASE "${name}" TEMPLATE "${template}"`);
    } finally {
      await c.query('SELECT pg_advisory_unlock($1)', [LOCK]);
    }
  });
  t.teardown(() => admin((c) => c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`)));
  return databaseUrl(name);
}

/** A clock tests move by hand. Starts at the real time unless told otherwise. */
export interface FakeClock extends Clock {
  advance(ms: number): void;
  set(ms: number): void;
}
export function fakeClock(startMs = Date.now()): FakeClock {
  let t = startMs;
  return { now: () => t, advance: (ms) => void (t += ms), set: (ms) => void (t = ms) };
}

/** A unique Redis key prefix; its keys are deleted at teardown. */
export function redisPrefix(t: T, label: string): string {
  const prefix = `jwtmesh:test:${label}:${randomBytes(4).toString('hex')}:`;
  t.teardown(async () => {
    const r = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1 });
    await r.connect();
    let cursor = '0';
    do {
      const [next, keys] = await r.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 500);
      cursor = next;
      if (keys.length) await r.del(...keys);
    } while (cursor !== '0');
    await r.quit();
  });
  return prefix;
}

/** A running test app and everything wired into it. */
export interface TestApp {
  app: FastifyInstance;
  config: Config;
  prisma: PrismaClient;
  redis: Redis;
  keys: KeyStore;
  revocation: RedisRevocation;
  clock: FakeClock;
  metrics: Metrics;
  /** Every log line written (parsed JSON). */
  logs: Array<Record<string, unknown>>;
  prefix: string;
}

/** High limits so that only the rate-limit tests hit them. */
const TEST_ENV: Record<string, string> = {
  LOG_LEVEL: 'info',
  LOGIN_RATE_LIMIT_PER_MIN: '100000',
  LOGIN_USERNAME_RATE_LIMIT_PER_MIN: '100000',
  REFRESH_RATE_LIMIT_PER_MIN: '100000',
  REGISTER_RATE_LIMIT_PER_MIN: '100000',
};

/**
 * Builds and readies an app on `databaseUrl` (a fresh database when omitted).
 * @param opts.env - configuration variables (merged over test defaults)
 */
export async function createTestApp(
  t: T,
  opts: { label: string; databaseUrl?: string; env?: Record<string, string>; clock?: FakeClock; prisma?: PrismaClient } = { label: 'app' },
): Promise<TestApp> {
  const url = opts.databaseUrl ?? (await createTestDatabase(t));
  const prefix = redisPrefix(t, opts.label);
  const config = configFrom({ ...TEST_ENV, DATABASE_URL: url, REDIS_URL, REDIS_PREFIX: prefix, ...opts.env });
  const clock = opts.clock ?? fakeClock();
  const logs: Array<Record<string, unknown>> = [];
  const logger = createLogger(config.logLevel, { write: (line: string) => void logs.push(JSON.parse(line) as Record<string, unknown>) });
  const prisma = opts.prisma ?? createPrisma(url, { poolMax: 12 });
  const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
  const revocation = createRedisRevocation({ redisUrl: REDIS_URL, prefix, now: () => clock.now() });
  const closers: Array<() => unknown> = [];
  t.teardown(async () => {
    for (const close of closers.reverse()) await close();
    await Promise.allSettled([prisma.$disconnect(), redis.quit(), revocation.close()]);
  });
  await revocation.ready();
  const metrics = createMetrics();
  const keys = await createKeyStore({ prisma, config, clock, logger, autoReload: false });
  closers.push(() => keys.close());
  const app = buildApp({ config, prisma, redis, keys, revocation, clock, logger, metrics, scrypt: TEST_SCRYPT });
  closers.push(() => app.close());
  await app.ready();
  // As main.ts does at start: publish the database's revocations and write the sync marker,
  // without which verifiers of this prefix fail closed.
  await republishRevocations({ prisma, revocation, clock, config });
  return { app, config, prisma, redis, keys, revocation, clock, metrics, logs, prefix };
}

/** A unique username for this process and call. */
let n = 0;
export function uniqueUsername(label: string): string {
  return `${label}.${process.pid}.${Date.now().toString(36)}.${n++}`.slice(0, 64).toLowerCase();
}

/** Registers and logs in a user; returns the login response body. */
export async function registerAndLogin(
  ta: TestApp,
  label: string,
  extra: Record<string, string> = {},
): Promise<{ username: string; password: string; userId: string; tokens: LoginResponse }> {
  const username = uniqueUsername(label);
  const password = `pw-${randomBytes(8).toString('hex')}`;
  const reg = await ta.app.inject({ method: 'POST', url: '/auth/register', payload: { username, password } });
  if (reg.statusCode !== 201) throw new Error(`register failed: ${reg.statusCode} ${reg.body}`);
  const login = await ta.app.inject({ method: 'POST', url: '/auth/login', payload: { username, password, ...extra } });
  if (login.statusCode !== 200) throw new Error(`login failed: ${login.statusCode} ${login.body}`);
  return { username, password, userId: (reg.json() as { id: string }).id, tokens: login.json() as LoginResponse };
}

export interface LoginResponse {
  access_token: string;
  token_type: string;
  expires_in: number;
  refresh_token: string;
  scope: string;
}

/** POST /auth/token grant_type=refresh_token, form-encoded. */
export function refresh(ta: TestApp, refreshToken: string, extra: Record<string, string> = {}) {
  return ta.app.inject({
    method: 'POST',
    url: '/auth/token',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    payload: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: refreshToken, ...extra }).toString(),
  });
}

/** Decodes a JWT's header and payload without verifying (for assertions only). */
export function decodeJwt(token: string): { header: Record<string, unknown>; payload: Record<string, unknown> } {
  const [h, p] = token.split('.');
  return {
    header: JSON.parse(Buffer.from(h ?? '', 'base64url').toString('utf8')) as Record<string, unknown>,
    payload: JSON.parse(Buffer.from(p ?? '', 'base64url').toString('utf8')) as Record<string, unknown>,
  };
}
