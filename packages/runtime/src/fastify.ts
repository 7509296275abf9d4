/**
 * @jwt-mesh/runtime/fastify: the Fastify side of a mesh service: the app (auth plugin, error
 * handler in the project's error shape, metrics, `/healthz`, `/readyz`, `/metrics`), the
 * downstream-call timer, and the hop record. Separate from the package root so that a process
 * without Fastify (authz-service) never loads it.
 */
export { createServiceApp, HttpError, timedDownstream } from './app.js';
export type { ServiceAppOptions } from './app.js';
export { hopOf } from './hop.js';
export type { HopInfo } from './hop.js';
