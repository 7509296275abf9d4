/**
 * @jwt-mesh/grpc-auth: the gRPC adapter over `@jwt-mesh/core` (server-side check of the token in
 * `authorization` metadata; client-side metadata and the mapping of a deny back to HTTP).
 * See README.md.
 */
export { createGrpcAuth, denialStatus, headersOfMetadata, grpcError, grpcStatusName, rpcAttributes, AUTH_ERROR_TRAILER, CHALLENGE_TRAILER, GRPC_TRACER_NAME } from './server.js';
export type { GrpcAuthOptions, AuthContext, AuthenticatedUnaryHandler, MetadataHeaders, GrpcStatusError } from './server.js';
export { metadataOf, httpFailureOf, withGrpcClientSpan } from './client.js';
export type { HttpFailure } from './client.js';
