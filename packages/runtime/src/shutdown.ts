/**
 * Graceful drain on SIGTERM / SIGINT, in three steps:
 *
 * 1. **grace** (`graceMs`, `DRAIN_GRACE_MS`, default 1000): the service is marked draining:
 *    `/readyz` answers 503 (Kubernetes takes the pod out of its Service; in a pod this overlaps
 *    with the sidecar's preStop sleep) while every request is still served normally, each answer
 *    with `Connection: close` so callers (the sidecar) stop reusing kept-alive connections;
 * 2. **close**: the listener stops accepting (a caller's sidecar gets a connect failure, which
 *    it retries for GET/HEAD, see envoy/README.md), idle connections are closed, in-flight requests
 *    finish; a request that still arrives on an open connection gets 503
 *    `temporarily_unavailable` with `Retry-After: 1` in the project's error shape;
 * 3. **closers** in order (gRPC server, Redis, HTTP client pools), then exit 0.
 *
 * If all of that takes longer than the deadline (`timeoutMs`), exit 1 anyway.
 */
import { setTimeout as sleepMs } from 'node:timers/promises';
import { ConfigError } from '@jwt-mesh/core';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';

declare module 'fastify' {
  interface FastifyInstance {
    /** True once graceful shutdown started: `/readyz` answers 503, answers carry `Connection: close`. */
    draining: boolean;
    /**
     * True once the grace period ended and the listener is closing: a request that still arrives
     * on an open connection gets 503 `temporarily_unavailable` with `Retry-After: 1`.
     */
    listenerClosing: boolean;
  }
}

/** Default of {@link ShutdownOptions.graceMs} and of `DRAIN_GRACE_MS`, milliseconds. */
export const DEFAULT_DRAIN_GRACE_MS = 1000;

/** Options of {@link installGracefulShutdown}. */
export interface ShutdownOptions {
  readonly app: FastifyInstance;
  readonly logger: Logger;
  /** Run after the HTTP server closed, in order (e.g. gRPC `tryShutdown`, Redis `close()`). */
  readonly closers: ReadonlyArray<() => Promise<void>>;
  /** Deadline for the whole drain (grace included), in milliseconds. */
  readonly timeoutMs: number;
  /**
   * After the signal, how long the service keeps serving with `/readyz` 503 before it closes its
   * listener, in milliseconds (`DRAIN_GRACE_MS`). Default {@link DEFAULT_DRAIN_GRACE_MS}; 0 closes at once.
   */
  readonly graceMs?: number;
  /** Signals to handle. Default `['SIGTERM', 'SIGINT']`. */
  readonly signals?: readonly NodeJS.Signals[];
  /** Called with the exit code instead of `process.exit` (tests). */
  readonly exit?: (code: number) => void;
}

/** Options of {@link drain}. */
export interface DrainOptions extends Pick<ShutdownOptions, 'app' | 'logger' | 'closers'> {
  /** Grace period before the listener closes, milliseconds. Default 0 here (the signal handler passes `graceMs`). */
  readonly graceMs?: number;
  /** Waits `ms` milliseconds (tests inject their own clock). Default `timers/promises` setTimeout. */
  readonly sleep?: (ms: number) => Promise<unknown>;
}

/**
 * Drains once (the three steps of the module comment) and resolves the exit code: 0, or 1 when
 * closing the server or a closer failed (each failure is logged, the remaining closers still run).
 * The signal handlers call it. Exposed for tests. Never rejects.
 */
export async function drain(opts: DrainOptions): Promise<number> {
  const { app, logger, closers } = opts;
  const graceMs = opts.graceMs ?? 0;
  app.draining = true;
  if (graceMs > 0) {
    logger.info({ graceMs }, 'draining: /readyz 503, still serving during the grace period');
    await (opts.sleep ?? sleepMs)(graceMs);
  }
  app.listenerClosing = true;
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
    const graceMs = opts.graceMs ?? DEFAULT_DRAIN_GRACE_MS;
    opts.logger.info({ signal, timeoutMs: opts.timeoutMs, graceMs }, 'draining');
    const timer = setTimeout(() => {
      opts.logger.error({ timeoutMs: opts.timeoutMs }, 'drain deadline passed: exiting');
      exit(1);
    }, opts.timeoutMs);
    timer.unref();
    void drain({ app: opts.app, logger: opts.logger, closers: opts.closers, graceMs }).then((code) => {
      clearTimeout(timer);
      opts.logger.info({ code }, 'drained');
      // Let the asynchronous log destination write its buffer before the process ends.
      opts.logger.flush(() => exit(code));
    });
  };
  for (const s of opts.signals ?? ['SIGTERM', 'SIGINT']) process.on(s, onSignal);
}

/**
 * Ends a process whose start-up failed (bad configuration, port in use): one line on stderr,
 * `<service>: cannot start: <message>` (for a `ConfigError`, the message names the variable),
 * exit code 1. No stack trace for a `ConfigError` or an error `named` accepts: the message is the
 * whole story; any other error gets its stack trace on the following lines.
 *
 * @param named - further errors whose message names what is wrong (e.g. a policy file's field)
 */
export function exitOnStartupError(service: string, err: unknown, named: (err: Error) => boolean = () => false): never {
  const message = err instanceof Error ? err.message : String(err);
  const detail = err instanceof Error && !(err instanceof ConfigError) && !named(err) ? `\n${err.stack ?? ''}` : '';
  process.stderr.write(`${service}: cannot start: ${message}${detail}\n`);
  process.exit(1);
}
