/**
 * @jwt-mesh/runtime: what the mesh services share. See services/README.md.
 */
export { createServiceApp, HttpError, timedDownstream } from './app.js';
export type { ServiceAppOptions } from './app.js';
export { parseEnv, ConfigError, commonEnvSchema, port, millis, httpUrl } from './config.js';
export { createLogger, redactUrl, throttledWarn, REDACT_PATHS, REDACTED } from './logger.js';
export type { LoggerOptions } from './logger.js';
export { createMetrics } from './metrics.js';
export type { ServiceMetrics } from './metrics.js';
export { createReadiness } from './readiness.js';
export type { Readiness, ReadinessReport, ReadinessOptions } from './readiness.js';
export { installGracefulShutdown, drain, exitOnStartupError, DEFAULT_DRAIN_GRACE_MS } from './shutdown.js';
export type { ShutdownOptions, DrainOptions } from './shutdown.js';
export { hopOf } from './hop.js';
export type { HopInfo } from './hop.js';
export { createServiceVerifierStack, createVerifierStack } from './stack.js';
export type { VerifierStack, VerifierStackOptions } from './stack.js';
