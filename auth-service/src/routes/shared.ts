/**
 * What every route module shares: {@link RouteDeps} (the app's dependencies, resolved once by
 * `buildApp`) and the per-request helpers: the Bearer check (RFC 6750, through the core's
 * authenticator), the verification of a token given in a body (RFC 7009, RFC 7662), the
 * no-store headers of a token response (RFC 6749 §5.1), the 503 for a revocation not yet
 * propagated, and the rate limits (per address, and the login limits per username).
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Redis } from 'ioredis';
import { AuthError, type Authenticator, type Identity, type RouteRequirement, type Verifier, type VerifiedToken } from '@jwt-mesh/core';
import type { Clock } from '../clock.js';
import type { Config } from '../config.js';
import type { PrismaClient } from '../db.js';
import { OAuthError } from '../errors.js';
import type { HashLimiter } from '../hash-limiter.js';
import type { KeyStore } from '../keys.js';
import type { Metrics } from '../metrics.js';
import type { ScryptParams } from '../passwords.js';
import type { IssuerDeps } from '../sessions.js';
import { normalizeUsername } from './bodies.js';

/** What the route modules take: the app's `AppDeps` with defaults filled in, plus the parts every route shares. */
export interface RouteDeps {
  readonly config: Config;
  readonly prisma: PrismaClient;
  /** ioredis client (readiness). */
  readonly redis: Redis;
  readonly keys: KeyStore;
  readonly clock: Clock;
  readonly metrics: Metrics;
  /** scrypt cost of new password hashes and of the dummy check for unknown users. */
  readonly scrypt: ScryptParams;
  /** Bounds concurrent password hashes; past its queue, 503 temporarily_unavailable + Retry-After. */
  readonly hashLimiter: HashLimiter;
  /** What sessions.ts needs to issue, rotate and revoke tokens. */
  readonly issuer: IssuerDeps;
  /** This service's own access-token verifier (RFC 9068 tokens it issued; no revocation check). */
  readonly verifier: Verifier;
  /** The Bearer authenticator of logout and introspect: verifier plus the Redis revocation check. */
  readonly authenticator: Authenticator;
  /** The revocation re-sync schedule, when there is one (`/readyz` reports it). */
  readonly revocationSync: { synced(): boolean } | undefined;
}

/** Sets `Cache-Control: no-store` and `Pragma: no-cache` (RFC 6749 §5.1) on a token response; returns the reply. */
export const noStore = (reply: FastifyReply) => reply.header('cache-control', 'no-store').header('pragma', 'no-cache');

/**
 * Fails with 503 when the DB was written but the Redis publish was not (client retries).
 * @param error - the publish failure sessions.ts returned, or null when it was published
 * @throws OAuthError temporarily_unavailable when `error` is not null
 */
export function propagated(error: Error | null): void {
  if (error) throw new OAuthError('temporarily_unavailable', 'the revocation is saved but could not be propagated yet; retry', { cause: error });
}

/**
 * The identity of the request's Bearer access token (RFC 6750), verified and checked against
 * revocation by the core's authenticator.
 * @param requirement - what the token must carry (e.g. `{ scopes: ['introspect'] }`; `{}`: any valid token)
 * @returns the core's identity (`sub`, `jti`, `sid`, `exp`, ...)
 * @throws AuthError (answered by the core's `toDenial`: 401 with `WWW-Authenticate`, 403 insufficient_scope, 503)
 */
export async function bearer(deps: RouteDeps, req: FastifyRequest, requirement: RouteRequirement): Promise<Identity> {
  const decision = await deps.authenticator.decide({ method: req.method, path: req.url.split('?')[0] ?? '/', headers: req.headers }, requirement);
  if (!decision.allow) throw decision.error;
  if (!decision.identity) throw new AuthError('credentials_missing');
  return decision.identity;
}

/**
 * Verifies a token given in a body (RFC 7009 revocation, RFC 7662 introspection) as one of our
 * access tokens.
 * @returns the verified token, or null when it is invalid or expired (nothing to revoke, inactive)
 * @throws AuthError jwks_unavailable or internal: the verdict cannot be made (503)
 */
export async function verifiedOrNull(deps: RouteDeps, token: string): Promise<VerifiedToken | null> {
  return deps.verifier.verify(token).catch((err: unknown) => {
    if (err instanceof AuthError && err.code !== 'jwks_unavailable' && err.code !== 'internal') return null;
    throw err;
  });
}

/**
 * A route's per-address rate limit (`config.rateLimit` of @fastify/rate-limit), counted per
 * client address and `name`.
 * @param max - requests per minute
 */
export const perMinute = (max: number, name: string) => ({
  max,
  timeWindow: 60_000,
  keyGenerator: (req: FastifyRequest) => `${name}:${req.ip}`,
});

/** The login limits shared by /auth/login and the password grant at /auth/token. */
export interface LoginLimits {
  /**
   * Per-username login limit (the key is the normalized username from the body; a missing or
   * overlong username is not counted here).
   * @throws OAuthError too_many_requests with `retryAfterSec`
   */
  usernameLimit(req: FastifyRequest): Promise<void>;
  /**
   * Per-address login limit, for the password grant at /auth/token.
   * @throws OAuthError too_many_requests with `retryAfterSec`
   */
  addressLimit(req: FastifyRequest): Promise<void>;
}

/**
 * The login limits (LOGIN_USERNAME_RATE_LIMIT_PER_MIN, LOGIN_RATE_LIMIT_PER_MIN), counted
 * in the rate-limit plugin's store.
 * @param api - an instance where @fastify/rate-limit is registered (`createRateLimit`)
 */
export function createLoginLimits(api: FastifyInstance, config: Config): LoginLimits {
  /** Per-username login limit (the key is the normalized username from the body). */
  const usernameLimiter = api.createRateLimit({
    max: config.rateLimit.loginPerUsernamePerMin,
    timeWindow: 60_000,
    keyGenerator: (req) => `login-user:${normalizeUsername(String((req.body as { username?: unknown } | undefined)?.username ?? ''))}`,
  });
  /** Per-address login limit, for the password grant at /auth/token. */
  const loginAddressLimiter = api.createRateLimit({
    max: config.rateLimit.loginPerAddressPerMin,
    timeWindow: 60_000,
    keyGenerator: (req) => `login-addr:${req.ip}`,
  });
  async function enforce(limiter: typeof usernameLimiter, req: FastifyRequest): Promise<void> {
    const r = await limiter(req);
    if (!r.isAllowed && r.isExceeded) {
      const retry = Math.max(1, r.ttlInSeconds);
      throw new OAuthError('too_many_requests', `rate limit exceeded; retry in ${retry} seconds`, { retryAfterSec: retry });
    }
  }
  const usernameLimit = async (req: FastifyRequest): Promise<void> => {
    const username = (req.body as { username?: unknown } | undefined)?.username;
    if (typeof username === 'string' && username.length > 0 && username.length <= 64) await enforce(usernameLimiter, req);
  };
  return { usernameLimit, addressLimit: (req) => enforce(loginAddressLimiter, req) };
}
