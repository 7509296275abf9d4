/**
 * What one hop forwards to the next: the same `Authorization` header, the W3C Trace Context
 * (`traceparent` / `tracestate`) continued with a new parent span id, and `x-request-id`.
 *
 * Transport-free on purpose (no `fastify`, no `undici`, no `@grpc/*`): the HTTP mesh client
 * ({@link ./client.ts}) and the gRPC client metadata (`@jwt-mesh/grpc-auth`) both start from
 * {@link propagationHeaders}, and the gRPC server side reads the same headers from metadata.
 *
 * Upstream: W3C Trace Context Level 1 (https://www.w3.org/TR/trace-context/) §3.2 `traceparent`
 * (version `00`), §3.3 `tracestate`, §4.3 "mutating the traceparent field" (a participant keeps
 * the trace-id, replaces the parent-id with its own span id); Envoy `x-request-id`.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import type { SpanContext } from '@opentelemetry/api';
import { parseTraceparent, requestSpanContextOf, traceparentOf, tracingActive } from '@jwt-mesh/core';

export { parseTraceparent };

/** Request headers as Node, Fastify and the gRPC adapter give them: lower-case names. */
export type IncomingHeaders = Readonly<Record<string, string | readonly string[] | undefined>>;

/** The trace position of one hop, computed once per incoming request. */
export interface TraceContext {
  /** 32 lower-case hex digits; the same at every hop of one call chain. */
  readonly traceId: string;
  /** This hop's own span id (16 hex digits); the parent-id of the calls it makes. */
  readonly spanId: string;
  /** The caller's span id from the incoming `traceparent`, or `null` when this hop started the trace. */
  readonly parentSpanId: string | null;
  /** `trace-flags` (2 hex digits), copied from the caller; `01` (sampled) for a new trace. */
  readonly flags: string;
  /** The incoming `tracestate`, forwarded unchanged; only kept with a valid `traceparent`. */
  readonly tracestate: string | undefined;
}

const ALL_ZERO = /^0+$/;
/** `tracestate` is at most 32 list members; 512 characters is the size a vendor must propagate. */
const TRACESTATE_MAX = 512;
/** Accepted `x-request-id` values: what Envoy and common proxies generate (UUIDs, hex, ids). */
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

function single(value: string | readonly string[] | undefined): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value === 'string') return value;
  return value.length === 1 ? value[0] : undefined; // two values: ambiguous, treat as absent
}

function newSpanId(): string {
  let id: string;
  do id = randomBytes(8).toString('hex');
  while (ALL_ZERO.test(id));
  return id;
}

function newTraceId(): string {
  let id: string;
  do id = randomBytes(16).toString('hex');
  while (ALL_ZERO.test(id));
  return id;
}

const traceCache = new WeakMap<object, TraceContext>();
const requestIdCache = new WeakMap<object, string>();

/**
 * The trace context of an incoming request: continues the caller's trace when `traceparent` is
 * valid, otherwise starts a new one. Memoised per `headers` object, so every reader during one
 * request (logs, the hop report, each outgoing call) sees the same trace id and span id.
 *
 * With tracing on, the request's SERVER span (bound by the runtime package or the gRPC wrapper with
 * the core's `bindRequestSpan`) gives the trace id, span id and sampled flag instead, so the hop
 * report and the logs name the same trace as the exported spans.
 *
 * @param req - anything with the incoming `headers` (a Fastify request, a Node
 *   `IncomingMessage`, or the plain object the gRPC adapter builds from metadata)
 */
export function traceContextOf(req: { readonly headers: IncomingHeaders }): TraceContext {
  const cached = traceCache.get(req.headers);
  if (cached !== undefined) return cached;
  const parsed = parseTraceparent(single(req.headers['traceparent']));
  const span = tracingActive() ? requestSpanContextOf(req.headers) : undefined;
  let ctx: TraceContext;
  if (span !== undefined) {
    const tracestate = span.traceState?.serialize();
    ctx = {
      traceId: span.traceId,
      spanId: span.spanId,
      parentSpanId: parsed !== null && parsed.traceId === span.traceId ? parsed.parentId : null,
      flags: (span.traceFlags & 1) === 1 ? '01' : '00',
      tracestate: tracestate === undefined || tracestate === '' ? undefined : tracestate,
    };
  } else if (parsed === null) {
    ctx = { traceId: newTraceId(), spanId: newSpanId(), parentSpanId: null, flags: '01', tracestate: undefined };
  } else {
    const tracestate = single(req.headers['tracestate']);
    ctx = {
      traceId: parsed.traceId,
      spanId: newSpanId(),
      parentSpanId: parsed.parentId,
      // Version 00 defines only the sampled bit; other bits are copied as received (§3.2.2.5).
      flags: parsed.flags,
      tracestate: tracestate !== undefined && tracestate.length <= TRACESTATE_MAX ? tracestate : undefined,
    };
  }
  Object.freeze(ctx);
  traceCache.set(req.headers, ctx);
  return ctx;
}

/**
 * The `traceparent` to send on an outgoing call from this hop: version `00`, the same trace id,
 * this hop's span id as the parent-id, the same flags.
 */
export function outgoingTraceparent(ctx: TraceContext): string {
  return `00-${ctx.traceId}-${ctx.spanId}-${ctx.flags}`;
}

/**
 * The request id of an incoming request: the caller's `x-request-id` when it is one short
 * token (`[A-Za-z0-9._:-]{1,128}`), otherwise a new UUID. Memoised per `headers` object.
 * Fastify uses it as `request.id` (see `genReqId` in the runtime package), so logs carry it.
 */
export function requestIdOf(req: { readonly headers: IncomingHeaders }): string {
  const cached = requestIdCache.get(req.headers);
  if (cached !== undefined) return cached;
  const incoming = single(req.headers['x-request-id']);
  const id = incoming !== undefined && REQUEST_ID.test(incoming) ? incoming : randomUUID();
  requestIdCache.set(req.headers, id);
  return id;
}

/**
 * The headers an outgoing call from this hop carries (lower-case names):
 * - `authorization`: the incoming value, unchanged (the same JWT; every hop verifies it itself).
 *   Omitted when the request had none (a public route calling out).
 * - `traceparent`: naming `parent` (the outgoing call's CLIENT span) when given and valid, so the
 *   next hop's spans are that span's children; otherwise {@link outgoingTraceparent} of
 *   {@link traceContextOf}.
 * - `tracestate`: forwarded unchanged when present and the trace was continued.
 * - `x-request-id`: {@link requestIdOf}.
 *
 * Identity headers (`x-jwt-mesh-*`), cookies and anything else are never forwarded.
 *
 * @param req - the incoming request (its `headers`)
 * @param parent - the span the call is made in (the `span` of the core's `withClientSpan`);
 *   `undefined` (tracing off) keeps this hop's own trace context
 */
export function propagationHeaders(req: { readonly headers: IncomingHeaders }, parent?: SpanContext): Record<string, string> {
  const ctx = traceContextOf(req);
  const out: Record<string, string> = {
    traceparent: (parent !== undefined ? traceparentOf(parent) : undefined) ?? outgoingTraceparent(ctx),
    'x-request-id': requestIdOf(req),
  };
  const authorization = single(req.headers['authorization']);
  if (authorization !== undefined) out['authorization'] = authorization;
  if (ctx.tracestate !== undefined) out['tracestate'] = ctx.tracestate;
  return out;
}
