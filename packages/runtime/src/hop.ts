/**
 * The "what this hop saw" record each service adds to its answer, so a caller (and `make demo`)
 * can check that every hop verified the same subject, session and token, within one trace.
 * Filled only from the verified identity and the incoming trace headers.
 */
import type { Identity } from '@jwt-mesh/core';
import { requestIdOf, traceContextOf, type IncomingHeaders } from '@jwt-mesh/fastify-auth/propagation';

/** One hop of the chain. */
export interface HopInfo {
  /** The service name (`orders`, `inventory`, `profile`). */
  readonly service: string;
  /** How the request reached the hop: `http` or `grpc`. */
  readonly transport: 'http' | 'grpc';
  /** `sub` of the verified token. */
  readonly subject: string;
  /** `sid` (session / refresh-token family) of the verified token, or `null`. */
  readonly sid: string | null;
  /** `jti` of the verified token. */
  readonly jti: string;
  /** W3C trace id (32 hex digits) this hop continued or started. */
  readonly traceId: string;
  /** `x-request-id` this hop saw (or generated). */
  readonly requestId: string;
  /** Scopes of the verified token. */
  readonly scopes: readonly string[];
}

/**
 * Builds the hop record.
 *
 * @param service - this service's name
 * @param transport - `http` or `grpc`
 * @param identity - the verified identity of the request
 * @param req - the incoming request (its `headers`: `traceparent`, `x-request-id`)
 */
export function hopOf(service: string, transport: 'http' | 'grpc', identity: Identity, req: { readonly headers: IncomingHeaders }): HopInfo {
  return {
    service,
    transport,
    subject: identity.sub,
    sid: identity.sid ?? null,
    jti: identity.jti,
    traceId: traceContextOf(req).traceId,
    requestId: requestIdOf(req),
    scopes: [...identity.scopes],
  };
}
