/**
 * @jwt-mesh/envoy: the Envoy configs of the mesh, generated from one typed topology, and the
 * development certificates they use. See envoy/README.md.
 */
export * from './topology.js';
export * from './render.js';
export * from './certs.js';
export { envoyBinary, validateEnvoyConfig, type ValidationResult } from './binary.js';
