/**
 * The steps that start the stores: PostgreSQL (a `DATABASE_URL` server, or an embedded PGlite),
 * the auth-service's migrations, and Redis (a `REDIS_URL` server, or a local redis-server with
 * the least-privilege ACL users of the core's `redisAclRules`).
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { randomBytes } from 'node:crypto';
import { REDIS_ACL_USERS, redisAclFile, redisAclRules } from '@jwt-mesh/core/redis';
import { REPO_ROOT } from '@jwt-mesh/testkit';
import { postgresPing, redisPing, waitUntil } from '../probe.js';
import { runToCompletion, spawnProcess } from '../proc.js';
import type { StackState } from '../state.js';
import { guard, type Launcher, NODE_TSX, StackStartError } from './launcher.js';

/**
 * Step: PostgreSQL. The server of `databaseUrl` when given (it must answer), else an embedded PGlite.
 * @returns the database URL every part uses. @throws StackStartError (`postgres`).
 */
export async function startPostgres(run: Launcher): Promise<string> {
  const databaseUrl = run.options.databaseUrl;
  if (!databaseUrl) return startPglite(run);
  const err = await postgresPing(databaseUrl.replace(/\/[^/?]*(\?.*)?$/, '/postgres$1'), 5000);
  if (err) {
    throw new StackStartError(
      'postgres',
      `cannot reach the PostgreSQL server of DATABASE_URL (${redactUrl(databaseUrl)}): ${err}\n  unset DATABASE_URL to use the embedded PostgreSQL (PGlite) instead`,
      null,
    );
  }
  run.say('database', `PostgreSQL at ${redactUrl(databaseUrl)} (DATABASE_URL)`);
  return databaseUrl;
}

/** The embedded PostgreSQL (PGlite, src/pglite.ts) on a port it picks and writes to `<runDir>/pglite.port`. @returns its URL. */
async function startPglite(run: Launcher): Promise<string> {
  const p = run.paths;
  let databaseUrl = '';
  const portFile = join(p.runDir, 'pglite.port');
  rmSync(portFile, { force: true });
  const entry = join(REPO_ROOT, 'tools', 'stack', 'src', 'pglite.ts');
  const log = run.logOf('postgres');
  await run.launch({
    name: 'postgres',
    start: async () => {
      rmSync(portFile, { force: true });
      const proc = spawnProcess({
        name: 'postgres',
        command: process.execPath,
        args: [...NODE_TSX, entry, '--data', p.pgliteDataDir, '--port', '0', '--port-file', portFile],
        cwd: REPO_ROOT,
        env: process.env,
        logFile: log,
        markers: [entry, p.pgliteDataDir],
      });
      await guard('postgres', log, proc, async () => {
        await waitUntil('PGlite', async () => (existsSync(portFile) && readFileSync(portFile, 'utf8').trim() ? true : 'no port yet'), {
          timeoutMs: run.readyTimeoutMs,
          alive: proc.running,
        });
        const port = Number(readFileSync(portFile, 'utf8').trim());
        databaseUrl = `postgresql://postgres@127.0.0.1:${port}/postgres`;
        const url = databaseUrl;
        await waitUntil('PGlite SELECT 1', async () => (await postgresPing(url)) ?? true, { timeoutMs: run.readyTimeoutMs, alive: proc.running });
      });
      return proc;
    },
  });
  run.say('database', `embedded PostgreSQL (PGlite) at ${databaseUrl}, data in ${run.rel(p.pgliteDataDir)} (log ${run.rel(log)})`);
  return databaseUrl;
}

/** Step: the auth-service's migrations (`npm run migrate`), skipped when none is pending. @throws StackStartError (`migrations`). */
export async function migrate(run: Launcher, databaseUrl: string): Promise<void> {
  const log = run.logOf('migrate');
  const pending = await pendingMigrations(databaseUrl);
  if (pending === 0) {
    run.say('migrations', 'up to date');
    return;
  }
  const code = await runToCompletion({
    name: 'migrate',
    command: 'npm',
    args: ['run', 'migrate', '-w', '@jwt-mesh/auth-service'],
    cwd: REPO_ROOT,
    env: { ...process.env, DATABASE_URL: databaseUrl },
    logFile: log,
    timeoutMs: 180_000,
  });
  if (code !== 0) throw new StackStartError('migrations', `npm run migrate -w @jwt-mesh/auth-service exited with ${code}`, log);
  run.say('migrations', `applied (log ${run.rel(log)})`);
}

/** The Redis ACL users of a local redis-server: names and password files (what the state file records). */
type RedisAcl = NonNullable<StackState['redis']['acl']>;

/** The Redis every part uses: its URL, and the ACL users when the stack started the server. */
export interface StackRedis {
  url: string;
  acl: RedisAcl | undefined;
}

/**
 * Step: Redis. The server of `redisUrl` when given (it must answer PING), else a local
 * redis-server with the least-privilege ACL users. @throws StackStartError (`redis`).
 */
export async function startRedis(run: Launcher): Promise<StackRedis> {
  const redisUrl = run.options.redisUrl;
  if (!redisUrl) return startRedisServer(run);
  if (!(await redisPing(redisUrl, 3000))) {
    throw new StackStartError(
      'redis',
      `no answer to PING at REDIS_URL (${redactUrl(redisUrl)})\n  unset REDIS_URL to start a local redis-server instead`,
      null,
    );
  }
  run.say('redis', `${redactUrl(redisUrl)} (REDIS_URL), key prefix "${run.prefix}"`);
  return { url: redisUrl, acl: undefined };
}

/** A local redis-server on a free port, no persistence, with the ACL file of {@link writeRedisAcl}. */
async function startRedisServer(run: Launcher): Promise<StackRedis> {
  const bin = findOnPath('redis-server');
  if (!bin) {
    throw new StackStartError(
      'redis',
      'no REDIS_URL was given and there is no redis-server on PATH.\n' +
        '  Install one (Debian/Ubuntu: sudo apt-get install redis-server; macOS: brew install redis),\n' +
        '  or point REDIS_URL at a running Redis, e.g. REDIS_URL=redis://127.0.0.1:6379/0 make up',
      null,
    );
  }
  const redisDir = join(run.paths.runDir, 'redis');
  mkdirSync(redisDir, { recursive: true });
  const { acl, aclFile, verifierPassword } = writeRedisAcl(run.prefix, redisDir);
  let port = await run.reserve('redis');
  const log = run.logOf('redis');
  await run.launch({
    name: 'redis',
    repick: async () => {
      port = await run.reserve('redis');
    },
    start: async () => {
      await run.release(port);
      const proc = spawnProcess({
        name: 'redis',
        command: bin,
        args: ['--bind', '127.0.0.1', '--port', String(port), '--save', '', '--appendonly', 'no', '--dir', redisDir, '--protected-mode', 'yes', '--aclfile', aclFile],
        cwd: redisDir,
        env: process.env,
        logFile: log,
        // redis-server rewrites its process title to "<path> 127.0.0.1:<port>".
        markers: ['redis-server', `127.0.0.1:${port}`],
      });
      await guard('redis', log, proc, () =>
        waitUntil('redis-server', async () => ((await redisPing(`redis://${REDIS_ACL_USERS.verifier}:${verifierPassword}@127.0.0.1:${port}`)) ? true : 'no PONG'), {
          timeoutMs: run.readyTimeoutMs,
          alive: proc.running,
        }),
      );
      return proc;
    },
  });
  const url = `redis://127.0.0.1:${port}/0`;
  run.say('redis', `local redis-server at ${url} (no persistence; log ${run.rel(log)}), key prefix "${run.prefix}"`);
  run.say('redis', `ACL users ${REDIS_ACL_USERS.issuer} (auth-service) and ${REDIS_ACL_USERS.verifier} (read-only: verifiers), default user off; passwords in ${run.rel(redisDir)}`);
  return { url, acl };
}

/**
 * Least privilege: one ACL user per role (the core's `redisAclRules` for `prefix`), fresh
 * passwords, the default user off. Writes `issuer.password`, `verifier.password` and `users.acl`
 * into `redisDir` (mode 0600).
 */
function writeRedisAcl(prefix: string, redisDir: string): { acl: RedisAcl; aclFile: string; verifierPassword: string } {
  const aclRules = redisAclRules(prefix);
  const secretFile = (name: string, text: string) => {
    const file = join(redisDir, name);
    rmSync(file, { force: true });
    writeFileSync(file, text, { mode: 0o600 });
    return file;
  };
  const passwords = { issuer: randomBytes(32).toString('hex'), verifier: randomBytes(32).toString('hex') };
  const acl: RedisAcl = {
    issuer: { username: REDIS_ACL_USERS.issuer, passwordFile: secretFile('issuer.password', `${passwords.issuer}\n`) },
    verifier: { username: REDIS_ACL_USERS.verifier, passwordFile: secretFile('verifier.password', `${passwords.verifier}\n`) },
  };
  const aclFile = secretFile(
    'users.acl',
    redisAclFile([
      { name: REDIS_ACL_USERS.issuer, password: passwords.issuer, rules: aclRules.issuer },
      { name: REDIS_ACL_USERS.verifier, password: passwords.verifier, rules: aclRules.verifier },
    ]),
  );
  return { acl, aclFile, verifierPassword: passwords.verifier };
}

/**
 * How many migrations in auth-service/prisma/migrations are not recorded as finished in
 * `_prisma_migrations`; -1 when that cannot be told (then the migration tool runs).
 */
async function pendingMigrations(databaseUrl: string): Promise<number> {
  const dir = join(REPO_ROOT, 'auth-service', 'prisma', 'migrations');
  let names: string[];
  try {
    names = readdirSync(dir, { withFileTypes: true })
      .filter((d) => d.isDirectory())
      .map((d) => d.name);
  } catch {
    return -1;
  }
  const client = new pg.Client({ connectionString: databaseUrl, connectionTimeoutMillis: 5000 });
  try {
    await client.connect();
    const r = await client.query<{ migration_name: string }>(
      'SELECT migration_name FROM _prisma_migrations WHERE finished_at IS NOT NULL AND rolled_back_at IS NULL',
    );
    const done = new Set(r.rows.map((x) => x.migration_name));
    return names.filter((n) => !done.has(n)).length;
  } catch {
    return -1;
  } finally {
    await client.end().catch(() => undefined);
  }
}

function findOnPath(bin: string): string | null {
  for (const dir of (process.env['PATH'] ?? '').split(':')) {
    if (dir && existsSync(join(dir, bin))) return join(dir, bin);
  }
  for (const dir of ['/usr/bin', '/usr/local/bin', '/usr/sbin']) if (existsSync(join(dir, bin))) return join(dir, bin);
  return null;
}

/** A URL with its password replaced by `***`. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(unparseable URL)';
  }
}
