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
import { createLogger as createRuntimeLogger } from '@jwt-mesh/runtime';
import { z } from 'zod';
import {
  AuthError,
  createAuthenticator,
  createVerifier,
  toDenial,
  type RevocationChecker,
  type RevocationPublisher,
  type RouteRequirement,
} from '@jwt-mesh/core';
import { systemClock, type Clock } from './clock.js';
import type { Config } from './config.js';
import type { PrismaClient } from './db.js';
import { databaseUnavailable, isUniqueViolation, OAuthError, redisUnavailable } from './errors.js';
import { AUTH_ATTR, inSpan, oneOf } from './tracing.js';
import type { KeyStore } from './keys.js';
import { createHashLimiter } from './hash-limiter.js';
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

/**
 * The service's logger: the runtime's (`@jwt-mesh/runtime` `createLogger`: pino, JSON lines, the
 * one redaction list of every process), written synchronously so that the last lines before an
 * exit are never lost.
 * @param destination - where lines go (default stdout); tests pass a collecting stream
 */
export function createLogger(level: Config['logLevel'], destination?: DestinationStream): Logger {
  return createRuntimeLogger({ service: 'auth-service', level, stream: destination ?? pino.destination({ dest: 1, sync: true }) });
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
const registerBody = z.object(credentials);
const loginBody = z.object({
  ...credentials,
  scope: optionalField('scope', 1024, SCOPE, 'space-separated scope tokens (RFC 6749 §3.3)'),
  client_id: optionalField('client_id', 128, CLIENT_ID, '1-128 of A-Z a-z 0-9 . _ : -'),
});
const grantTypeBody = z.object({ grant_type: field('grant_type', 1, 64) });
/**
 * RFC 6749 §5.2: a refresh_token that is not a live refresh token of ours is `invalid_grant`,
 * whatever its length or shape (a JWT, a random string, a value of kilobytes); only a missing,
 * empty (§3.2: "sent without a value" = omitted) or repeated parameter, or one that is not a
 * string, is `invalid_request`. Its size is bounded by BODY_LIMIT_BYTES, and a value that is not
 * shaped like our tokens is refused before any hashing or database lookup (sessions.ts).
 */
const refreshBody = z.object({
  refresh_token: z
    .string({ error: (iss) => (iss.input === undefined ? 'refresh_token is required' : 'refresh_token must be a string (given once)') })
    .min(1, 'refresh_token is required'),
  scope: optionalField('scope', 1024, SCOPE, 'space-separated scope tokens (RFC 6749 §3.3)'),
  client_id: optionalField('client_id', 128, CLIENT_ID, '1-128 of A-Z a-z 0-9 . _ : -'),
});
const tokenBody = z.object({
  token: field('token', 1, 8192),
  token_type_hint: z.string({ error: () => 'token_type_hint must be a string (given once)' }).max(64).optional(),
});
const logoutBody = z.object({ refresh_token: field('refresh_token', 1, 512).optional() });

/**
 * Validates a body (JSON object or form) against a schema.
 * @throws OAuthError invalid_request naming the first bad field
 */
function parseBody<T extends z.ZodType>(schema: T, body: unknown): z.infer<T> {
  const value = body === undefined || body === null ? {} : body;
  if (typeof value !== 'object' || Array.isArray(value)) {
    throw new OAuthError('invalid_request', 'the body must be a JSON object or application/x-www-form-urlencoded');
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw new OAuthError('invalid_request', parsed.error.issues[0]?.message ?? 'the request is malformed');
  return parsed.data;
}

/** Usernames are case-insensitive: stored and compared in lower case. */
const normalizeUsername = (u: string): string => u.toLowerCase();

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
 * Builds the app. Call `await app.ready()` (or `listen`) before use; `app.close()` does not
 * close the injected clients (main.ts does).
 */
export function buildApp(deps: AppDeps): FastifyInstance {
  const { config, prisma, redis, keys } = deps;
  const clock = deps.clock ?? systemClock;
  const logger = deps.logger ?? createLogger(config.logLevel);
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

  const app = Fastify({
    loggerInstance: logger as FastifyBaseLogger,
    bodyLimit: BODY_LIMIT_BYTES,
    // Fastify accepts a hop count too, though its types omit it.
    trustProxy: config.trustProxy as boolean | string[],
    requestIdHeader: 'x-request-id',
    genReqId: () => randomUUID(),
    return503OnClosing: true,
  });
  // First hook: the request's SERVER span (tracing on only); the auth.* spans nest under it.
  addServerSpans(app);

  // ---- errors: one place picks statuses (errors.ts table, core toDenial for Bearer) ----------
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

  // ---- metrics --------------------------------------------------------------------------------
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

  // Bodies are JSON or application/x-www-form-urlencoded (RFC 6749 §4.3, §6; RFC 7009; RFC 7662).
  app.removeContentTypeParser('text/plain');
  app.register(formbody, { bodyLimit: BODY_LIMIT_BYTES });
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

  app.register(async (api) => {
    const perMinute = (max: number, name: string) => ({
      max,
      timeWindow: 60_000,
      keyGenerator: (req: FastifyRequest) => `${name}:${req.ip}`,
    });
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

    const noStore = (reply: FastifyReply) => reply.header('cache-control', 'no-store').header('pragma', 'no-cache');

    async function passwordLogin(req: FastifyRequest) {
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

    async function refreshGrant(req: FastifyRequest) {
      const body = parseBody(refreshBody, req.body);
      return refreshSession(issuer, body.refresh_token, {
        ...(body.client_id !== undefined ? { clientId: body.client_id } : {}),
        ...(body.scope !== undefined ? { scope: body.scope } : {}),
        clientAddress: req.ip,
      });
    }

    /** Fails with 503 when the DB was written but the Redis publish was not (client retries). */
    function propagated(error: Error | null): void {
      if (error) throw new OAuthError('temporarily_unavailable', 'the revocation is saved but could not be propagated yet; retry', { cause: error });
    }

    async function bearer(req: FastifyRequest, requirement: RouteRequirement) {
      const decision = await authenticator.decide({ method: req.method, path: req.url.split('?')[0] ?? '/', headers: req.headers }, requirement);
      if (!decision.allow) throw decision.error;
      if (!decision.identity) throw new AuthError('credentials_missing');
      return decision.identity;
    }

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
        preHandler: usernameLimit,
      },
      async (req, reply) => {
        const tokens = await inSpan('auth.login', () => passwordLogin(req));
        return noStore(reply).send(tokens);
      },
    );

    // -- POST /auth/token (RFC 6749 §6 refresh_token, §4.3 password) ------------------------------
    api.post(
      '/auth/token',
      { config: { rateLimit: perMinute(config.rateLimit.refreshPerAddressPerMin, 'token-addr') } },
      async (req, reply) => {
        const tokens = await inSpan('auth.token', async (span) => {
          if (span?.isRecording()) span.setAttribute(AUTH_ATTR.GRANT_TYPE, oneOf((req.body as { grant_type?: unknown } | undefined)?.grant_type, ['refresh_token', 'password']));
          const { grant_type } = parseBody(grantTypeBody, req.body);
          if (grant_type === 'refresh_token') return refreshGrant(req);
          if (grant_type === 'password') {
            await enforce(loginAddressLimiter, req);
            await usernameLimit(req);
            return inSpan('auth.login', () => passwordLogin(req));
          }
          throw new OAuthError('unsupported_grant_type', 'grant_type must be refresh_token or password');
        });
        return noStore(reply).send(tokens);
      },
    );

    // -- POST /auth/logout ------------------------------------------------------------------------
    api.post('/auth/logout', async (req, reply) => {
      await inSpan('auth.logout', () => logout(req));
      return noStore(reply).code(204).send();
    });

    async function logout(req: FastifyRequest): Promise<void> {
      const identity = await bearer(req, {});
      const body = parseBody(logoutBody, req.body);
      const errors: Array<Error | null> = [];
      if (identity.sid) errors.push(await revokeFamily(issuer, identity.sid, 'logout'));
      errors.push(await revokeAccessToken(issuer, { jti: identity.jti, sub: identity.sub, sid: identity.sid, exp: identity.exp }));
      if (body.refresh_token) errors.push((await revokeRefreshToken(issuer, body.refresh_token, 'logout', { onlyForUser: identity.sub })).error);
      metrics.revocations.inc({ kind: 'sid' });
      metrics.revocations.inc({ kind: 'jti' });
      propagated(errors.find((e) => e !== null) ?? null);
    }

    // -- POST /auth/revoke (RFC 7009) -------------------------------------------------------------
    api.post('/auth/revoke', async (req, reply) => {
      await inSpan('auth.revoke', (span) => revoke(req, span));
      return noStore(reply).code(200).send();
    });

    async function revoke(req: FastifyRequest, span: Span | null): Promise<void> {
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
          const verified = await verifier.verify(body.token).catch((err: unknown) => {
            if (err instanceof AuthError && err.code !== 'jwks_unavailable' && err.code !== 'internal') return null;
            throw err;
          });
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

    // -- POST /auth/introspect (RFC 7662) -----------------------------------------------------------
    api.post('/auth/introspect', async (req, reply) => {
      await bearer(req, { scopes: ['introspect'] });
      const body = parseBody(tokenBody, req.body);
      noStore(reply);
      const inactive = { active: false };
      if (body.token.split('.').length !== 3) return reply.send((await introspectRefreshToken(issuer, body.token)) ?? inactive);
      const verified = await verifier.verify(body.token).catch((err: unknown) => {
        if (err instanceof AuthError && err.code !== 'jwks_unavailable' && err.code !== 'internal') return null;
        throw err;
      });
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

    // -- discovery ----------------------------------------------------------------------------------
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

    // -- operations ---------------------------------------------------------------------------------
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
  });

  return app;
}
