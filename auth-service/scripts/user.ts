/**
 * Creates or updates a user with chosen scopes and roles (seeding demo users, giving a resource
 * server the `introspect` scope). POST /auth/register only ever grants DEFAULT_USER_SCOPES /
 * DEFAULT_USER_ROLES.
 *
 * Usage: npm run user -w @jwt-mesh/auth-service -- --username alice --password 'secret pw' \
 *          [--scope "orders:read orders:write"] [--role admin]
 */
import { randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';
import { parseConfig } from '../src/config.js';
import { createPrisma } from '../src/db.js';
import { hashPassword } from '../src/passwords.js';

const HELP = `Usage: user --username <name> --password <pw> [--scope "<s1> <s2>"] [--role <r>]...

Creates the user, or updates the password, scopes and roles of an existing one.
Defaults: DEFAULT_USER_SCOPES and DEFAULT_USER_ROLES. Reads DATABASE_URL.

Options:
  --username <name>   3-64 of A-Z a-z 0-9 . _ - (stored lower-case)
  --password <pw>     8-256 characters
  --scope <list>      space-separated scopes (repeatable)
  --role <role>       a role (repeatable)
  -h, --help          this text`;

/** CLI entry point; returns the exit code. */
export async function main(argv: string[], env: NodeJS.ProcessEnv = process.env, out: (line: string) => void = console.log): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        username: { type: 'string' },
        password: { type: 'string' },
        scope: { type: 'string', multiple: true },
        role: { type: 'string', multiple: true },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (err) {
    console.error(`${(err as Error).message}\n\n${HELP}`);
    return 2;
  }
  if (values.help) {
    out(HELP);
    return 0;
  }
  const username = values.username?.toLowerCase();
  if (!username || !/^[a-z0-9._-]{3,64}$/.test(username)) {
    console.error(`user: --username must be 3-64 of A-Z a-z 0-9 . _ -\n\n${HELP}`);
    return 2;
  }
  if (!values.password || values.password.length < 8 || values.password.length > 256) {
    console.error('user: --password must be 8-256 characters');
    return 2;
  }
  const config = parseConfig(env);
  const scopes = values.scope ? [...new Set(values.scope.flatMap((s) => s.split(/\s+/)).filter(Boolean))] : [...config.defaultUserScopes];
  const roles = values.role ? [...new Set(values.role)] : [...config.defaultUserRoles];
  const prisma = createPrisma(config.databaseUrl, { poolMax: 2 });
  try {
    const passwordHash = await hashPassword(values.password);
    const user = await prisma.user.upsert({
      where: { username },
      create: { id: randomUUID(), username, passwordHash, scopes, roles },
      update: { passwordHash, scopes, roles },
    });
    out(`user ${user.username} (${user.id}): scopes=[${scopes.join(' ')}] roles=[${roles.join(' ')}]`);
    return 0;
  } catch (err) {
    console.error(`user failed: ${(err as Error).message}`);
    return 1;
  } finally {
    await prisma.$disconnect();
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = await main(process.argv.slice(2));
}
