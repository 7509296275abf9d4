/**
 * @jwt-mesh/core: the transport-free verification core shared by every verifier.
 * See README.md ("Token-verification core") for the public API. The Redis revocation store has
 * its own export path, `@jwt-mesh/core/redis`, so that importing the core does not load ioredis.
 */
export * from './errors.js';
export type * from './types.js';
export * from './bearer.js';
export * from './algorithms.js';
export * from './jwks.js';
export * from './verify.js';
export * from './policy.js';
export * from './authenticate.js';
export * from './cache-metrics.js';
export * from './revocation/memory.js';
export * from './config.js';
export * from './env.js';
export * from './redis-connection.js';
export * from './identity-headers.js';
export * from './trace-context.js';
export * from './tracing.js';
