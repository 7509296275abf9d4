/**
 * The outgoing-call helper: one hop calls the next through its local sidecar's outbound
 * listener, forwarding the same `Authorization` header, the W3C trace context and
 * `x-request-id` ({@link propagationHeaders}). A non-2xx answer from downstream becomes a
 * {@link DownstreamError} carrying the downstream status, its `WWW-Authenticate` challenge and
 * JSON error body, so a 403 `insufficient_scope` at the last hop reaches the client unchanged.
 *
 * Built on undici (https://undici.nodejs.org/#/docs/api/Dispatcher?id=dispatcherrequestoptions-callback).
 */
import type { Span } from '@opentelemetry/api';
import { SEMCONV, tracingActive, withClientSpan } from '@jwt-mesh/core';
import { Agent, errors as undiciErrors, type Dispatcher } from 'undici';
import { propagationHeaders, type IncomingHeaders } from './propagation.js';

/** Options of {@link createMeshClient}. */
export interface MeshClientOptions {
  /**
   * Where calls go: the local sidecar's outbound listener for the next hop (or, without Envoy,
   * the next service itself), e.g. `http://127.0.0.1:9101`. Only its origin is used; call paths
   * are resolved against it and may not leave it.
   */
  readonly baseUrl: string | URL;
  /** Whole-call deadline in milliseconds (connect, headers and body). Default 5000. */
  readonly timeoutMs?: number;
  /** Connections kept per origin. Default 16. Ignored when `dispatcher` is given. */
  readonly connections?: number;
  /** A custom undici dispatcher (tests, a shared agent). The client does not close it. */
  readonly dispatcher?: Dispatcher;
}

/** One call. */
export interface MeshCallOptions {
  readonly method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  /** Absolute path on the downstream service, with an optional query string (`/api/inventory/sku-1`). */
  readonly path: string;
  /** Sent as JSON (`content-type: application/json`) when defined. */
  readonly body?: unknown;
  /** Overrides the client-wide deadline for this call, in milliseconds. */
  readonly timeoutMs?: number;
  /**
   * The downstream route template (`/api/inventory/:sku`), for the CLIENT span's name
   * (`GET /api/inventory/:sku`) and `url.template`; without it the span is named by the method.
   */
  readonly route?: string;
}

/** Instrumentation scope of the mesh client's CLIENT spans. */
export const MESH_CLIENT_TRACER_NAME = '@jwt-mesh/fastify-auth';

/** A 2xx answer. `body` is the parsed JSON body (`undefined` for an empty body). */
export interface MeshResponse<T> {
  readonly status: number;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  readonly body: T;
}

/** The JSON error body shape the mesh uses (RFC 6749 §5.2 / RFC 6750 §3 style). */
export interface ErrorBody {
  readonly error: string;
  readonly error_description?: string;
  readonly [field: string]: unknown;
}

/** Response headers of a downstream error worth passing back to the client. */
const PASSED_BACK_HEADERS = ['www-authenticate', 'retry-after'] as const;

/**
 * A downstream failure to hand back to the client as is: `status` and `headers`
 * (`www-authenticate`, `retry-after`) copied from the downstream answer, `body` its JSON error
 * body. Transport failures are 502 `bad_gateway`; a missed deadline is 504 `gateway_timeout`.
 * Reply with `reply.code(err.status).headers(err.headers).send(err.body)` (the runtime package's
 * error handler does this).
 */
export class DownstreamError extends Error {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: ErrorBody;

  constructor(status: number, body: ErrorBody, headers: Record<string, string> = {}, options?: { cause?: unknown }) {
    super(`downstream answered ${status} ${body.error}`, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.status = status;
    this.body = Object.freeze({ ...body });
    this.headers = Object.freeze({ ...headers });
  }
}

/** A client bound to one downstream origin. */
export interface MeshClient {
  /**
   * Calls the downstream service on behalf of `incoming` (the request this hop is serving).
   *
   * @param incoming - the incoming request (a Fastify request or anything with its `headers`);
   *   its `Authorization`, trace context and request id are forwarded
   * @returns the parsed 2xx answer
   * @throws DownstreamError on a non-2xx answer (status, challenge and body of the downstream),
   *   on a transport failure (502) or when the deadline passes (504)
   *
   * Tracing (only when an OpenTelemetry SDK is registered): a CLIENT span per call, child of the
   * active span, named `GET /api/inventory/:sku` (with `route`) or `GET`, with
   * `http.request.method`, `server.address`, `server.port`, `url.path` (no query),
   * `url.template`, `http.response.status_code`, `error.type`; the outgoing `traceparent` names
   * this span. No header value is recorded.
   */
  call<T = unknown>(incoming: { readonly headers: IncomingHeaders }, opts: MeshCallOptions): Promise<MeshResponse<T>>;
  /** Closes the connections the client opened (not a `dispatcher` passed in). */
  close(): Promise<void>;
}

function firstHeader(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

function isErrorBody(v: unknown): v is ErrorBody {
  return typeof v === 'object' && v !== null && typeof (v as { error?: unknown }).error === 'string';
}

/**
 * Creates the outgoing-call helper for one downstream.
 *
 * @throws TypeError when `baseUrl` is not an http(s) URL or `timeoutMs` is not a positive number
 */
export function createMeshClient(opts: MeshClientOptions): MeshClient {
  const base = new URL(opts.baseUrl);
  if (base.protocol !== 'http:' && base.protocol !== 'https:') throw new TypeError(`baseUrl must be http(s): ${base.href}`);
  const timeoutMs = opts.timeoutMs ?? 5000;
  if (!(Number.isFinite(timeoutMs) && timeoutMs > 0)) throw new TypeError(`timeoutMs must be a positive number of milliseconds, got ${timeoutMs}`);
  const owned = opts.dispatcher === undefined ? new Agent({ connections: opts.connections ?? 16 }) : undefined;
  const dispatcher = opts.dispatcher ?? owned!;

  return {
    async call<T>(incoming: { readonly headers: IncomingHeaders }, call: MeshCallOptions): Promise<MeshResponse<T>> {
      if (!call.path.startsWith('/') || call.path.startsWith('//')) throw new TypeError(`path must be an absolute path, got ${call.path}`);
      const url = new URL(call.path, base);
      if (url.origin !== base.origin) throw new TypeError(`path leaves the downstream origin: ${call.path}`);
      // Tracing off: no span, no attribute object.
      if (!tracingActive()) return send<T>(incoming, call, url, null);
      return withClientSpan(
        {
          tracerName: MESH_CLIENT_TRACER_NAME,
          name: call.route === undefined ? call.method : `${call.method} ${call.route}`,
          attributes: {
            [SEMCONV.HTTP_REQUEST_METHOD]: call.method,
            [SEMCONV.SERVER_ADDRESS]: url.hostname,
            [SEMCONV.SERVER_PORT]: Number(url.port || (url.protocol === 'https:' ? 443 : 80)),
            [SEMCONV.URL_PATH]: url.pathname,
            ...(call.route === undefined ? {} : { 'url.template': call.route }),
          },
          onError: (span, err) => {
            if (err instanceof DownstreamError) span.setAttribute(SEMCONV.ERROR_TYPE, String(err.status));
          },
        },
        (span) => send<T>(incoming, call, url, span),
      );
    },
    async close(): Promise<void> {
      await owned?.close();
    },
  };

  async function send<T>(incoming: { readonly headers: IncomingHeaders }, call: MeshCallOptions, url: URL, span: Span | null): Promise<MeshResponse<T>> {
    const headers: Record<string, string> = { accept: 'application/json', ...propagationHeaders(incoming, span?.spanContext()) };
    let body: string | undefined;
    if (call.body !== undefined) {
      body = JSON.stringify(call.body);
      headers['content-type'] = 'application/json';
    }
    const deadline = call.timeoutMs ?? timeoutMs;
    const signal = AbortSignal.timeout(deadline);
    let res: Dispatcher.ResponseData;
    let text: string;
    try {
      res = await dispatcher.request({
        origin: url.origin,
        path: url.pathname + url.search,
        method: call.method,
        headers,
        body,
        signal,
        headersTimeout: deadline,
        bodyTimeout: deadline,
      });
      text = await res.body.text();
    } catch (err) {
      const timedOut =
        signal.aborted ||
        err instanceof undiciErrors.HeadersTimeoutError ||
        err instanceof undiciErrors.BodyTimeoutError ||
        err instanceof undiciErrors.ConnectTimeoutError;
      if (timedOut) {
        throw new DownstreamError(504, { error: 'gateway_timeout', error_description: `the downstream service did not answer within ${deadline} ms` }, {}, { cause: err });
      }
      throw new DownstreamError(502, { error: 'bad_gateway', error_description: 'the downstream service could not be reached' }, {}, { cause: err });
    }
    if (span !== null && span.isRecording()) span.setAttribute(SEMCONV.HTTP_RESPONSE_STATUS_CODE, res.statusCode);
    const contentType = firstHeader(res.headers['content-type']) ?? '';
    let parsed: unknown = undefined;
    let parseFailed = false;
    if (text !== '' && /\bjson\b/i.test(contentType)) {
      try {
        parsed = JSON.parse(text);
      } catch (err) {
        parseFailed = true;
        if (res.statusCode >= 200 && res.statusCode < 300) {
          throw new DownstreamError(502, { error: 'bad_gateway', error_description: 'the downstream service sent invalid JSON' }, {}, { cause: err });
        }
      }
    } else if (text !== '' && res.statusCode >= 200 && res.statusCode < 300) {
      throw new DownstreamError(502, { error: 'bad_gateway', error_description: 'the downstream service did not answer with JSON' });
    }

    if (res.statusCode >= 200 && res.statusCode < 300) {
      return { status: res.statusCode, headers: res.headers, body: parsed as T };
    }
    const passed: Record<string, string> = {};
    for (const name of PASSED_BACK_HEADERS) {
      const v = firstHeader(res.headers[name]);
      if (v !== undefined) passed[name] = v;
    }
    const errBody: ErrorBody =
      !parseFailed && isErrorBody(parsed)
        ? parsed
        : { error: res.statusCode >= 500 ? 'bad_gateway' : 'downstream_error', error_description: `the downstream service answered ${res.statusCode}` };
    throw new DownstreamError(res.statusCode, errBody, passed);
  }
}
