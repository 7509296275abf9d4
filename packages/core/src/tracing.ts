/**
 * Tracing helpers on `@opentelemetry/api` alone (never the SDK): the switch every instrumented
 * seam checks first, the span and attribute names, and W3C Trace Context in and out.
 *
 * When no SDK tracer provider is registered (`@jwt-mesh/tracing`'s `startTracing` found no OTLP
 * endpoint), {@link tracingActive} is false and the seams skip all span work, so the hot path
 * allocates no span and no attribute.
 *
 * Upstream: OpenTelemetry API (https://opentelemetry.io/docs/specs/otel/trace/api/), semantic
 * conventions 1.45 (HTTP and RPC spans), W3C Trace Context Level 1 §3.2 / §3.3.
 */
import {
  context,
  createTraceState,
  isSpanContextValid,
  SpanKind,
  ProxyTracerProvider,
  ROOT_CONTEXT,
  SpanStatusCode,
  trace,
  TraceFlags,
  type Context,
  type Span,
  type SpanContext,
  type Tracer,
} from '@opentelemetry/api';
import { ERROR_MAP, type AuthError } from './errors.js';
import { parseTraceparent } from './trace-context.js';

/** Instrumentation scope name of the core's spans. */
export const CORE_TRACER_NAME = '@jwt-mesh/core';

/**
 * jwt-mesh's own span attributes (no semantic convention covers them), all under `jwt_mesh.`.
 * None ever holds a token, a refresh token, a password, a cookie or an `Authorization` value.
 */
export const JWT_MESH_ATTR = Object.freeze({
  /** boolean: the token was answered from the verified-token cache (no signature check). */
  VERIFIED_CACHE_HIT: 'jwt_mesh.verified_cache.hit',
  /** string: `kid` of the token's protected header (at most 128 characters; longer ones are cut). */
  KID: 'jwt_mesh.kid',
  /** string: {@link outcomeOf}: `ok` or the RFC 6750 error code (`invalid_token`, ...), see there. */
  OUTCOME: 'jwt_mesh.outcome',
  /** string: the core's error code (`token_expired`, `token_revoked`, ...) when the outcome is not `ok`. */
  REASON: 'jwt_mesh.reason',
  /** string: where the revocation lookup was answered: `cache` (in-process) or `redis`. */
  REVOCATION_SOURCE: 'jwt_mesh.revocation.source',
  /** string: what revoked the token (`jti`, `sid`, `sub`), or `none`. */
  REVOCATION_RESULT: 'jwt_mesh.revocation.result',
  /** string: the route policy's decision: `allow` or `deny`. */
  POLICY_DECISION: 'jwt_mesh.policy.decision',
  /** string: `id` of the policy rule that matched (absent when none did, or a route's own requirement). */
  POLICY_RULE: 'jwt_mesh.policy.rule',
});

/**
 * The semantic-convention attribute names the project uses (semconv 1.45; written out so the core
 * need not load `@opentelemetry/semantic-conventions`). `RPC_SYSTEM` and `RPC_SERVICE` are the
 * older names, still set beside `RPC_SYSTEM_NAME` and the fully-qualified `RPC_METHOD` because
 * common trace viewers group gRPC spans by them.
 */
export const SEMCONV = Object.freeze({
  HTTP_REQUEST_METHOD: 'http.request.method',
  HTTP_ROUTE: 'http.route',
  HTTP_RESPONSE_STATUS_CODE: 'http.response.status_code',
  URL_PATH: 'url.path',
  SERVER_ADDRESS: 'server.address',
  SERVER_PORT: 'server.port',
  ERROR_TYPE: 'error.type',
  RPC_SYSTEM_NAME: 'rpc.system.name',
  RPC_SYSTEM: 'rpc.system',
  RPC_SERVICE: 'rpc.service',
  RPC_METHOD: 'rpc.method',
  RPC_STATUS_CODE: 'rpc.status_code',
});

let noopDelegate: unknown;

/**
 * Whether an SDK tracer provider is registered with `@opentelemetry/api` (by `startTracing` or a
 * test's in-memory provider). Cheap (two property reads); instrumented code calls it first and
 * does no span or attribute work when false.
 */
export function tracingActive(): boolean {
  const provider = trace.getTracerProvider();
  if (!(provider instanceof ProxyTracerProvider)) return true;
  // The API's own no-op provider is what an empty proxy delegates to.
  noopDelegate ??= new ProxyTracerProvider().getDelegate();
  return provider.getDelegate() !== noopDelegate;
}

/** The core's tracer (the global provider's; a no-op one when none is registered). */
export function coreTracer(): Tracer {
  return trace.getTracer(CORE_TRACER_NAME);
}

/**
 * The value of `jwt_mesh.outcome` for a decision: `ok` when allowed, else the RFC 6750 §3.1
 * error code of the core's table (`invalid_request`, `invalid_token`, `insufficient_scope`);
 * for the rows that carry no RFC 6750 code: `unauthenticated` (401, no credentials sent),
 * `forbidden` (403, no policy rule), `unavailable` (503: keys, revocation store, deadline,
 * internal).
 */
export function outcomeOf(err: AuthError | null): string {
  if (err === null) return 'ok';
  const row = ERROR_MAP[err.code];
  if (row.bearerError !== null) return row.bearerError;
  return row.httpStatus === 401 ? 'unauthenticated' : row.httpStatus === 403 ? 'forbidden' : 'unavailable';
}

/**
 * Records a decision's outcome on a span: `jwt_mesh.outcome` ({@link outcomeOf}), and for a
 * refusal `jwt_mesh.reason` (the core's code) and `error.type`. The span status is set to ERROR
 * only for `unavailable` outcomes (the verifier could not decide): a refused token is the
 * verifier working, not failing. The description is the table's fixed text, never token material.
 */
export function recordOutcome(span: Span, err: AuthError | null): void {
  const outcome = outcomeOf(err);
  span.setAttribute(JWT_MESH_ATTR.OUTCOME, outcome);
  if (err === null) return;
  span.setAttribute(JWT_MESH_ATTR.REASON, err.code);
  span.setAttribute(SEMCONV.ERROR_TYPE, err.code);
  if (outcome === 'unavailable') span.setStatus({ code: SpanStatusCode.ERROR, message: ERROR_MAP[err.code].description });
}

const KID_MAX = 128;

/**
 * `kid` of a compact JWS's protected header, for the `jwt_mesh.kid` attribute only: decoded
 * without verification, `undefined` when the header is not a base64url JSON object with a
 * string `kid`; cut to 128 characters. Never returns anything but the `kid` value.
 */
export function kidOfCompactJws(token: string): string | undefined {
  const dot = token.indexOf('.');
  if (dot <= 0 || dot > 4096) return undefined;
  try {
    const header: unknown = JSON.parse(Buffer.from(token.slice(0, dot), 'base64url').toString('utf8'));
    if (header === null || typeof header !== 'object') return undefined;
    const kid = (header as Record<string, unknown>)['kid'];
    return typeof kid === 'string' ? kid.slice(0, KID_MAX) : undefined;
  } catch {
    return undefined;
  }
}

/** `tracestate` is at most 32 list members; 512 characters is the size a vendor must propagate. */
const TRACESTATE_MAX = 512;

/**
 * The context to start a SERVER span in: `ROOT_CONTEXT` carrying the caller's span context from
 * a W3C `traceparent` (and `tracestate`, kept only with a valid `traceparent` and at most 512
 * characters), marked remote, with the sampled flag as received. An absent or invalid
 * `traceparent` gives `ROOT_CONTEXT` (the span then starts a new trace, and the sampler decides).
 *
 * @param traceparent - the header value (one value; pass `undefined` for none or several)
 * @param tracestate - the header value, or `undefined`
 */
export function remoteParentContext(traceparent: string | undefined, tracestate: string | undefined): Context {
  const parsed = parseTraceparent(traceparent);
  if (parsed === null) return ROOT_CONTEXT;
  const sc: SpanContext = {
    traceId: parsed.traceId,
    spanId: parsed.parentId,
    // Only the sampled bit is defined by version 00 (§3.2.2.5).
    traceFlags: parseInt(parsed.flags, 16) & TraceFlags.SAMPLED,
    isRemote: true,
  };
  if (tracestate !== undefined && tracestate.length > 0 && tracestate.length <= TRACESTATE_MAX) {
    (sc as { traceState?: ReturnType<typeof createTraceState> }).traceState = createTraceState(tracestate);
  }
  return trace.setSpanContext(ROOT_CONTEXT, sc);
}

/**
 * The `traceparent` (version `00`) naming `sc` as the parent: its trace id, its span id, its
 * sampled flag. `undefined` when `sc` is not valid (the no-op tracer's span).
 */
export function traceparentOf(sc: SpanContext): string | undefined {
  if (!isSpanContextValid(sc)) return undefined;
  return `00-${sc.traceId}-${sc.spanId}-${(sc.traceFlags & TraceFlags.SAMPLED) === TraceFlags.SAMPLED ? '01' : '00'}`;
}

/** The `tracestate` to forward with {@link traceparentOf}, or `undefined`. */
export function tracestateOf(sc: SpanContext): string | undefined {
  const s = sc.traceState?.serialize();
  return s === undefined || s === '' ? undefined : s;
}

/** The SERVER span of each incoming request, by its headers object (see {@link bindRequestSpan}). */
const requestSpans = new WeakMap<object, SpanContext>();

/**
 * Remembers the SERVER span context of an incoming request, keyed by the request's `headers`
 * object (the Node / Fastify request headers, or the plain object built from gRPC metadata), so
 * the hop's trace context (`traceContextOf` in `@jwt-mesh/fastify-auth`) and the `traceparent`
 * of its outgoing calls follow the span instead of an id of their own.
 */
export function bindRequestSpan(headers: object, sc: SpanContext): void {
  if (isSpanContextValid(sc)) requestSpans.set(headers, sc);
}

/** The SERVER span context bound to `headers` by {@link bindRequestSpan}, if any. */
export function requestSpanContextOf(headers: object): SpanContext | undefined {
  return requestSpans.get(headers);
}

/** Options of {@link withClientSpan}. */
export interface ClientSpanOptions {
  /** Instrumentation scope (the package making the call). */
  readonly tracerName: string;
  /** Span name: `GET /api/inventory/:sku`, `jwtmesh.profile.v1.ProfileService/GetProfile`. */
  readonly name: string;
  /** Attributes known before the call (semantic conventions; never a header value). */
  readonly attributes: Record<string, string | number | boolean>;
  /**
   * Adds the failure's attributes (`http.response.status_code`, `rpc.status_code`, ...) to the
   * span when `fn` throws; `error.type` and the ERROR status are set by {@link withClientSpan}.
   * Must not throw.
   */
  readonly onError?: (span: Span, err: unknown) => void;
}

/**
 * Runs one outgoing call inside a CLIENT span, child of the active span (the request's SERVER
 * span). `fn` receives the span (put its `spanContext()` in the outgoing `traceparent`, so the
 * next hop's spans are its children), or `null` when tracing is off: then nothing is allocated
 * and `fn(null)` is simply returned.
 *
 * On a throw: `error.type` is the error's `name` (a class name, never its message), the status
 * ERROR without a message, then `onError`; the error is re-thrown unchanged. The span ends when
 * `fn` settles.
 */
export function withClientSpan<T>(opts: ClientSpanOptions, fn: (span: Span | null) => Promise<T>): Promise<T> {
  if (!tracingActive()) return fn(null);
  const span = trace.getTracer(opts.tracerName).startSpan(opts.name, { kind: SpanKind.CLIENT, attributes: opts.attributes });
  let pending: Promise<T>;
  try {
    pending = context.with(trace.setSpan(context.active(), span), fn, undefined, span);
  } catch (err) {
    pending = Promise.reject(err);
  }
  return pending.then(
    (v) => {
      span.end();
      return v;
    },
    (err: unknown) => {
      if (span.isRecording()) {
        const name = (err as { name?: unknown } | null)?.name;
        span.setAttribute(SEMCONV.ERROR_TYPE, typeof name === 'string' && name !== '' ? name : 'Error');
        span.setStatus({ code: SpanStatusCode.ERROR });
        opts.onError?.(span, err);
      }
      span.end();
      throw err;
    },
  );
}
