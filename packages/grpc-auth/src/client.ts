/**
 * Client side of the gRPC hop: the outgoing metadata (the same `authorization`, `traceparent`,
 * `tracestate`, `x-request-id` as the HTTP hops), and the way back: a gRPC deny from the next
 * hop becomes the HTTP answer this hop gives its own caller, through the core's one table
 * ({@link ERROR_MAP} / {@link toDenial}), with the downstream `WWW-Authenticate` challenge kept.
 */
import * as grpc from '@grpc/grpc-js';
import type { Span } from '@opentelemetry/api';
import { AuthError, ERROR_MAP, SEMCONV, toDenial, tracingActive, withClientSpan, type AuthErrorCode } from '@jwt-mesh/core';
import { AUTH_ERROR_TRAILER, CHALLENGE_TRAILER, GRPC_TRACER_NAME, grpcStatusName, rpcAttributes } from './server.js';

/**
 * Runs one outgoing unary call inside a CLIENT span named `package.Service/Method` (only when an
 * OpenTelemetry SDK is registered; otherwise `fn(null)` runs as is). Put the span's context in
 * the metadata (`metadataOf(propagationHeaders(request, span?.spanContext()))`) so the callee's
 * SERVER span is its child. Attributes: `rpc.system.name`, `rpc.system`, `rpc.service`,
 * `rpc.method`, `server.address` (from `target`), and `rpc.status_code` (`OK`, or the code of
 * the `ServiceError` `fn` rejects with); `error.type` is that code's name on failure.
 *
 * @param path - `/package.Service/Method`
 * @param target - the client (its channel target is read only when tracing is on) or a
 *   `host:port`, for `server.address`; a `unix:` target gives none
 * @param fn - makes the call; resolves its response or rejects with the gRPC `ServiceError`
 *   (or an error derived from it that keeps `code`)
 */
export function withGrpcClientSpan<T>(path: string, target: grpc.Client | string | undefined, fn: (span: Span | null) => Promise<T>): Promise<T> {
  if (!tracingActive()) return fn(null); // no span, no attribute object
  const address = target instanceof grpc.Client ? target.getChannel().getTarget() : target;
  // `dns:///host:port`, `dns:host:port`, `ipv4:host:port` or plain `host:port` -> `host`.
  const host = address?.replace(/^(dns|ipv4|ipv6):(\/\/[^/]*\/)?/, '').replace(/:\d+$/, '').replace(/^\[|\]$/g, '');
  return withClientSpan(
    {
      tracerName: GRPC_TRACER_NAME,
      name: path.startsWith('/') ? path.slice(1) : path,
      attributes: { ...rpcAttributes(path), ...(host === undefined || host === '' || host.startsWith('unix:') ? {} : { [SEMCONV.SERVER_ADDRESS]: host }) },
      onError: (span, err) => {
        const code = (err as { code?: unknown } | null)?.code;
        const name = typeof code === 'number' ? grpcStatusName(code) : 'UNKNOWN';
        span.setAttribute(SEMCONV.RPC_STATUS_CODE, name);
        span.setAttribute(SEMCONV.ERROR_TYPE, name);
      },
    },
    async (span) => {
      const res = await fn(span);
      if (span !== null && span.isRecording()) span.setAttribute(SEMCONV.RPC_STATUS_CODE, 'OK');
      return res;
    },
  );
}

/**
 * Metadata for an outgoing call from plain headers (as produced by `propagationHeaders` of
 * `@jwt-mesh/fastify-auth/propagation`). Keys are lower-cased; values must be ASCII strings.
 */
export function metadataOf(headers: Readonly<Record<string, string>>): grpc.Metadata {
  const md = new grpc.Metadata();
  for (const [k, v] of Object.entries(headers)) md.set(k.toLowerCase(), v);
  return md;
}

/** An HTTP answer derived from a failed gRPC call. `headers` keys are lower-case. */
export interface HttpFailure {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: { readonly error: string; readonly error_description: string };
  /** The core's error code when the downstream denied on authentication/authorization grounds. */
  readonly authCode: AuthErrorCode | null;
}

function isAuthErrorCode(v: string | undefined): v is AuthErrorCode {
  return v !== undefined && Object.prototype.hasOwnProperty.call(ERROR_MAP, v);
}

function firstString(md: grpc.Metadata | undefined, key: string): string | undefined {
  const v = md?.get(key)[0];
  return typeof v === 'string' ? v : undefined;
}

/**
 * Maps a failed gRPC call to the HTTP answer for this hop's caller.
 *
 * - A deny from a jwt-mesh server (trailer `auth-error-code` naming a known code): the row of
 *   the core table for that code (401/403/400/503, RFC 6750 body), with the downstream
 *   `www-authenticate` trailer as the challenge, so a `PERMISSION_DENIED` /
 *   `insufficient_scope` at the gRPC hop reaches the client as 403 `insufficient_scope`.
 * - Anything else is a transport or application failure of the next hop, not an auth decision:
 *   `DEADLINE_EXCEEDED` 504 `gateway_timeout`, `NOT_FOUND` 404 `not_found`,
 *   `INVALID_ARGUMENT` 400 `invalid_request`, every other status 502 `bad_gateway`.
 *
 * @param err - the `ServiceError` of a unary call (anything else is treated as 502)
 */
export function httpFailureOf(err: unknown): HttpFailure {
  const se = err as Partial<grpc.ServiceError> | undefined;
  const code = firstString(se?.metadata, AUTH_ERROR_TRAILER);
  if (isAuthErrorCode(code)) {
    const denial = toDenial(new AuthError(code));
    const headers: Record<string, string> = { ...denial.headers };
    const challenge = firstString(se?.metadata, CHALLENGE_TRAILER);
    if (challenge !== undefined) headers['www-authenticate'] = challenge;
    return { status: denial.httpStatus, headers, body: denial.body, authCode: code };
  }
  const json = { 'content-type': 'application/json' };
  switch (se?.code) {
    case grpc.status.DEADLINE_EXCEEDED:
      return { status: 504, headers: json, body: { error: 'gateway_timeout', error_description: 'the downstream service did not answer in time' }, authCode: null };
    case grpc.status.NOT_FOUND:
      return { status: 404, headers: json, body: { error: 'not_found', error_description: se.details || 'not found' }, authCode: null };
    case grpc.status.INVALID_ARGUMENT:
      return { status: 400, headers: json, body: { error: 'invalid_request', error_description: se.details || 'invalid request' }, authCode: null };
    default:
      return { status: 502, headers: json, body: { error: 'bad_gateway', error_description: 'the downstream service failed' }, authCode: null };
  }
}
