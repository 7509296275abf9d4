/**
 * The auth-service's own spans (OpenTelemetry API only): one INTERNAL span per token operation,
 * `auth.login`, `auth.token`, `auth.revoke`, `auth.logout`, under the request's SERVER span
 * (`addServerSpans` of `@jwt-mesh/fastify-auth`). Only when an SDK is registered; with tracing off
 * the operation runs as is and nothing is allocated.
 *
 * No span ever carries a password, an access token, a refresh token, a username or a header:
 * attributes are fixed vocabularies (the outcome code, the grant type, the token type hint,
 * what was revoked).
 */
import { SpanStatusCode, trace, type Span } from '@opentelemetry/api';
import { AuthError, outcomeOf, SEMCONV, tracingActive } from '@jwt-mesh/core';
import { OAuthError } from './errors.js';

/** Instrumentation scope of the auth-service's spans. */
export const AUTH_TRACER_NAME = '@jwt-mesh/auth-service';

/** The auth-service's span attributes (besides the core's `jwt_mesh.*` ones). */
export const AUTH_ATTR = Object.freeze({
  /** string: `ok`, or the RFC 6749 / RFC 6750 error code the client got (`invalid_grant`, ...). */
  OUTCOME: 'jwt_mesh.outcome',
  /** string: RFC 6749 `grant_type` of `/auth/token`: `refresh_token`, `password`, or `unsupported`. */
  GRANT_TYPE: 'jwt_mesh.grant_type',
  /** string: RFC 7009 `token_type_hint`: `access_token`, `refresh_token`, `none` (absent) or `unsupported`. */
  TOKEN_TYPE_HINT: 'jwt_mesh.token_type_hint',
  /** string: what `/auth/revoke` revoked: `jti` (an access token), `sid` (a refresh-token family) or `none`. */
  REVOKED: 'jwt_mesh.revoked',
});

/** A value of a fixed vocabulary, else `unsupported` (client input never lands on a span as is). */
export function oneOf<T extends string>(value: unknown, allowed: readonly T[]): T | 'unsupported' {
  return typeof value === 'string' && (allowed as readonly string[]).includes(value) ? (value as T) : 'unsupported';
}

/**
 * Runs `fn` inside the INTERNAL span `name` (child of the active span) when tracing is on; `fn`
 * gets the span (to add attributes, behind `span.isRecording()`), or `null` when off.
 * The span's `jwt_mesh.outcome` is `ok`, the `OAuthError` code, or the core's outcome for an
 * `AuthError`; `error.type` is that code; the status is ERROR for 5xx outcomes only. The error
 * is re-thrown unchanged; its description is never copied to the span.
 */
export function inSpan<T>(name: string, fn: (span: Span | null) => Promise<T>): Promise<T> {
  if (!tracingActive()) return fn(null);
  return trace.getTracer(AUTH_TRACER_NAME).startActiveSpan(name, async (span) => {
    try {
      const result = await fn(span);
      span.setAttribute(AUTH_ATTR.OUTCOME, 'ok');
      return result;
    } catch (err) {
      const code = err instanceof OAuthError ? err.code : err instanceof AuthError ? outcomeOf(err) : 'server_error';
      span.setAttribute(AUTH_ATTR.OUTCOME, code);
      span.setAttribute(SEMCONV.ERROR_TYPE, err instanceof AuthError ? err.code : code);
      const status = err instanceof OAuthError ? err.status : err instanceof AuthError ? 0 : 500;
      if (status >= 500 || code === 'unavailable') span.setStatus({ code: SpanStatusCode.ERROR });
      throw err;
    } finally {
      span.end();
    }
  });
}
