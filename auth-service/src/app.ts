/**
 * The auth service's HTTP API (Fastify 5), built apart from listening (CONTRIBUTING.md, "Build apart from listen"): every
 * dependency is injected, so tests use `app.inject()` or listen on port 0.
 *
 * Endpoints (README.md has request/response examples):
 *   POST /auth/register, POST /auth/login, POST /auth/token (RFC 6749 §6 refresh_token, §4.3
 *   password), POST /auth/logout, POST /auth/revoke (RFC 7009), POST /auth/introspect
 *   (RFC 7662), GET /.well-known/jwks.json (RFC 7517), GET /.well-known/openid-configuration
 *   (RFC 8414), GET /healthz, GET /readyz, GET /metrics.
 */
import { randomUUID } from 'node:crypto';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Span } from '@opentelemetry/api';
import { addServerSpans } from '@jwt-mesh/fastify-auth';
import formbody from '@fastify/formbody';
import rateLimit from '@fastify/rate-limit';
import type { Redis } from 'ioredis';
import { pino, type DestinationStream, type Logger } from 'pino';
import { z } from 'zod';
import {
  AuthError,
  createAuthenticator,
  createVerifier,
  toDenial,
  type Authenticator,
  type Identity,
  type RevocationChecker,
  type RevocationPublisher,
  type RouteRequirement,
  type Verifier,
  type VerifiedToken,
} from '@jwt-mesh/core';
import { systemClock, type Clock } from './clock.js';
import type { Config } from './config.js';
import type { PrismaClient } from './db.js';
import { databaseUnavailable, isUniqueViolation, OAuthError, redisUnavailable } from './errors.js';
import { AUTH_ATTR, inSpan, oneOf } from './tracing.js';
import type { KeyStore } from './keys.js';
import { createHashLimiter, type HashLimiter } from './hash-limiter.js';
import { createMetrics, type Metrics } from './metrics.js';
import { hashPassword, SCRYPT_DEFAULTS, verifyDummyPassword, verifyPassword, type ScryptParams } from './passwords.js';
import {
  introspectRefreshToken,
  refreshSession,
  revokeAccessToken,
  revokeFamily,
  revokeRefreshToken,
  startSession,
  type IssuerDeps,
  type TokenResponse,
} from './sessions.js';

/** Everything the app needs; nothing is created inside {@link buildApp} except the HTTP layer. */
export interface AppDeps {
  readonly config: Config;
  readonly prisma: PrismaClient;
  /** ioredis client: rate-limit counters (shared across replicas) and readiness. */
  readonly redis: Redis;
  readonly keys: KeyStore;
  /** The core's Redis revocation store (`createRedisRevocation`): publisher and checker. */
  readonly revocation: RevocationPublisher & RevocationChecker;
  /**
   * The revocation re-sync schedule (`scheduleRevocationSync`); when given, `/readyz` reports
   * `revocation_sync: pending` (503) until a re-sync has succeeded since start, since the
   * latest Redis reconnection, since the sync marker was last found missing and since the latest
   * revocation that could not be published; a failed publish asks it for a run at once.
   */
  readonly revocationSync?: { synced(): boolean; request?(reason: string): void };
  /** Default: the system clock. */
  readonly clock?: Clock;
  /** Default: a pino logger at `config.logLevel` with secrets redacted. */
  readonly logger?: Logger;
  /** Default: a fresh registry. */
  readonly metrics?: Metrics;
  /** scrypt cost (default {@link SCRYPT_DEFAULTS}). */
  readonly scrypt?: ScryptParams;
}

/** Largest request body accepted, bytes. Larger bodies get 400 invalid_request. */
export const BODY_LIMIT_BYTES = 16 * 1024;

/** Paths redacted from every log line (headers, cookies, passwords, tokens). */
export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'res.headers["set-cookie"]',
  'headers.authorization',
  'headers.cookie',
  '*.password',
  '*.refresh_token',
  '*.access_token',
  '*.token',
];

/**
 * The service's logger: pino, JSON lines, secrets redacted ({@link REDACT_PATHS}).
 * @param destination - where lines go (default stdout); tests pass a collecting stream
 */
export function createLogger(level: Config['logLevel'], destination?: DestinationStream): Logger {
  const options = { level, base: { service: 'auth-service' }, redact: { paths: REDACT_PATHS, censor: '[redacted]' } };
  return destination ? pino(options, destination) : pino(options);
}

// ---------------------------------------------------------------------------------------------
// Request bodies (zod). Descriptions name the field, never echo its value.

const USERNAME = /^[A-Za-z0-9._-]+$/;
const CLIENT_ID = /^[A-Za-z0-9._:-]{1,128}$/;
const SCOPE = /^[\x21\x23-\x5b\x5d-\x7e]+(?: [\x21\x23-\x5b\x5d-\x7e]+)*$/; // RFC 6749 §3.3

const field = (name: string, min: number, max: number) =>
  z
    .string({ error: (iss) => (iss.input === undefined ? `${name} is required` : `${name} must be a string (given once)`) })
    .min(min, min <= 1 ? `${name} must not be empty` : `${name} must be at least ${min} characters`)
    .max(max, `${name} must be at most ${max} characters`);
const optionalField = (name: string, max: number, pattern: RegExp, what: string) =>
  z
    .string({ error: () => `${name} must be a string (given once)` })
    .max(max, `${name} must be at most ${max} characters`)
    .regex(pattern, `${name} must be ${what}`)
    .optional();

const credentials = {
  username: field('username', 3, 64).regex(USERNAME, 'username must use only A-Z a-z 0-9 . _ -'),
  password: field('password', 8, 256),
};
/** POST /auth/register: `username` (3-64 of A-Z a-z 0-9 . _ -), `password` (8-256 characters). */
export const registerBody = z.object(credentials);
/**
 * POST /auth/login and the password grant (RFC 6749 §4.3): the credentials, optional `scope`
 * (§3.3) and `client_id`.
 */
export const loginBody = z.object({
  ...credentials,
  scope: optionalField('scope', 1024, SCOPE, 'space-separated scope tokens (RFC 6749 §3.3)'),
  client_id: optionalField('client_id', 128, CLIENT_ID, '1-128 of A-Z a-z 0-9 . _ : -'),
});
/** POST /auth/token: `grant_type` (RFC 6749 §4.3, §6), checked before the grant's own body. */
export const grantTypeBody = z.object({ grant_type: field('grant_type', 1, 64) });
/**
 * RFC 6749 §5.2: a refresh_token that is not a live refresh token of ours is `invalid_grant`,
 * whatever its length or shape (a JWT, a random string, a value of kilobytes); only a missing,
 * empty (§3.2: "sent without a value" = omitted) or repeated parameter, or one that is not a
 * string, is `invalid_request`. Its size is bounded by BODY_LIMIT_BYTES, and a value that is not
 * shaped like our tokens is refused before any hashing or database lookup (sessions.ts).
 */
export const refreshBody = z.object({
  refresh_token: z
    .string({ error: (iss) => (iss.input === undefined ? 'refresh_token is required' : 'refresh_token must be a string (given once)') })
    .min(1, 'refresh_token is required'),
  scope: optionalField('scope', 1024, SCOPE, 'space-separated scope tokens (RFC 6749 §3.3)'),
  client_id: optionalField('client_id', 128, CLIENT_ID, '1-128 of A-Z a-z 0-9 . _ : -'),
});
/** POST /auth/revoke (RFC 7009 §2.1) and POST /auth/introspect (RFC 7662 §2.1): `token`, optional `token_type_hint`. */
export const tokenBody = z.object({
  token: field('token', 1, 8192),
  token_type_hint: z.string({ error: () => 'token_type_hint must be a string (given once)' }).max(64).optional(),
});
/** POST /auth/logout: an optional `refresh_token` to revoke with the Bearer token's session. */
export const logoutBody = z.object({ refresh_token: field('refresh_token', 1, 512).optional() });

/**
 * Validates a body (JSON object or form) against a schema.
 * @throws OAuthError invalid_request naming the first bad field
 */
export function parseBody<T extends z.ZodType>(schema: T, body: unknown): z.infer<T> {
  const value = body === undefined || body === null ? {} : body;
  if (typeof value !== 'object' || Array.isArray(value)) {
    throw new OAuthError('invalid_request', 'the body must be a JSON object or application/x-www-form-urlencoded');
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw new OAuthError('invalid_request', parsed.error.issues[0]?.message ?? 'the request is malformed');
  return parsed.data;
}

/** Usernames are case-insensitive: stored and compared in lower case. */
export const normalizeUsername = (u: string): string => u.toLowerCase();

/**
 * Builds the app. Call `await app.ready()` (or `listen`) before use; `app.close()` does not
 * close the injected clients (main.ts does).
 */
export function buildApp(deps: AppDeps): FastifyInstance {
  const logger = deps.logger ?? createLogger(deps.config.logLevel);
  const routeDeps = resolveRouteDeps(deps, logger);
  const app = createServer(deps.config, logger);
  // First hook: the request's SERVER span (tracing on only); the auth.* spans nest under it.
  addServerSpans(app);
  setErrorHandlers(app);
  addMetricsHooks(app, routeDeps.metrics);
  registerBodyParsers(app);
  registerRateLimit(app, deps.config, deps.redis);
  // The routes go in a child context, so the rate-limit plugin is loaded before they are added.
  app.register(async (api) => registerRoutes(api, routeDeps));
  return app;
}

/**
 * The injected dependencies with their defaults filled in, and what every route shares: the
 * password-hash limiter, the issuer's dependencies (sessions.ts) and the Bearer authenticator.
 */
function resolveRouteDeps(deps: AppDeps, logger: Logger): RouteDeps {
  const { config, prisma, redis, keys } = deps;
  const clock = deps.clock ?? systemClock;
  const metrics = deps.metrics ?? createMetrics();
  const scrypt = deps.scrypt ?? SCRYPT_DEFAULTS;
  // Every password hash or check (login, register, password grant, the dummy check for unknown
  // users) takes a slot; past the queue, 503 + Retry-After at once (hash-limiter.ts).
  const hashLimiter = createHashLimiter({
    concurrency: config.passwordHashing.concurrency,
    maxQueue: config.passwordHashing.maxQueue,
    maxWaitMs: config.passwordHashing.queueTimeoutMs,
    onShed: (reason) => metrics.passwordHashShed.inc({ reason }),
  });
  const issuer: IssuerDeps = {
    prisma,
    keys,
    config,
    clock,
    revocation: deps.revocation,
    logger,
    metrics,
    onPublishFailed: () => deps.revocationSync?.request?.('a revocation could not be published'),
  };

  const verifier = createVerifier({
    issuer: config.jwt.issuer,
    audience: config.jwt.audience,
    algorithms: [...config.jwt.algorithms],
    clockToleranceSec: config.jwt.clockToleranceSec,
    maxLifetimeSec: config.jwt.accessTokenTtlSec,
    maxTokenBytes: config.jwt.maxTokenBytes,
    keys: keys.keySource,
    now: () => clock.now(),
  });
  // Bearer-protected endpoints (logout, introspect): signature, claims, revocation via Redis.
  const authenticator = createAuthenticator({ verifier, revocation: deps.revocation, verifiedCacheMaxEntries: 0, now: () => clock.now() });
  return { config, prisma, redis, keys, clock, metrics, scrypt, hashLimiter, issuer, verifier, authenticator, revocationSync: deps.revocationSync };
}

/** The Fastify instance: the service's logger, the body limit, proxy trust, request ids. */
function createServer(config: Config, logger: Logger): FastifyInstance {
  return Fastify({
    loggerInstance: logger as FastifyBaseLogger,
    bodyLimit: BODY_LIMIT_BYTES,
    // Fastify accepts a hop count too, though its types omit it.
    trustProxy: config.trustProxy as boolean | string[],
    requestIdHeader: 'x-request-id',
    genReqId: () => randomUUID(),
    return503OnClosing: true,
  });
}

/** Fixed descriptions for Fastify's own request errors. */
const FASTIFY_REQUEST_ERRORS: Record<string, string> = {
  FST_ERR_CTP_BODY_TOO_LARGE: `the request body is larger than ${BODY_LIMIT_BYTES} bytes`,
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'Content-Type must be application/json or application/x-www-form-urlencoded',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'Content-Length does not match the body',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'the JSON body is empty',
  FST_ERR_CTP_INVALID_JSON_BODY: 'the body is not valid JSON',
  FST_ERR_CTP_INSTANCE_ALREADY_STARTED: 'the request is malformed',
};

/**
 * Errors: one place picks statuses (errors.ts table, core toDenial for Bearer). An `OAuthError`
 * answers its own status; an `AuthError` (Bearer) the core's denial; Fastify's request errors
 * 400 invalid_request; anything else 503 temporarily_unavailable with Retry-After. Unknown
 * paths get 404 not_found.
 */
function setErrorHandlers(app: FastifyInstance): void {
  app.setErrorHandler((err: unknown, req: FastifyRequest, reply: FastifyReply) => {
    reply.header('cache-control', 'no-store').header('pragma', 'no-cache');
    if (err instanceof OAuthError) {
      if (err.retryAfterSec !== undefined) reply.header('retry-after', String(err.retryAfterSec));
      if (err.code === 'temporarily_unavailable') req.log.warn({ err }, err.description);
      return reply.code(err.status).send(err.body);
    }
    if (err instanceof AuthError) {
      const denial = toDenial(err);
      return reply.code(denial.httpStatus).headers(denial.headers).send(denial.body);
    }
    const fastifyCode = (err as { code?: string }).code;
    const status = (err as { statusCode?: number }).statusCode;
    if ((fastifyCode && fastifyCode in FASTIFY_REQUEST_ERRORS) || (status !== undefined && status >= 400 && status < 500)) {
      const description = (fastifyCode && FASTIFY_REQUEST_ERRORS[fastifyCode]) ?? 'the request is malformed';
      return reply.code(400).send(new OAuthError('invalid_request', description).body);
    }
    const dbDown = databaseUnavailable(err);
    const failure = dbDown
      ? new OAuthError('temporarily_unavailable', dbDown, { cause: err })
      : redisUnavailable(err)
        ? new OAuthError('temporarily_unavailable', 'the token store (Redis) cannot be reached', { cause: err })
        : new OAuthError('temporarily_unavailable', 'the request could not be completed; retry later', { cause: err });
    if (dbDown || redisUnavailable(err)) req.log.warn({ err }, failure.description);
    else req.log.error({ err }, 'unexpected error');
    return reply.code(failure.status).header('retry-after', String(failure.retryAfterSec ?? 1)).send(failure.body);
  });
  app.setNotFoundHandler((_req, reply) => {
    reply.code(404).send({ error: 'not_found', error_description: 'no such endpoint' });
  });
}

/** Request count and duration (seconds) per method, route and status. */
function addMetricsHooks(app: FastifyInstance, metrics: Metrics): void {
  const started = Symbol('started');
  app.addHook('onRequest', async (req) => {
    (req as unknown as Record<symbol, bigint>)[started] = process.hrtime.bigint();
  });
  app.addHook('onResponse', async (req, reply) => {
    const route = req.routeOptions.url ?? 'unmatched';
    const t0 = (req as unknown as Record<symbol, bigint | undefined>)[started];
    metrics.httpRequests.inc({ method: req.method, route, status: String(reply.statusCode) });
    if (t0 !== undefined) metrics.httpDuration.observe({ method: req.method, route }, Number(process.hrtime.bigint() - t0) / 1e9);
  });
}

/** Bodies are JSON or application/x-www-form-urlencoded (RFC 6749 §4.3, §6; RFC 7009; RFC 7662). */
function registerBodyParsers(app: FastifyInstance): void {
  app.removeContentTypeParser('text/plain');
  app.register(formbody, { bodyLimit: BODY_LIMIT_BYTES });
}

/** Rate limits, counted in Redis (shared across replicas); a limit that cannot be checked fails closed. */
function registerRateLimit(app: FastifyInstance, config: Config, redis: Redis): void {
  app.register(rateLimit, {
    global: false,
    redis,
    nameSpace: `${config.redisPrefix}rl:`,
    skipOnError: false, // a limit that cannot be checked fails closed (503)
    errorResponseBuilder: (_req, ctx) =>
      new OAuthError('too_many_requests', `rate limit exceeded; retry in ${Math.max(1, Math.ceil(ctx.ttl / 1000))} seconds`, {
        retryAfterSec: Math.max(1, Math.ceil(ctx.ttl / 1000)),
      }),
  });
}

/** Every endpoint, one route module per RFC endpoint group; the login rate limits are shared. */
function registerRoutes(api: FastifyInstance, deps: RouteDeps): void {
  const limits = createLoginLimits(api, deps.config);
  registerLoginRoutes(api, deps, limits);
  registerTokenRoutes(api, deps, limits);
  registerRevokeRoutes(api, deps);
  registerIntrospectRoutes(api, deps);
  registerJwksRoutes(api, deps);
  registerOpsRoutes(api, deps);
}

// ---------------------------------------------------------------------------------------------
// What every route shares: the resolved dependencies and the per-request helpers.

/** What the route modules take: {@link AppDeps} with defaults filled in, plus shared parts. */
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

// ---------------------------------------------------------------------------------------------
// The project's own endpoints: register, login, logout.

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

// ---------------------------------------------------------------------------------------------
// RFC 6749 token endpoint.

/**
 * POST /auth/token, the RFC 6749 token endpoint (§3.2), with two grants:
 * - `grant_type=refresh_token` (§6): rotation (each refresh token is used once and replaced)
 *   with reuse detection (a used token presented again revokes its whole refresh-token
 *   family), sessions.ts `refreshSession`;
 * - `grant_type=password` (§4.3): the same check as /auth/login, under the same login limits.
 *
 * Answers a §5.1 token response (no-store), or a §5.2 error: 400 invalid_request,
 * invalid_grant (unknown, expired, revoked or reused refresh token; wrong password),
 * invalid_scope, unsupported_grant_type; 401 invalid_client (`client_id` other than the
 * family's); 429 too_many_requests; 503 temporarily_unavailable.
 */
export function registerTokenRoutes(api: FastifyInstance, deps: RouteDeps, limits: LoginLimits): void {
  const { config } = deps;
  api.post(
    '/auth/token',
    { config: { rateLimit: perMinute(config.rateLimit.refreshPerAddressPerMin, 'token-addr') } },
    async (req, reply) => {
      const tokens = await inSpan('auth.token', async (span) => {
        if (span?.isRecording()) span.setAttribute(AUTH_ATTR.GRANT_TYPE, oneOf((req.body as { grant_type?: unknown } | undefined)?.grant_type, ['refresh_token', 'password']));
        const { grant_type } = parseBody(grantTypeBody, req.body);
        if (grant_type === 'refresh_token') return refreshGrant(deps, req);
        if (grant_type === 'password') {
          await limits.addressLimit(req);
          await limits.usernameLimit(req);
          return inSpan('auth.login', () => passwordLogin(deps, req));
        }
        throw new OAuthError('unsupported_grant_type', 'grant_type must be refresh_token or password');
      });
      return noStore(reply).send(tokens);
    },
  );
}

async function refreshGrant(deps: RouteDeps, req: FastifyRequest) {
  const body = parseBody(refreshBody, req.body);
  return refreshSession(deps.issuer, body.refresh_token, {
    ...(body.client_id !== undefined ? { clientId: body.client_id } : {}),
    ...(body.scope !== undefined ? { scope: body.scope } : {}),
    clientAddress: req.ip,
  });
}

// ---------------------------------------------------------------------------------------------
// RFC 7009 token revocation.

/**
 * POST /auth/revoke, RFC 7009 token revocation: `token` (an access token or a refresh token),
 * optional `token_type_hint` (§2.1; tried first, the other kind after). An access token's `jti`
 * is revoked; a refresh token revokes its whole refresh-token family (`sid`).
 *
 * Answers 200 with no body whether or not the token was valid (§2.2: an invalid, expired or
 * unknown token is not an error); 400 invalid_request (missing or malformed `token`);
 * 503 temporarily_unavailable (saved but not yet propagated to Redis, JWKS unavailable,
 * database down). No client authentication (public clients, §2.1).
 */
export function registerRevokeRoutes(api: FastifyInstance, deps: RouteDeps): void {
  api.post('/auth/revoke', async (req, reply) => {
    await inSpan('auth.revoke', (span) => revoke(deps, req, span));
    return noStore(reply).code(200).send();
  });
}

async function revoke(deps: RouteDeps, req: FastifyRequest, span: Span | null): Promise<void> {
  const { metrics, issuer } = deps;
  if (span?.isRecording()) {
    const hint = (req.body as { token_type_hint?: unknown } | undefined)?.token_type_hint;
    span.setAttribute(AUTH_ATTR.TOKEN_TYPE_HINT, hint === undefined || hint === '' ? 'none' : oneOf(hint, ['access_token', 'refresh_token']));
    span.setAttribute(AUTH_ATTR.REVOKED, 'none');
  }
  const body = parseBody(tokenBody, req.body);
  const looksLikeJwt = body.token.split('.').length === 3;
  const order = body.token_type_hint === 'refresh_token' || !looksLikeJwt ? ['refresh_token', 'access_token'] : ['access_token', 'refresh_token'];
  for (const kind of order) {
    if (kind === 'access_token') {
      if (!looksLikeJwt) continue;
      const verified = await verifiedOrNull(deps, body.token);
      if (!verified) continue; // invalid or expired: nothing to revoke (RFC 7009 §2.2)
      const c = verified.claims;
      propagated(await revokeAccessToken(issuer, { jti: c.jti, sub: c.sub, sid: c.sid, exp: c.exp }));
      metrics.revocations.inc({ kind: 'jti' });
      if (span?.isRecording()) span.setAttribute(AUTH_ATTR.REVOKED, 'jti');
      break;
    } else {
      const r = await revokeRefreshToken(issuer, body.token, 'revoke');
      if (!r.found) continue;
      propagated(r.error);
      metrics.revocations.inc({ kind: 'sid' });
      if (span?.isRecording()) span.setAttribute(AUTH_ATTR.REVOKED, 'sid');
      break;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// RFC 7662 token introspection.

/**
 * POST /auth/introspect, RFC 7662 token introspection: `token` (an access token or a refresh
 * token). The caller authenticates with a Bearer access token holding the `introspect` scope
 * (§2.1; RFC 6750 errors from the core's denial: 401 invalid_token, 403 insufficient_scope).
 *
 * Answers 200 (no-store) `{ active: true, scope, client_id, username, token_type, exp, iat,
 * sub, aud, iss, jti, sid }` (§2.2), or `{ active: false }` for an invalid, expired, revoked or
 * unknown token, or one whose user is gone or revoked all tokens since its `iat`. The database,
 * not Redis, decides revocation here. 400 invalid_request; 503 temporarily_unavailable.
 */
export function registerIntrospectRoutes(api: FastifyInstance, deps: RouteDeps): void {
  const { prisma, issuer } = deps;
  api.post('/auth/introspect', async (req, reply) => {
    await bearer(deps, req, { scopes: ['introspect'] });
    const body = parseBody(tokenBody, req.body);
    noStore(reply);
    const inactive = { active: false };
    if (body.token.split('.').length !== 3) return reply.send((await introspectRefreshToken(issuer, body.token)) ?? inactive);
    const verified = await verifiedOrNull(deps, body.token);
    if (!verified) return reply.send(inactive);
    const c = verified.claims;
    // The database is the source of truth for revocation.
    const [revokedJti, session, user] = await Promise.all([
      prisma.revokedAccessToken.findUnique({ where: { jti: c.jti }, select: { jti: true } }),
      c.sid ? prisma.session.findUnique({ where: { id: c.sid }, select: { revokedAt: true } }) : Promise.resolve(null),
      prisma.user.findUnique({ where: { id: c.sub }, select: { username: true, tokensRevokedBefore: true } }),
    ]);
    if (revokedJti || session?.revokedAt || !user) return reply.send(inactive);
    if (user.tokensRevokedBefore && c.iat * 1000 < user.tokensRevokedBefore.getTime()) return reply.send(inactive);
    return reply.send({
      active: true,
      scope: c.scope ?? '',
      client_id: c.client_id,
      username: user.username,
      token_type: 'Bearer',
      exp: c.exp,
      iat: c.iat,
      sub: c.sub,
      aud: c.aud,
      iss: c.iss,
      jti: c.jti,
      sid: c.sid,
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Discovery: RFC 7517 JWK Set, RFC 8414 metadata.

/**
 * GET /.well-known/jwks.json, the RFC 7517 JWK Set (`application/jwk-set+json`, public for 60 s):
 * every unretired signing key, pending ones included, public members only, with `kid`, `alg`,
 * `use: "sig"` (keys.ts). GET /.well-known/openid-configuration, RFC 8414 authorization-server
 * metadata (public for 300 s): issuer, jwks_uri and the endpoints, all under JWT_ISSUER.
 * Neither fails: no error beyond the app's 503 when the process is closing.
 */
export function registerJwksRoutes(api: FastifyInstance, deps: RouteDeps): void {
  const { config, keys } = deps;
  api.get('/.well-known/jwks.json', async (_req, reply) => {
    return reply.header('cache-control', 'public, max-age=60').type('application/jwk-set+json').send(keys.jwks());
  });
  api.get('/.well-known/openid-configuration', async (_req, reply) => {
    const base = config.jwt.issuer.replace(/\/+$/, '');
    return reply.header('cache-control', 'public, max-age=300').send({
      issuer: config.jwt.issuer,
      jwks_uri: `${base}/.well-known/jwks.json`,
      token_endpoint: `${base}/auth/token`,
      revocation_endpoint: `${base}/auth/revoke`,
      introspection_endpoint: `${base}/auth/introspect`,
      grant_types_supported: ['password', 'refresh_token'],
      response_types_supported: [],
      token_endpoint_auth_methods_supported: ['none'],
      revocation_endpoint_auth_methods_supported: ['none'],
      scopes_supported: [...new Set([...config.defaultUserScopes, 'introspect'])],
      access_token_signing_alg_values_supported: [...new Set([config.signingKey.alg, ...config.jwt.algorithms])],
      claims_supported: ['iss', 'sub', 'aud', 'exp', 'iat', 'jti', 'client_id', 'scope', 'sid', 'roles'],
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Operations: liveness, readiness, Prometheus metrics.

/**
 * Operations endpoints (no RFC):
 * - GET /healthz: 200 `{ status: "ok" }` while the process serves.
 * - GET /readyz: 200 `{ status: "ready", checks }` or 503 `{ status: "unavailable", checks }`;
 *   checks: `database` and `redis` (each answering within 1000 ms), `signing_key` (a usable
 *   signer is loaded), `revocation_sync` (`ok`/`pending`, only with a re-sync schedule).
 * - GET /metrics: the Prometheus text exposition of the service's registry.
 */
export function registerOpsRoutes(api: FastifyInstance, deps: RouteDeps): void {
  const { prisma, redis, keys, metrics, hashLimiter } = deps;
  api.get('/healthz', async () => ({ status: 'ok' }));
  api.get('/readyz', async (_req, reply) => {
    const within = <T>(p: Promise<T>, ms: number) =>
      Promise.race([p, new Promise<never>((_, reject) => setTimeout(() => reject(new Error('timeout')), ms).unref())]);
    const [db, cache] = await Promise.allSettled([within(prisma.$queryRaw`SELECT 1`, 1000), within(redis.ping(), 1000)]);
    let signing: 'ok' | 'unavailable' = 'ok';
    try {
      keys.signer();
    } catch {
      signing = 'unavailable';
    }
    const checks = {
      database: db.status === 'fulfilled' ? 'ok' : 'unavailable',
      redis: cache.status === 'fulfilled' ? 'ok' : 'unavailable',
      signing_key: signing,
      ...(deps.revocationSync !== undefined ? { revocation_sync: deps.revocationSync.synced() ? 'ok' : 'pending' } : {}),
    };
    const ready = Object.values(checks).every((v) => v === 'ok');
    return reply.code(ready ? 200 : 503).header('cache-control', 'no-store').send({ status: ready ? 'ready' : 'unavailable', checks });
  });
  api.get('/metrics', async (_req, reply) => {
    metrics.passwordHashInFlight.set(hashLimiter.inFlight);
    metrics.passwordHashQueued.set(hashLimiter.queued);
    return reply.type(metrics.registry.contentType).send(await metrics.registry.metrics());
  });
}
