/**
 * @jwt-mesh/runtime: how every jwt-mesh process starts (auth-service, authz-service, the
 * services): the environment helpers and `ConfigError`, the logger with one redaction list and
 * one throttled warning, Prometheus metrics, readiness, the verifier stack, graceful drain and
 * the start-up error exit. Nothing here loads Fastify: the Fastify service app is in
 * `@jwt-mesh/runtime/fastify`. See README.md.
 */
export * from './config.js';
export { createLogger, errorSummary, redactUrl, throttledWarn, REDACT_PATHS, REDACTED } from './logger.js';
export type { LoggerOptions } from './logger.js';
export { createMetrics, registerCacheCounters } from './metrics.js';
export type { ServiceMetrics } from './metrics.js';
export { createReadiness } from './readiness.js';
export type { Readiness, ReadinessReport, ReadinessOptions } from './readiness.js';
export { installGracefulShutdown, drain, exitOnStartupError, DEFAULT_DRAIN_GRACE_MS } from './shutdown.js';
export type { ShutdownOptions, DrainOptions } from './shutdown.js';
export { listenOrExit, logTracingState, startService } from './start.js';
export type { ServiceEnv, ServiceStart } from './start.js';
export { createServiceVerifierStack, createVerifierStack } from './stack.js';
export type { VerifierStack, VerifierStackOptions } from './stack.js';
