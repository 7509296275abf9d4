// The offline migrate tool: `deploy` creates the database and applies every migration with the
// same `_prisma_migrations` rows as `prisma migrate deploy`; a second deploy applies nothing;
// `diff --name` writes a new migration folder from the schema change.
import { createHash, randomBytes } from 'node:crypto';
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import t from 'tap';
import { AUTH_DIR, databaseUrl, migrateCli } from './helpers.js';

const MIGRATIONS = path.join(AUTH_DIR, 'prisma/migrations');
const folders = readdirSync(MIGRATIONS, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name).sort();

async function query<R extends pg.QueryResultRow>(url: string, sql: string, params: unknown[] = []): Promise<R[]> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query<R>(sql, params)).rows;
  } finally {
    await c.end();
  }
}

const name = `jwt_mesh_mig_${randomBytes(5).toString('hex')}`;
const url = databaseUrl(name);
t.teardown(() => query(databaseUrl('postgres'), `DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`));

t.test('deploy on a database that does not exist: creates it and applies every migration', async (t) => {
  const first = await migrateCli(['deploy', '--url', url]);
  t.match(first.stdout, new RegExp(`created database "${name}"`));
  for (const f of folders) t.match(first.stdout, new RegExp(`applied ${f}`), `prints ${f}`);

  const rows = await query<{ migration_name: string; checksum: string; finished_at: Date | null; rolled_back_at: Date | null; applied_steps_count: number; logs: string | null }>(
    url,
    'SELECT migration_name, checksum, finished_at, rolled_back_at, applied_steps_count, logs FROM _prisma_migrations ORDER BY migration_name',
  );
  t.same(rows.map((r) => r.migration_name), folders, 'one row per folder');
  for (const r of rows) {
    const sql = readFileSync(path.join(MIGRATIONS, r.migration_name, 'migration.sql'));
    t.equal(r.checksum, createHash('sha256').update(sql).digest('hex'), `${r.migration_name}: checksum = sha256(migration.sql)`);
    t.type(r.finished_at, Date, 'finished_at set');
    t.equal(r.rolled_back_at, null);
    t.equal(r.applied_steps_count, 1);
    t.equal(r.logs, null);
  }
  const tables = (await query<{ tablename: string }>(url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")).map((r) => r.tablename);
  t.same(tables, ['_prisma_migrations', 'refresh_tokens', 'revoked_access_tokens', 'sessions', 'signing_keys', 'users']);
});

t.test('a second deploy applies nothing', async (t) => {
  const second = await migrateCli(['deploy', '--url', url]);
  t.match(second.stdout, /no pending migrations/);
  t.notMatch(second.stdout, /^(?:applied|created) /m);
  const n = await query<{ n: number }>(url, 'SELECT count(*)::int AS n FROM _prisma_migrations');
  t.equal(n[0]!.n, folders.length);
});

t.test('diff: nothing when the schema matches; a new folder for a change, which deploy then applies', async (t) => {
  const work = mkdtempSync(path.join(tmpdir(), 'jwt-mesh-migrate-'));
  t.teardown(() => rmSync(work, { recursive: true, force: true }));
  cpSync(path.join(AUTH_DIR, 'prisma'), work, { recursive: true });
  const args = ['--schema', path.join(work, 'schema.prisma'), '--migrations', path.join(work, 'migrations'), '--url', url];
  const before = await query<{ n: number }>(url, "SELECT count(*)::int AS n FROM pg_database WHERE datname LIKE 'prisma\\_shadow\\_%'");

  const same = await migrateCli(['diff', '--name', 'nothing', ...args]);
  t.match(same.stdout, /no difference/);
  t.equal(readdirSync(path.join(work, 'migrations')).length, folders.length + 1, 'no folder written (+ migration_lock.toml)');

  const schemaPath = path.join(work, 'schema.prisma');
  writeFileSync(schemaPath, readFileSync(schemaPath, 'utf8').replace('  tokensRevokedBefore DateTime?', '  displayName         String?        @map("display_name") @db.VarChar(128)\n  tokensRevokedBefore DateTime?'));
  const changed = await migrateCli(['diff', '--name', 'add display name', ...args]);
  t.match(changed.stdout, /wrote .*_add_display_name\/migration\.sql/);
  const created = readdirSync(path.join(work, 'migrations')).filter((d) => d.endsWith('_add_display_name'));
  t.equal(created.length, 1);
  t.match(created[0], /^\d{14}_add_display_name$/, 'Prisma folder layout');
  const sql = readFileSync(path.join(work, 'migrations', created[0]!, 'migration.sql'), 'utf8');
  t.match(sql, /ALTER TABLE "users" ADD COLUMN\s+"display_name" VARCHAR\(128\)/);

  const deployed = await migrateCli(['deploy', ...args]);
  t.match(deployed.stdout, new RegExp(`applied ${created[0]}`));
  const cols = await query<{ column_name: string }>(url, "SELECT column_name FROM information_schema.columns WHERE table_name = 'users' AND column_name = 'display_name'");
  t.equal(cols.length, 1, 'the new column exists');

  const after = await query<{ n: number }>(url, "SELECT count(*)::int AS n FROM pg_database WHERE datname LIKE 'prisma\\_shadow\\_%'");
  t.equal(after[0]!.n, before[0]!.n, 'the temporary shadow databases were dropped');
});

t.test('--help, usage errors and a bad URL', async (t) => {
  const help = await migrateCli(['--help']);
  t.match(help.stdout, /npx prisma migrate deploy/);
  t.match(help.stdout, /^  deploy /m);
  t.match(help.stdout, /^  diff --name <name> /m);
  await t.rejects(migrateCli(['diff']), { code: 2, stderr: /diff needs --name/ });
  await t.rejects(migrateCli(['frobnicate']), { code: 2, stderr: /unknown command "frobnicate"/ });
  await t.rejects(migrateCli(['deploy', '--url', 'mysql://x/y']), { code: 1, stderr: /must be a postgresql:\/\/ URL/ });
});
