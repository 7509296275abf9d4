/**
 * Bulk seeding of load-test users: `<prefix>1` .. `<prefix>N`, each with its own random password,
 * written straight into the auth-service's database through Prisma (DATABASE_URL) with hashes in
 * the stored scrypt format, and a JSON file `[{"username","password"}]` for k6.
 *
 * Idempotent: a user that exists, whose password is in the existing `--out` file and whose hash
 * has the requested cost is kept (not re-hashed); every other user of the range is created or
 * updated (new password). Scopes and roles are set on every user of the range. The file is
 * rewritten after each batch, so an interrupted run resumes where it stopped.
 *
 * `--password-cost loadtest` hashes with N=2^12 instead of the production N=2^15 (8 times less
 * work, 4 MiB instead of 32 MiB). The hash format stores its parameters, so these users are
 * checked at their own cost and nobody else's changes. It is never the default; see README.md
 * "Load-test users" for why it is safe and where it is not.
 *
 * Usage: npm run seed-users -w @jwt-mesh/auth-service -- --count 10000 --out users.json
 *          [--prefix loadtest-] [--password-cost production|loadtest] [--scope "a b"]... [--role r]...
 *          [--jobs N] [--rehash]
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { readFile, rename, writeFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { ConfigError, parseConfig, threadpoolSize } from '../src/config.js';
import { createPrisma } from '../src/db.js';
import { hashPassword, SCRYPT_DEFAULTS, verifyPassword, type ScryptParams } from '../src/passwords.js';

/** The two KDF costs the command offers. `loadtest` only ever applies to the users it seeds. */
export const PASSWORD_COSTS: Readonly<Record<'production' | 'loadtest', ScryptParams>> = Object.freeze({
  production: SCRYPT_DEFAULTS,
  loadtest: Object.freeze({ log2N: 12, r: 8, p: 1 }),
});

/** The scopes of the demo user `alice`: every route of the k6 mix answers. */
export const DEFAULT_LOADTEST_SCOPES = Object.freeze(['orders:read', 'orders:write', 'inventory:read', 'inventory:write', 'profile:read']);

/** Users written per SQL statement. */
const BATCH = 500;
const MAX_COUNT = 1_000_000;

const HELP = `Usage: seed-users --count N --out FILE [options]

Creates or updates the load-test users <prefix>1 .. <prefix>N in the auth-service's database
(DATABASE_URL), each with its own random password, and writes FILE as
[{"username": "...", "password": "..."}] (mode 0600) for k6. Re-running keeps users whose
password is in FILE and whose hash has the requested cost; the others get a new password.

Options:
  --count N                 how many users, 1-${MAX_COUNT}
  --out FILE                the users' JSON file (relative paths: from where npm was started)
  --prefix P                username prefix, 1-40 of a-z 0-9 . _ - (default loadtest-)
  --password-cost C         production (default: scrypt N=2^15, r=8, p=1, ~40 ms of one core per
                            user) or loadtest (N=2^12, 8x cheaper: for throwaway load-test
                            databases only, never for real users)
  --scope "S1 S2"           scopes (repeatable; default ${DEFAULT_LOADTEST_SCOPES.join(' ')})
  --role R                  a role (repeatable; default user)
  --jobs N                  hashes computed at once (default: CPUs, at most UV_THREADPOOL_SIZE)
  --rehash                  give every user a new password, even those FILE already holds
  -h, --help                this text`;

/** A line of output. */
type Print = (line: string) => void;

interface SeedOptions {
  count: number;
  out: string;
  prefix: string;
  cost: 'production' | 'loadtest';
  scopes: string[];
  roles: string[];
  jobs: number;
  rehash: boolean;
}

class UsageError extends Error {}

function parseOptions(argv: string[], env: NodeJS.ProcessEnv): SeedOptions | 'help' {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        count: { type: 'string' },
        out: { type: 'string' },
        prefix: { type: 'string', default: 'loadtest-' },
        'password-cost': { type: 'string', default: 'production' },
        scope: { type: 'string', multiple: true },
        role: { type: 'string', multiple: true },
        jobs: { type: 'string' },
        rehash: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  if (values.help) return 'help';
  const whole = (name: string, raw: string | undefined, min: number, max: number): number => {
    if (raw === undefined) throw new UsageError(`--${name} is required`);
    if (!/^\d+$/.test(raw) || Number(raw) < min || Number(raw) > max) throw new UsageError(`--${name} must be a whole number from ${min} to ${max} (got ${JSON.stringify(raw)})`);
    return Number(raw);
  };
  const count = whole('count', values.count, 1, MAX_COUNT);
  if (!values.out) throw new UsageError('--out is required (the JSON file k6 reads)');
  const prefix = values.prefix;
  if (!/^[a-z0-9._-]{1,40}$/.test(prefix)) throw new UsageError(`--prefix must be 1-40 of a-z 0-9 . _ - (got ${JSON.stringify(prefix)})`);
  if (`${prefix}${count}`.length < 3) throw new UsageError('--prefix is too short: usernames need at least 3 characters');
  const cost = values['password-cost'];
  if (cost !== 'production' && cost !== 'loadtest') throw new UsageError(`--password-cost must be production or loadtest (got ${JSON.stringify(cost)})`);
  const scopes = values.scope ? [...new Set(values.scope.flatMap((s) => s.split(/\s+/)).filter(Boolean))] : [...DEFAULT_LOADTEST_SCOPES];
  const bad = scopes.find((s) => !/^[\x21\x23-\x5b\x5d-\x7e]+$/.test(s));
  if (bad !== undefined) throw new UsageError(`--scope: ${JSON.stringify(bad)} is not an RFC 6749 scope token`);
  const roles = values.role ? [...new Set(values.role)] : ['user'];
  const badRole = roles.find((r) => !/^[A-Za-z0-9._:-]{1,64}$/.test(r));
  if (badRole !== undefined) throw new UsageError(`--role: ${JSON.stringify(badRole)} must be 1-64 of A-Z a-z 0-9 . _ : -`);
  const pool = threadpoolSize(env);
  const jobs = values.jobs === undefined ? Math.min(availableParallelism(), pool) : whole('jobs', values.jobs, 1, pool);
  // npm run -w changes into the workspace; a relative --out means the caller's directory.
  const out = path.resolve(env['INIT_CWD'] ?? process.cwd(), values.out);
  return { count, out, prefix, cost, scopes, roles, jobs, rehash: values.rehash };
}

/** The password of each username in an earlier output file; empty when there is none. */
async function readPreviousFile(file: string): Promise<Map<string, string>> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return new Map();
    throw new UsageError(`--out: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  let list: unknown;
  try {
    list = JSON.parse(text);
  } catch {
    throw new UsageError(`--out: ${file} exists and is not JSON; move it away or name another file`);
  }
  if (!Array.isArray(list)) throw new UsageError(`--out: ${file} exists and is not a users file ([{username, password}])`);
  const known = new Map<string, string>();
  for (const e of list as Array<{ username?: unknown; password?: unknown }>) {
    if (typeof e?.username === 'string' && typeof e.password === 'string') known.set(e.username, e.password);
  }
  return known;
}

/** True when an encoded hash was made with `params` (`scrypt$<log2N>$<r>$<p>$...`). */
function hashHasCost(encoded: string, params: ScryptParams): boolean {
  return encoded.startsWith(`scrypt$${params.log2N}$${params.r}$${params.p}$`);
}

/**
 * CLI entry point.
 * @returns the exit code: 0 done, 1 the database failed, 2 bad arguments or configuration
 */
export async function main(
  argv: string[],
  env: NodeJS.ProcessEnv = process.env,
  out: Print = (l) => process.stdout.write(`${l}\n`),
  err: Print = (l) => process.stderr.write(`${l}\n`),
): Promise<number> {
  let opts: SeedOptions | 'help';
  let databaseUrl: string;
  try {
    opts = parseOptions(argv, env);
    if (opts === 'help') {
      out(HELP);
      return 0;
    }
    databaseUrl = parseConfig(env).databaseUrl;
  } catch (e) {
    if (e instanceof UsageError) {
      err(`seed-users: ${e.message}\n\n${HELP}`);
      return 2;
    }
    if (e instanceof ConfigError) {
      err(`seed-users: ${e.message}`);
      return 2;
    }
    throw e;
  }
  const params = PASSWORD_COSTS[opts.cost];
  if (opts.cost === 'loadtest') {
    err(`seed-users: --password-cost loadtest: these users' passwords are hashed with scrypt N=2^${params.log2N} (production: 2^${SCRYPT_DEFAULTS.log2N}); use them only in a throwaway load-test database`);
  }
  const started = Date.now();
  const usernames = Array.from({ length: opts.count }, (_, i) => `${opts.prefix}${i + 1}`);
  if (usernames.some((u) => u.length > 64)) {
    err('seed-users: --prefix is too long: usernames must be at most 64 characters');
    return 2;
  }

  const prisma = createPrisma(databaseUrl, { poolMax: 4, connectionTimeoutMs: 10_000 });
  try {
    let previous: Map<string, string>;
    try {
      previous = await readPreviousFile(opts.out);
    } catch (e) {
      if (e instanceof UsageError) {
        err(`seed-users: ${e.message}`);
        return 2;
      }
      throw e;
    }

    // Which users already hold the password the file gives them, at the requested cost.
    const stored = new Map<string, string>();
    for (let i = 0; i < usernames.length; i += 5000) {
      const rows = await prisma.user.findMany({ where: { username: { in: usernames.slice(i, i + 5000) } }, select: { username: true, passwordHash: true } });
      for (const r of rows) stored.set(r.username, r.passwordHash);
    }
    const kept = new Set(
      opts.rehash ? [] : usernames.filter((u) => previous.has(u) && stored.has(u) && hashHasCost(stored.get(u)!, params)),
    );
    // One check guards against a file from another database or an older run.
    const sample = kept.values().next().value;
    if (sample !== undefined && !(await verifyPassword(previous.get(sample)!, stored.get(sample)!))) {
      err(`seed-users: ${opts.out} does not match the database (${sample}'s password fails); every user gets a new password`);
      kept.clear();
    }

    const todo = usernames.filter((u) => !kept.has(u));
    const passwords = new Map<string, string>();
    for (const u of kept) passwords.set(u, previous.get(u)!);
    // The file is rewritten after every batch (atomically), so an interrupted run resumes: the
    // users it holds are kept by the next run.
    const writeUsersFile = async () => {
      const file = usernames.filter((u) => passwords.has(u) && (kept.has(u) || written.has(u))).map((username) => ({ username, password: passwords.get(username)! }));
      const tmp = `${opts.out}.${process.pid}.tmp`;
      await writeFile(tmp, `${JSON.stringify(file).replace(/\},\{/g, '},\n{')}\n`, { mode: 0o600 });
      await rename(tmp, opts.out);
    };
    const written = new Set<string>();
    let done = 0;
    let lastProgress = Date.now();
    const progress = () => {
      const sec = (Date.now() - started) / 1000;
      const left = done > 0 ? ((todo.length - done) * sec) / done : NaN;
      err(`seed-users: ${done}/${todo.length} hashed and written (${Math.floor((100 * done) / todo.length)}%), ${sec.toFixed(1)} s${Number.isFinite(left) ? `, about ${Math.ceil(left)} s left` : ''}`);
    };

    for (let i = 0; i < todo.length; i += BATCH) {
      const batch = todo.slice(i, i + BATCH);
      const hashes = new Array<string>(batch.length);
      let next = 0;
      const worker = async () => {
        for (let j = next++; j < batch.length; j = next++) {
          const password = randomBytes(18).toString('base64url');
          passwords.set(batch[j]!, password);
          hashes[j] = await hashPassword(password, params);
        }
      };
      await Promise.all(Array.from({ length: opts.jobs }, worker));
      await prisma.$executeRaw`
        INSERT INTO users (id, username, password_hash, scopes, roles)
        SELECT u.id, u.username, u.hash, ${opts.scopes}::text[], ${opts.roles}::text[]
        FROM unnest(${batch.map(() => randomUUID())}::uuid[], ${batch}::text[], ${hashes}::text[]) AS u(id, username, hash)
        ON CONFLICT (username) DO UPDATE
          SET password_hash = EXCLUDED.password_hash, scopes = EXCLUDED.scopes, roles = EXCLUDED.roles`;
      for (const u of batch) written.add(u);
      await writeUsersFile();
      done += batch.length;
      if (Date.now() - lastProgress >= 2000 && done < todo.length) {
        lastProgress = Date.now();
        progress();
      }
    }
    const keptList = [...kept];
    for (let i = 0; i < keptList.length; i += 5000) {
      await prisma.user.updateMany({ where: { username: { in: keptList.slice(i, i + 5000) } }, data: { scopes: opts.scopes, roles: opts.roles } });
    }

    await writeUsersFile();
    const sec = ((Date.now() - started) / 1000).toFixed(1);
    out(
      `seed-users: ${opts.count} users ${opts.prefix}1..${opts.prefix}${opts.count} (${todo.length} created or given a new password, ${kept.size} kept) ` +
        `at cost ${opts.cost} (scrypt N=2^${params.log2N}, r=${params.r}, p=${params.p}), ${opts.jobs} jobs, in ${sec} s; scopes [${opts.scopes.join(' ')}]; wrote ${opts.out}`,
    );
    return 0;
  } catch (e) {
    err(`seed-users failed: ${(e as Error).message}`);
    return 1;
  } finally {
    await prisma.$disconnect();
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = await main(process.argv.slice(2));
}
