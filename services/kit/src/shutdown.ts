/**
 * Graceful drain on SIGTERM / SIGINT: mark the service draining (`/readyz` 503), stop accepting
 * connections and let in-flight requests finish (`app.close()`), then run the closers (gRPC
 * server, Redis, HTTP client pools) in order, and exit 0. If that takes longer than the
 * deadline, exit 1 anyway.
 */
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';

/** Options of {@link installGracefulShutdown}. */
export interface ShutdownOptions {
  readonly app: FastifyInstance;
  readonly logger: Logger;
  /** Run after the HTTP server closed, in order (e.g. gRPC `tryShutdown`, Redis `close()`). */
  readonly closers: ReadonlyArray<() => Promise<void>>;
  /** Deadline for the whole drain, in milliseconds. */
  readonly timeoutMs: number;
  /** Signals to handle. Default `['SIGTERM', 'SIGINT']`. */
  readonly signals?: readonly NodeJS.Signals[];
  /** Called with the exit code instead of `process.exit` (tests). */
  readonly exit?: (code: number) => void;
}

/**
 * Drains once and resolves the exit code; the signal handlers call it. Exposed for tests.
 */
export async function drain(opts: Pick<ShutdownOptions, 'app' | 'logger' | 'closers'>): Promise<number> {
  const { app, logger, closers } = opts;
  app.draining = true;
  let code = 0;
  try {
    await app.close();
  } catch (err) {
    logger.error({ err }, 'closing the HTTP server failed');
    code = 1;
  }
  for (const close of closers) {
    try {
      await close();
    } catch (err) {
      logger.error({ err }, 'a closer failed during shutdown');
      code = 1;
    }
  }
  return code;
}

/**
 * Installs the signal handlers. A second signal during the drain exits at once with 1.
 */
export function installGracefulShutdown(opts: ShutdownOptions): void {
  const exit = opts.exit ?? ((code: number) => process.exit(code));
  let started = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (started) {
      opts.logger.warn({ signal }, 'second signal during drain: exiting now');
      exit(1);
      return;
    }
    started = true;
    opts.logger.info({ signal, timeoutMs: opts.timeoutMs }, 'draining');
    const timer = setTimeout(() => {
      opts.logger.error({ timeoutMs: opts.timeoutMs }, 'drain deadline passed: exiting');
      exit(1);
    }, opts.timeoutMs);
    timer.unref();
    void drain(opts).then((code) => {
      clearTimeout(timer);
      opts.logger.info({ code }, 'drained');
      // Let the asynchronous log destination write its buffer before the process ends.
      opts.logger.flush(() => exit(code));
    });
  };
  for (const s of opts.signals ?? ['SIGTERM', 'SIGINT']) process.on(s, onSignal);
}

/**
 * Ends a process whose start-up failed (bad configuration, port in use): one line on stderr
 * naming the problem (for a `ConfigError`, the variable), exit code 1. No stack trace for
 * configuration errors: the message is the whole story.
 */
export function exitOnStartupError(service: string, err: unknown): never {
  const message = err instanceof Error ? err.message : String(err);
  const detail = err instanceof Error && err.name !== 'ConfigError' && !/configuration/i.test(message) ? `\n${err.stack ?? ''}` : '';
  process.stderr.write(`${service}: cannot start: ${message}${detail}\n`);
  process.exit(1);
}
