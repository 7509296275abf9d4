/**
 * The start of a jwt-mesh process, in the order every one of them follows: tracing first (so that
 * the instrumented modules load after it), then the configuration, read once (a bad value ends
 * start-up with one line naming the variable), then the logger, the metrics and the verifier stack.
 */
import type { Logger } from 'pino';
import { z } from 'zod';
import { startTracing, type TracingHandle } from '@jwt-mesh/tracing';
import { commonEnvSchema, parseEnv } from './config.js';
import { createLogger } from './logger.js';
import { createMetrics, type ServiceMetrics } from './metrics.js';
import { exitOnStartupError } from './shutdown.js';
import { createServiceVerifierStack, type VerifierStack, type VerifierStackOptions } from './stack.js';
import { verifierStackOptionsFromEnv } from './verifier-env.js';

/**
 * Logs whether tracing is on, once, at start-up: `tracing on (OTLP)` with the traces URL, or
 * `tracing off` with the reason (no endpoint, `OTEL_SDK_DISABLED`, ...).
 */
export function logTracingState(logger: Logger, tracing: TracingHandle): void {
  logger.info({ tracing: tracing.enabled, tracesUrl: tracing.tracesUrl, reason: tracing.offReason ?? undefined }, tracing.enabled ? 'tracing on (OTLP)' : 'tracing off');
}

/** A service's variables: the common ones and its own (`z.infer` of each). */
export type ServiceEnv<V extends z.ZodRawShape> = Readonly<z.infer<typeof commonEnvSchema> & z.infer<z.ZodObject<V>>>;

/** What {@link startService} has built, ready for the service's own `buildApp`. */
export interface ServiceStart<E> {
  /** The OpenTelemetry handle (`shutdown()` flushes; a no-op when tracing is off). */
  readonly tracing: TracingHandle;
  /** The service's variables: `commonEnvSchema` (HOST, LOG_LEVEL, SHUTDOWN_TIMEOUT_MS, DRAIN_GRACE_MS) plus its own. */
  readonly env: E;
  /** The verifier settings, from the shared variables (`loadVerifierConfig`). */
  readonly stackOptions: Readonly<VerifierStackOptions>;
  readonly logger: Logger;
  readonly metrics: ServiceMetrics;
  /** The verifier stack (`createServiceVerifierStack`): warming up; `stack.readiness` says when it is ready. */
  readonly stack: VerifierStack;
}

/**
 * Starts a mesh service's process up to its app: tracing from the `OTEL_*` variables, the
 * configuration (`commonEnvSchema` extended with `ownVariables`, and the shared verifier settings),
 * the logger, the metrics and the verifier stack. On a bad variable or an unreadable file it
 * writes `<service>: cannot start: invalid configuration: VAR: why` to stderr and exits 1.
 *
 * @param service - the service name (log lines, metrics label, Redis client name, `service.name`)
 * @param ownVariables - the service's own variables as env helpers, e.g. `{ PORT: port(3001) }`
 */
export async function startService<V extends z.ZodRawShape>(service: string, ownVariables: V): Promise<ServiceStart<ServiceEnv<V>>> {
  const tracing = await startTracing({ serviceName: service });
  let env: ServiceEnv<V>;
  let stackOptions: Readonly<VerifierStackOptions>;
  try {
    env = parseEnv(commonEnvSchema.extend(ownVariables), process.env) as unknown as ServiceEnv<V>;
    stackOptions = verifierStackOptionsFromEnv(process.env);
  } catch (err) {
    return exitOnStartupError(service, err);
  }
  const logger = createLogger({ service, level: env.LOG_LEVEL });
  const metrics = createMetrics(service);
  logTracingState(logger, tracing);
  const stack = createServiceVerifierStack(service, stackOptions, logger, metrics.registry);
  return { tracing, env, stackOptions, logger, metrics, stack };
}

/**
 * `app.listen()` on the service's HOST and port; when it fails, runs `cleanup` (e.g. closes the
 * gRPC server), closes the verifier stack and exits 1 with `<service>: cannot start: ...`.
 *
 * @param app - anything with Fastify's `listen({ port, host })`
 */
export async function listenOrExit(
  service: string,
  app: { listen(opts: { port: number; host: string }): Promise<unknown> },
  where: { readonly port: number; readonly host: string },
  stack: Pick<VerifierStack, 'close'>,
  cleanup: () => void = () => undefined,
): Promise<void> {
  try {
    await app.listen({ port: where.port, host: where.host });
  } catch (err) {
    cleanup();
    await stack.close();
    exitOnStartupError(service, err);
  }
}
