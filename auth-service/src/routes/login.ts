/**
 * The project's own endpoints (no RFC defines them): POST /auth/register, POST /auth/login,
 * POST /auth/logout; and {@link passwordLogin}, which the password grant at /auth/token shares.
 */
import { randomUUID } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { isUniqueViolation, OAuthError } from '../errors.js';
import { hashPassword, verifyDummyPassword, verifyPassword } from '../passwords.js';
import { revokeAccessToken, revokeFamily, revokeRefreshToken, startSession, type TokenResponse } from '../sessions.js';
import { inSpan } from '../tracing.js';
import { loginBody, logoutBody, normalizeUsername, parseBody, registerBody } from './bodies.js';
import { bearer, noStore, perMinute, propagated, type LoginLimits, type RouteDeps } from './shared.js';

/**
 * POST /auth/register, POST /auth/login, POST /auth/logout: this project's own endpoints (not an
 * RFC's), answering RFC 6749 §5 token responses and §5.2 error bodies.
 *
 * - register: `{ username, password }` -> 201 `{ id, username }`; 409 username_taken,
 *   400 invalid_request, 429 too_many_requests (REGISTER_RATE_LIMIT_PER_MIN).
 * - login: `{ username, password, scope?, client_id? }` -> 200 token response (no-store);
 *   400 invalid_grant (wrong username or password, one message for both), invalid_scope,
 *   invalid_request; 429 too_many_requests (per address and per username).
 * - logout: Bearer access token (RFC 6750), optional `refresh_token` -> 204; revokes the
 *   token's `jti`, its refresh-token family (`sid`) and the given refresh token (the user's own
 *   only); 401/403 from the core's denial; 503 temporarily_unavailable when saved but not
 *   yet propagated to Redis.
 *
 * Password hashing (register, login) is bounded: past the hash limiter's queue, 503
 * temporarily_unavailable with Retry-After.
 */
export function registerLoginRoutes(api: FastifyInstance, deps: RouteDeps, limits: LoginLimits): void {
  const { config, prisma, clock, metrics, scrypt, hashLimiter } = deps;

  // -- POST /auth/register ------------------------------------------------------------------
  api.post(
    '/auth/register',
    { config: { rateLimit: perMinute(config.rateLimit.registerPerAddressPerMin, 'register') } },
    async (req, reply) => {
      const body = parseBody(registerBody, req.body);
      const username = normalizeUsername(body.username);
      const passwordHash = await hashLimiter.run(async () => {
        const t0 = process.hrtime.bigint();
        const hash = await hashPassword(body.password, scrypt);
        metrics.passwordHashDuration.observe(Number(process.hrtime.bigint() - t0) / 1e9);
        return hash;
      });
      try {
        const user = await prisma.user.create({
          data: {
            id: randomUUID(),
            username,
            passwordHash,
            roles: [...config.defaultUserRoles],
            scopes: [...config.defaultUserScopes],
            createdAt: new Date(clock.now()),
          },
          select: { id: true, username: true },
        });
        return reply.code(201).send(user);
      } catch (err) {
        if (isUniqueViolation(err)) throw new OAuthError('username_taken', 'this username is already registered');
        throw err;
      }
    },
  );

  // -- POST /auth/login -----------------------------------------------------------------------
  api.post(
    '/auth/login',
    {
      config: { rateLimit: perMinute(config.rateLimit.loginPerAddressPerMin, 'login-addr') },
      preHandler: limits.usernameLimit,
    },
    async (req, reply) => {
      const tokens = await inSpan('auth.login', () => passwordLogin(deps, req));
      return noStore(reply).send(tokens);
    },
  );

  // -- POST /auth/logout ------------------------------------------------------------------------
  api.post('/auth/logout', async (req, reply) => {
    await inSpan('auth.logout', () => logout(deps, req));
    return noStore(reply).code(204).send();
  });
}

/**
 * Checks a username and password and starts a session: the body of /auth/login and of the
 * password grant (RFC 6749 §4.3) at /auth/token. The hash-limiter slot is taken before the user
 * lookup; unknown users get a dummy check of the same cost.
 * @returns the token response (access token, refresh token of a new family)
 * @throws OAuthError invalid_request, invalid_grant (wrong username or password),
 *   invalid_scope, temporarily_unavailable (hash limiter shed)
 */
export async function passwordLogin(deps: RouteDeps, req: FastifyRequest): Promise<TokenResponse> {
  const { config, prisma, metrics, scrypt, hashLimiter, issuer } = deps;
  const body = parseBody(loginBody, req.body);
  const username = normalizeUsername(body.username);
  // The slot is taken before the user lookup, so being shed never depends on whether the
  // user exists; known and unknown users spend the same hash inside it.
  const user = await hashLimiter.run(async () => {
    const t0 = process.hrtime.bigint();
    const found = await prisma.user.findUnique({ where: { username } });
    const ok = found ? await verifyPassword(body.password, found.passwordHash) : await verifyDummyPassword(body.password, scrypt);
    metrics.passwordHashDuration.observe(Number(process.hrtime.bigint() - t0) / 1e9);
    return ok ? found : null;
  });
  if (!user) {
    metrics.loginOutcomes.inc({ outcome: 'invalid_credentials' });
    throw new OAuthError('invalid_grant', 'invalid username or password');
  }
  try {
    const tokens = await startSession(issuer, user, {
      clientId: body.client_id ?? config.defaultClientId,
      ...(body.scope !== undefined ? { scope: body.scope } : {}),
    });
    metrics.loginOutcomes.inc({ outcome: 'success' });
    return tokens;
  } catch (err) {
    if (err instanceof OAuthError && err.code === 'invalid_scope') metrics.loginOutcomes.inc({ outcome: 'invalid_scope' });
    throw err;
  }
}

async function logout(deps: RouteDeps, req: FastifyRequest): Promise<void> {
  const { metrics, issuer } = deps;
  const identity = await bearer(deps, req, {});
  const body = parseBody(logoutBody, req.body);
  const errors: Array<Error | null> = [];
  if (identity.sid) errors.push(await revokeFamily(issuer, identity.sid, 'logout'));
  errors.push(await revokeAccessToken(issuer, { jti: identity.jti, sub: identity.sub, sid: identity.sid, exp: identity.exp }));
  if (body.refresh_token) errors.push((await revokeRefreshToken(issuer, body.refresh_token, 'logout', { onlyForUser: identity.sub })).error);
  metrics.revocations.inc({ kind: 'sid' });
  metrics.revocations.inc({ kind: 'jti' });
  propagated(errors.find((e) => e !== null) ?? null);
}
