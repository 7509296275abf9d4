/**
 * @jwt-mesh/loadtest: the open-model load runner (as a library for the benchmark and the tests),
 * the loopback guard, latency statistics and the token pool. See README.md.
 */
export * from './stats.js';
export * from './guard.js';
export * from './open-model.js';
export * from './runner.js';
export * from './tokens.js';
export { ROUTES, CHAIN_SERVICES, DEFAULT_USERS, DEFAULT_BASE_URL, parseUsers, pickRoute, mixDraw, chainProblem, type RouteSpec, type UserCredentials } from '../k6/lib/scenario.js';
