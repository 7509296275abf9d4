/**
 * The auth service's HTTP API (Fastify 5), built apart from listening (CONTRIBUTING.md, "Build apart from listen"): every
 * dependency is injected, so tests use `app.inject()` or listen on port 0.
 *
 * `buildApp` wires the hooks, the error handler and the plugins here; the endpoints live in one
 * module per RFC endpoint group under routes/ (README.md has request/response examples):
 *   routes/login.ts       POST /auth/register, POST /auth/login, POST /auth/logout (our own)
 *   routes/token.ts       POST /auth/token (RFC 6749 §6 refresh_token, §4.3 password)
 *   routes/revoke.ts      POST /auth/revoke (RFC 7009)
 *   routes/introspect.ts  POST /auth/introspect (RFC 7662)
 *   routes/jwks.ts        GET /.well-known/jwks.json (RFC 7517), GET /.well-known/openid-configuration (RFC 8414)
 *   routes/ops.ts         GET /healthz, GET /readyz, GET /metrics
 * with their request bodies in routes/bodies.ts and the shared per-request helpers in
 * routes/shared.ts.
 */
import { randomUUID } from 'node:crypto';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { addServerSpans } from '@jwt-mesh/fastify-auth';
import formbody from '@fastify/formbody';
import rateLimit from '@fastify/rate-limit';
import type { Redis } from 'ioredis';
import { pino, type DestinationStream, type Logger } from 'pino';
import { createLogger as createRuntimeLogger } from '@jwt-mesh/runtime';
import {
  AuthError,
  createAuthenticator,
  createVerifier,
  toDenial,
  type RevocationChecker,
  type RevocationPublisher,
} from '@jwt-mesh/core';
import { systemClock, type Clock } from './clock.js';
import type { Config } from './config.js';
import type { PrismaClient } from './db.js';
import { databaseUnavailable, OAuthError, redisUnavailable } from './errors.js';
import type { KeyStore } from './keys.js';
import { createHashLimiter } from './hash-limiter.js';
import { createMetrics, type Metrics } from './metrics.js';
import { SCRYPT_DEFAULTS, type ScryptParams } from './passwords.js';
import type { IssuerDeps } from './sessions.js';
import { registerIntrospectRoutes } from './routes/introspect.js';
import { registerJwksRoutes } from './routes/jwks.js';
import { registerLoginRoutes } from './routes/login.js';
import { registerOpsRoutes } from './routes/ops.js';
import { registerRevokeRoutes } from './routes/revoke.js';
import { createLoginLimits, type RouteDeps } from './routes/shared.js';
import { registerTokenRoutes } from './routes/token.js';

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
  /** Default: the runtime's logger at `config.logLevel` (the one redaction list; {@link createLogger}). */
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
