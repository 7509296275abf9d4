/**
 * SERVER spans for a Fastify app: every service (through the runtime package) and the auth-service.
 * OpenTelemetry API only; W3C Trace Context for the parent; HTTP server semantic conventions 1.45.
 */
import { context, SpanKind, SpanStatusCode, trace, type Span } from '@opentelemetry/api';
import { bindRequestSpan, remoteParentContext, SEMCONV, tracingActive } from '@jwt-mesh/core';
import type { FastifyInstance } from 'fastify';

/** Instrumentation scope of the Fastify SERVER spans. */
export const SERVER_SPANS_TRACER_NAME = '@jwt-mesh/fastify-auth';

/** One value of a request header (`undefined` when absent or repeated). */
function singleHeader(v: string | string[] | undefined): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

/**
 * Adds the SERVER span of every request (only when an OpenTelemetry SDK is registered; with
 * tracing off the hook returns at once). Must be the first `onRequest` hook: the rest of the
 * request (the verification plugin, the handler, outgoing calls) runs inside the span's context.
 *
 * - parent: the incoming W3C `traceparent` / `tracestate` (the sidecar Envoy forwards them);
 *   none or invalid: a new trace, sampled by `OTEL_TRACES_SAMPLER`;
 * - name `GET /api/orders/:id` (method and Fastify route), or the method alone when no route matched;
 * - attributes `http.request.method`, `http.route`, `url.path` (no query),
 *   `http.response.status_code`; `error.type` and ERROR status for a 5xx; `error.type`
 *   `aborted` when the client went away. Never a header value.
 */
export function addServerSpans(app: FastifyInstance): void {
  const spans = new WeakMap<object, Span>();
  const tracer = trace.getTracer(SERVER_SPANS_TRACER_NAME);
  app.addHook('onRequest', (request, _reply, done) => {
    if (!tracingActive()) return done();
    const route = request.routeOptions.url;
    const parent = remoteParentContext(singleHeader(request.headers['traceparent']), singleHeader(request.headers['tracestate']));
    const q = request.url.indexOf('?');
    const span = tracer.startSpan(
      route === undefined ? request.method : `${request.method} ${route}`,
      {
        kind: SpanKind.SERVER,
        attributes: {
          [SEMCONV.HTTP_REQUEST_METHOD]: request.method,
          [SEMCONV.URL_PATH]: q === -1 ? request.url : request.url.slice(0, q),
          ...(route === undefined ? {} : { [SEMCONV.HTTP_ROUTE]: route }),
        },
      },
      parent,
    );
    spans.set(request, span);
    bindRequestSpan(request.headers, span.spanContext());
    // The rest of the request's lifecycle starts inside done(): run it in the span's context.
    context.with(trace.setSpan(parent, span), done);
  });
  app.addHook('onResponse', (request, reply, done) => {
    const span = spans.get(request);
    if (span !== undefined) {
      if (span.isRecording()) {
        span.setAttribute(SEMCONV.HTTP_RESPONSE_STATUS_CODE, reply.statusCode);
        if (reply.statusCode >= 500) {
          span.setAttribute(SEMCONV.ERROR_TYPE, String(reply.statusCode));
          span.setStatus({ code: SpanStatusCode.ERROR });
        }
      }
      span.end();
      spans.delete(request);
    }
    done();
  });
  app.addHook('onRequestAbort', (request, done) => {
    const span = spans.get(request);
    if (span !== undefined) {
      span.setAttribute(SEMCONV.ERROR_TYPE, 'aborted');
      span.setStatus({ code: SpanStatusCode.ERROR });
      span.end();
      spans.delete(request);
    }
    done();
  });
}
