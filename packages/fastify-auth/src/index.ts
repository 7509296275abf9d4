/**
 * @jwt-mesh/fastify-auth: the Fastify adapter over `@jwt-mesh/core` and the outgoing-call helper.
 * See README.md.
 */
export { fastifyAuth, requireScope, requirement, identityOfRequest, authRequestOf } from './plugin.js';
export type { FastifyAuthOptions, RouteAuthConfig, AuthOutcome } from './plugin.js';
export { createMeshClient, DownstreamError } from './client.js';
export type { MeshClient, MeshClientOptions, MeshCallOptions, MeshResponse, ErrorBody } from './client.js';
export { propagationHeaders, traceContextOf, requestIdOf, outgoingTraceparent, parseTraceparent } from './propagation.js';
export type { TraceContext, IncomingHeaders } from './propagation.js';
export { addServerSpans, SERVER_SPANS_TRACER_NAME } from './server-spans.js';
