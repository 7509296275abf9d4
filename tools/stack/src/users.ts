/**
 * Demo users of the local stack. They are created through the auth-service's own API
 * (`POST /auth/register`, so the password is hashed by the issuer and nowhere else), then their
 * scopes and roles are set in the `users` table (the API has no admin endpoint for that).
 * Idempotent: an existing user keeps its password and gets the scopes and roles below.
 *
 * The passwords are fixed and printed: this is a local demonstration stack, not a deployment.
 */
import pg from 'pg';

/** A demo account. */
export interface DemoUser {
  username: string;
  password: string;
  /** Scopes copied into its access tokens (RFC 6749 §3.3 scope tokens). */
  scopes: string[];
  roles: string[];
  /** What the user is for in the walkthrough. */
  note: string;
}

/**
 * The default demo users:
 * - `alice`: every service scope; the whole chain orders -> inventory -> profile works;
 * - `bob`: `orders:read` only; the edge lets him reach orders, and inventory (the next hop)
 *   answers 403 `insufficient_scope`, which reaches the client unchanged;
 * - `admin`: also `introspect` (RFC 7662 introspection endpoint).
 */
export const DEMO_USERS: readonly DemoUser[] = Object.freeze([
  {
    username: 'alice',
    password: 'alice-demo-password',
    scopes: ['orders:read', 'orders:write', 'inventory:read', 'inventory:write', 'profile:read'],
    roles: ['user'],
    note: 'every service scope: the whole chain answers',
  },
  {
    username: 'bob',
    password: 'bob-demo-password',
    scopes: ['orders:read'],
    roles: ['user'],
    note: 'orders:read only: inventory (the second hop) answers 403 insufficient_scope',
  },
  {
    username: 'admin',
    password: 'admin-demo-password',
    scopes: ['orders:read', 'inventory:read', 'profile:read', 'introspect'],
    roles: ['admin', 'user'],
    note: 'may call POST /auth/introspect',
  },
]);

/**
 * Creates (or updates) the demo users.
 * @param authUrl the auth-service's own base URL, e.g. `http://127.0.0.1:4000`.
 * @param databaseUrl the auth-service's database.
 * @throws Error naming the user and the auth-service's answer when registration fails for any
 *   reason other than "username taken", or when the update touches no row.
 */
export async function seedUsers(authUrl: string, databaseUrl: string, users: readonly DemoUser[]): Promise<void> {
  for (const u of users) {
    const res = await fetch(new URL('/auth/register', authUrl), {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username: u.username, password: u.password }),
      signal: AbortSignal.timeout(10_000),
    });
    if (res.status !== 201 && res.status !== 409) {
      throw new Error(`seed: registering "${u.username}" answered ${res.status}: ${(await res.text()).slice(0, 300)}`);
    }
    await res.arrayBuffer().catch(() => undefined);
  }
  const client = new pg.Client({ connectionString: databaseUrl, connectionTimeoutMillis: 5000 });
  await client.connect();
  try {
    for (const u of users) {
      const r = await client.query('UPDATE users SET scopes = $1::text[], roles = $2::text[] WHERE username = $3', [
        u.scopes,
        u.roles,
        u.username.toLowerCase(),
      ]);
      if (r.rowCount !== 1) throw new Error(`seed: user "${u.username}" is not in the users table after registration`);
    }
  } finally {
    await client.end().catch(() => undefined);
  }
}
