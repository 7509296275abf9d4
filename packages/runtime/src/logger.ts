/**
 * pino for the mesh services: JSON lines, request headers logged (so `traceparent` and
 * `x-request-id` are in the logs) with every credential redacted: `authorization`, cookies,
 * any `token`-like field, and `access_token` / `refresh_token` / `id_token` / `code` values in a
 * logged URL's query string.
 *
 * Upstream: pino redaction (https://getpino.io/#/docs/redaction), Fastify logging
 * (https://fastify.dev/docs/latest/Reference/Logging/).
 */
import type { IncomingMessage } from 'node:http';
import pino, { type DestinationStream, type Logger, type LevelWithSilent } from 'pino';

/** The text that replaces a redacted value. */
export const REDACTED = '[REDACTED]';

/**
 * Redacted paths (pino `fast-redact` syntax). Credentials never reach a log line, whatever the
 * level: request and response headers that carry them, and fields named like tokens at the top
 * level and one level down (`{ token }`, `{ body: { refresh_token } }`).
 */
export const REDACT_PATHS: readonly string[] = Object.freeze([
  'req.headers.authorization',
  'req.headers["proxy-authorization"]',
  'req.headers.cookie',
  'req.headers["x-api-key"]',
  'res.headers["set-cookie"]',
  'headers.authorization',
  'headers.cookie',
  '*.headers.authorization',
  '*.headers.cookie',
  'metadata.authorization',
  // ioredis attaches the failed command to its errors: for AUTH its arguments are the user and password.
  'err.command.args',
  '*.err.command.args',
  'authorization',
  'cookie',
  'token',
  'access_token',
  'refresh_token',
  'id_token',
  'password',
  '*.authorization',
  '*.cookie',
  '*.token',
  '*.access_token',
  '*.refresh_token',
  '*.id_token',
  '*.password',
]);

const QUERY_SECRETS = /([?&](?:access_token|refresh_token|id_token|token|code)=)[^&#]*/gi;

/** A URL with the values of credential-like query parameters replaced by {@link REDACTED}. */
export function redactUrl(url: string | undefined): string | undefined {
  return url?.replace(QUERY_SECRETS, `$1${REDACTED}`);
}

/** Options of {@link createLogger}. */
export interface LoggerOptions {
  /** The service name, logged as `service` on every line. */
  readonly service: string;
  /** pino level. Default `info`. */
  readonly level?: LevelWithSilent;
  /** Where lines go. Default stdout. Tests pass a stream to read the lines back. */
  readonly stream?: DestinationStream;
}

/**
 * The request serializer Fastify uses for `req` in its request logs. `remoteAddress` is Fastify's
 * `request.ip` where there is one (it honours the app's `trustProxy`), else the socket's address.
 */
function serializeRequest(req: IncomingMessage & { id?: string; url?: string; ip?: string }): Record<string, unknown> {
  return {
    id: req.id,
    method: req.method,
    url: redactUrl(req.url),
    headers: { ...req.headers },
    remoteAddress: req.ip ?? req.socket?.remoteAddress,
  };
}

/**
 * Creates the logger. Pass it to Fastify as `loggerInstance`.
 */
export function createLogger(opts: LoggerOptions): Logger {
  return pino(
    {
      level: opts.level ?? 'info',
      base: { service: opts.service },
      redact: { paths: [...REDACT_PATHS], censor: REDACTED },
      serializers: {
        req: serializeRequest as (req: unknown) => unknown,
        err: pino.stdSerializers.err,
      },
    },
    opts.stream ?? pino.destination({ sync: false }),
  );
}

/**
 * What a logged error keeps: its type, message, code and stack. Nothing else an error object
 * carries is logged (ioredis, for one, attaches the failed command with its arguments, which for
 * `AUTH` are the Redis user and password).
 */
export function errorSummary(err: unknown): { type: string; message: string; code?: string; stack?: string } {
  if (!(err instanceof Error)) return { type: typeof err, message: String(err) };
  const code = (err as NodeJS.ErrnoException).code;
  return { type: err.name, message: err.message, ...(typeof code === 'string' ? { code } : {}), ...(err.stack !== undefined ? { stack: err.stack } : {}) };
}

/**
 * A `(err, context)` callback that logs at `warn`, at most once per `everyMs` per context
 * (Redis reconnect errors repeat on every attempt). The error is logged as its
 * {@link errorSummary}.
 *
 * @param everyMs - minimum milliseconds between two lines of one context. Default 5000.
 */
export function throttledWarn(logger: Logger, msg: string, everyMs = 5000): (err: unknown, context: string) => void {
  const last = new Map<string, number>();
  return (err, context) => {
    const now = Date.now();
    if (now - (last.get(context) ?? 0) < everyMs) return;
    last.set(context, now);
    logger.warn({ err: errorSummary(err), context }, msg);
  };
}
