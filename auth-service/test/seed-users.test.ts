// The load-test seeding command against real PostgreSQL: users in the stored scrypt format at the
// chosen cost, the JSON file k6 reads, idempotent re-runs, logins through the app at the users'
// own cost, and clear errors.
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { main } from '../scripts/seed-users.js';
import { verifyPassword } from '../src/passwords.js';
import { createTestApp, createTestDatabase } from './helpers.js';

const url = await createTestDatabase(t);
const dir = mkdtempSync(path.join(tmpdir(), 'seed-users-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

async function seed(args: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(args, { DATABASE_URL: url, INIT_CWD: dir }, (l) => out.push(l), (l) => err.push(l));
  return { code, out: out.join('\n'), err: err.join('\n') };
}
const readUsers = (file: string) => JSON.parse(readFileSync(path.join(dir, file), 'utf8')) as Array<{ username: string; password: string }>;

t.test('seeds N users at the load-test cost with the k6 scopes, and a 0600 users file', async (t) => {
  const r = await seed(['--count', '20', '--prefix', 'lt-a-', '--password-cost', 'loadtest', '--out', 'a.json']);
  t.equal(r.code, 0, r.err);
  t.match(r.out, /20 users lt-a-1\.\.lt-a-20 \(20 created or given a new password, 0 kept\) at cost loadtest \(scrypt N=2\^12/);
  t.match(r.err, /only in a throwaway load-test database/, 'the cheaper cost is announced');
  const users = readUsers('a.json');
  t.equal(users.length, 20);
  t.same(users.map((u) => u.username), Array.from({ length: 20 }, (_, i) => `lt-a-${i + 1}`));
  t.equal(new Set(users.map((u) => u.password)).size, 20, 'a password of its own each');
  t.equal(statSync(path.join(dir, 'a.json')).mode & 0o777, 0o600, 'passwords: owner-only file');

  const ta = await createTestApp(t, { label: 'seed', databaseUrl: url });
  const row = await ta.prisma.user.findUnique({ where: { username: 'lt-a-7' } });
  t.match(row?.passwordHash, /^scrypt\$12\$8\$1\$[\w-]{22}\$[\w-]{43}$/, 'the stored format, with its parameters');
  t.same(row?.scopes, ['orders:read', 'orders:write', 'inventory:read', 'inventory:write', 'profile:read'], "alice's scopes");
  t.same(row?.roles, ['user']);
  const login = await ta.app.inject({ method: 'POST', url: '/auth/login', payload: users[6] });
  t.equal(login.statusCode, 200, 'logs in through the app, checked at its own cost');
  t.equal(login.json().scope, 'orders:read orders:write inventory:read inventory:write profile:read');
});

t.test('re-running keeps the users the file holds, adds the missing ones, and --rehash renews all', async (t) => {
  t.equal((await seed(['--count', '5', '--prefix', 'lt-b-', '--password-cost', 'loadtest', '--out', 'b.json'])).code, 0);
  const first = readUsers('b.json');
  const again = await seed(['--count', '8', '--prefix', 'lt-b-', '--password-cost', 'loadtest', '--out', 'b.json', '--scope', 'orders:read']);
  t.equal(again.code, 0, again.err);
  t.match(again.out, /\(3 created or given a new password, 5 kept\)/);
  const second = readUsers('b.json');
  t.same(second.slice(0, 5), first, 'the kept users keep their passwords');
  t.equal(second.length, 8);
  const ta = await createTestApp(t, { label: 'seed-b', databaseUrl: url });
  const kept = await ta.prisma.user.findUnique({ where: { username: 'lt-b-1' } });
  t.same(kept?.scopes, ['orders:read'], 'scopes updated on kept users too');
  t.ok(await verifyPassword(second[0]!.password, kept!.passwordHash));

  const renewed = await seed(['--count', '8', '--prefix', 'lt-b-', '--password-cost', 'loadtest', '--out', 'b.json', '--rehash']);
  t.match(renewed.out, /\(8 created or given a new password, 0 kept\)/);
  t.not(readUsers('b.json')[0]!.password, first[0]!.password);

  // A users file that does not match the database (another run's) is detected, not trusted.
  writeFileSync(path.join(dir, 'b.json'), JSON.stringify(first));
  const stale = await seed(['--count', '5', '--prefix', 'lt-b-', '--password-cost', 'loadtest', '--out', 'b.json']);
  t.match(stale.err, /does not match the database/);
  t.match(stale.out, /\(5 created or given a new password, 0 kept\)/);
  const fresh = readUsers('b.json');
  const row = await ta.prisma.user.findUnique({ where: { username: 'lt-b-2' } });
  t.ok(await verifyPassword(fresh[1]!.password, row!.passwordHash), 'the new file matches the database');
});

t.test('the production cost is the default', async (t) => {
  const r = await seed(['--count', '2', '--prefix', 'lt-c-', '--out', 'c.json']);
  t.equal(r.code, 0, r.err);
  t.notMatch(r.err, /throwaway/);
  const ta = await createTestApp(t, { label: 'seed-c', databaseUrl: url });
  const row = await ta.prisma.user.findUnique({ where: { username: 'lt-c-1' } });
  t.match(row?.passwordHash, /^scrypt\$15\$8\$1\$/);
  // Switching a range from loadtest to production cost re-hashes it (the cost is part of "kept").
  t.equal((await seed(['--count', '2', '--prefix', 'lt-c-', '--out', 'c.json', '--password-cost', 'loadtest'])).code, 0);
  t.match((await ta.prisma.user.findUnique({ where: { username: 'lt-c-1' } }))?.passwordHash, /^scrypt\$12\$/);
});

t.test('bad arguments: exit 2 with a message naming the flag', async (t) => {
  const cases: Array<[string[], RegExp]> = [
    [['--out', 'x.json'], /--count is required/],
    [['--count', '0', '--out', 'x.json'], /--count must be a whole number from 1 to 1000000 \(got "0"\)/],
    [['--count', '10'], /--out is required/],
    [['--count', '10', '--out', 'x.json', '--password-cost', 'cheap'], /--password-cost must be production or loadtest \(got "cheap"\)/],
    [['--count', '10', '--out', 'x.json', '--prefix', 'Load Test'], /--prefix must be 1-40 of a-z 0-9/],
    [['--count', '10', '--out', 'x.json', '--scope', 'a"b'], /--scope: "a\\"b" is not an RFC 6749 scope token/],
    [['--count', '10', '--out', 'x.json', '--jobs', '99'], /--jobs must be a whole number from 1 to 4/],
    [['--count', '10', '--out', 'x.json', '--bogus'], /Unknown option '--bogus'/],
  ];
  for (const [args, message] of cases) {
    const r = await seed(args);
    t.equal(r.code, 2, args.join(' '));
    t.match(r.err, message, args.join(' '));
  }
  writeFileSync(path.join(dir, 'notjson.json'), 'hello');
  const r = await seed(['--count', '3', '--out', 'notjson.json']);
  t.equal(r.code, 2);
  t.match(r.err, /notjson\.json exists and is not JSON/);
  const help = await seed(['--help']);
  t.equal(help.code, 0);
  t.match(help.out, /--password-cost C/);
});
