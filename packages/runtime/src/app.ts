/**
 * The Fastify base every mesh service starts from: logger with redaction, request ids from
 * `x-request-id`, the verification plugin on every route, `/healthz`, `/readyz`, `/metrics`,
 * request metrics, and one error handler that hands downstream failures and the core's denials
 * back unchanged. Services add their routes to the instance it returns (build apart from listen:
 * nothing here listens).
 */
import { isAuthError, toDenial, type Authenticator } from '@jwt-mesh/core';
import { addServerSpans, DownstreamError, fastifyAuth, requestIdOf } from '@jwt-mesh/fastify-auth';
import Fastify, { type FastifyBaseLogger, type FastifyError, type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { ZodError } from 'zod';
import { createLogger } from './logger.js';
import type { ServiceMetrics } from './metrics.js';
import type { Readiness } from './readiness.js';

/** Options of {@link createServiceApp}. */
export interface ServiceAppOptions {
  /** The service name: logs, metrics label, `realm` of the challenges. */
  readonly service: string;
  /** The pino logger. Default `createLogger({ service })`. */
  readonly logger?: Logger | undefined;
  readonly metrics: ServiceMetrics;
  /** The core's decision maker; every route not marked `config: { auth: false }` goes through it. */
  readonly authenticator: Authenticator;
  /** `/readyz` state. */
  readonly readiness: Readiness;
  /** Largest accepted request body, in bytes. Default 65536. */
  readonly bodyLimit?: number;
}

const PUBLIC = { auth: false } as const;

/**
 * The pino level of a request's one completion line, by status: a success only at `debug`,
 * a client error or denial (4xx) at `info`, a server error at `error`. Under the default `info`
 * level a successful request writes no line at all, and every denial and failure writes exactly
 * one, with the request (method, redacted URL and headers, so `traceparent` and `x-request-id`),
 * the status and the response time.
 */
export function requestLogLevel(statusCode: number): 'debug' | 'info' | 'error' {
  return statusCode >= 500 ? 'error' : statusCode >= 400 ? 'info' : 'debug';
}

/**
 * An application error with its HTTP status and RFC 6749-style body
 * (`{ error, error_description }`), e.g. `new HttpError(404, 'not_found', 'order ord-1 not found')`.
 * Not for authentication or authorization failures: those are the core's `AuthError`.
 */
export class HttpError extends Error {
  readonly statusCode: number;
  readonly error: string;

  constructor(statusCode: number, error: string, description: string) {
    super(description);
    this.name = new.target.name;
    this.statusCode = statusCode;
    this.error = error;
  }
}

/**
 * Runs one call to the next hop and records it in the downstream metrics.
 *
 * @param target - the next hop's name (metrics label)
 */
export async function timedDownstream<T>(metrics: ServiceMetrics, target: string, fn: () => Promise<T>): Promise<T> {
  const end = metrics.downstreamDuration.startTimer({ target });
  let status = '2xx';
  try {
    return await fn();
  } catch (err) {
    status = String((err as { status?: unknown }).status ?? 'error');
    throw err;
  } finally {
    end({ status });
    metrics.downstreamRequests.inc({ target, status });
  }
}

/**
 * Builds the Fastify instance (not listening). With tracing on, every request gets a SERVER
 * span (see `addServerSpans`) and the verification plugin's `authenticate` span nests under it.
 *
 * @returns the instance, with the plugin registered and the operational routes added
 */
export async function createServiceApp(opts: ServiceAppOptions): Promise<FastifyInstance> {
  const { service, metrics } = opts;
  const app = Fastify({
    loggerInstance: (opts.logger ?? createLogger({ service })) as FastifyBaseLogger,
    genReqId: (raw) => requestIdOf(raw),
    bodyLimit: opts.bodyLimit ?? 65_536,
    // Stop accepting on close; in-flight requests finish; idle keep-alive sockets are closed.
    // Fastify's own closing answer has its own body shape: the onRequest hook below answers instead.
    return503OnClosing: false,
    forceCloseConnections: 'idle',
    // Fastify's own request logging writes two lines per request ("incoming request", "request
    // completed") at info. The onResponse hook below writes at most one, at a level set by the
    // status (requestLogLevel): the log lines were 15-19 % of each service's CPU under load.
    disableRequestLogging: true,
  });
  // What the error handler learnt about a failed request, written on its one completion line.
  const failureOf = new WeakMap<object, Record<string, unknown>>();
  app.decorate('draining', false);
  app.decorate('listenerClosing', false);

  // First hook of all: the SERVER span, whose context the rest of the request runs in.
  addServerSpans(app);

  // Added before the plugin so it runs first: a request that arrives on an open connection after
  // the listener began closing is not started (Redis and the clients close right after).
  app.addHook('onRequest', async (_request, reply) => {
    if (!app.listenerClosing) return;
    return reply
      .code(503)
      .headers({ 'retry-after': '1', connection: 'close' })
      .send({ error: 'temporarily_unavailable', error_description: `${service} is shutting down; retry` });
  });

  await app.register(fastifyAuth, {
    authenticator: opts.authenticator,
    realm: service,
    onDecision: (outcome, request) => {
      metrics.authDecisions.inc({ transport: 'http', outcome });
      if (outcome !== 'allow') failureOf.set(request, { auth: { code: outcome } });
    },
    // The denial goes on the request's one completion line (onResponse below), with its code.
    logDenials: false,
  });

  app.addHook('onSend', async (request, reply) => {
    reply.header('x-request-id', request.id);
    // While draining, callers get every answer and then a closed connection, so no kept-alive
    // connection is left for them to send a request into as the listener closes.
    if (app.draining) reply.header('connection', 'close');
  });
  app.addHook('onResponse', async (request, reply) => {
    const labels = { method: request.method, route: request.routeOptions.url ?? 'unmatched', status: String(reply.statusCode) };
    metrics.httpRequests.inc(labels);
    metrics.httpDuration.observe(labels, reply.elapsedTime / 1000);
    const level = requestLogLevel(reply.statusCode);
    // request.log is the pino child of opts.logger (with the route's logLevel); Fastify's type omits isLevelEnabled.
    if ((request.log as unknown as Logger).isLevelEnabled(level)) {
      request.log[level]({ req: request, res: { statusCode: reply.statusCode }, responseTime: reply.elapsedTime, ...failureOf.get(request) }, 'request completed');
    }
  });

  app.setNotFoundHandler((request, reply) => {
    void reply.code(404).send({ error: 'not_found', error_description: `no route ${request.method} ${request.url.split('?')[0]}` });
  });

  app.setErrorHandler((err: FastifyError | Error, request, reply) => {
    if (err instanceof DownstreamError) {
      failureOf.set(request, { downstream: { status: err.status, error: err.body.error } });
      return reply.code(err.status).headers(err.headers).send(err.body);
    }
    if (err instanceof HttpError) {
      return reply.code(err.statusCode).send({ error: err.error, error_description: err.message });
    }
    if (isAuthError(err)) {
      const denial = toDenial(err, service);
      return reply.code(denial.httpStatus).headers(denial.headers).send(denial.body);
    }
    if (err instanceof ZodError) {
      return reply.code(400).send({ error: 'invalid_request', error_description: err.issues.map((i) => `${i.path.join('.') || 'body'}: ${i.message}`).join('; ') });
    }
    const status = (err as FastifyError).statusCode;
    if (status !== undefined && status >= 400 && status < 500) {
      return reply.code(status).send({ error: status === 413 ? 'payload_too_large' : status === 415 ? 'unsupported_media_type' : 'invalid_request', error_description: err.message });
    }
    failureOf.set(request, { err });
    return reply.code(500).send({ error: 'internal_error', error_description: 'the request could not be completed' });
  });

  app.get('/healthz', { config: PUBLIC, logLevel: 'warn' }, async () => ({ status: 'ok', service }));

  // 'fatal': a 503 here is readiness's answer (warming up, draining), not a failure to log per probe.
  app.get('/readyz', { config: PUBLIC, logLevel: 'fatal' }, async (_request, reply) => {
    const report = opts.readiness.report();
    const ready = report.ready && !app.draining;
    return reply.code(ready ? 200 : 503).send({ status: ready ? 'ready' : 'not_ready', service, draining: app.draining, checks: report.checks });
  });

  app.get('/metrics', { config: PUBLIC, logLevel: 'warn' }, async (_request, reply) => {
    const body = await metrics.registry.metrics();
    return reply.header('content-type', metrics.registry.contentType).send(body);
  });

  return app;
}
