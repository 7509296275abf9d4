/**
 * @jwt-mesh/core: the transport-free verification core shared by every verifier.
 * See README.md ("Token-verification core") for the public API.
 */
export * from './errors.js';
export type * from './types.js';
