/**
 * The ext_authz `Check` handler: translates an Envoy `CheckRequest` into the core's plain
 * {@link AuthRequest}, asks the core's {@link Authenticator} for a decision, and translates the
 * {@link Decision} into a `CheckResponse`. No verification logic lives here (CONTRIBUTING.md, "A pure core, thin adapters"): every
 * status comes from the core's `ERROR_MAP` through `toDenial` (CONTRIBUTING.md, "One table from error to status").
 *
 * It never fails the gRPC call (CONTRIBUTING.md, "ext_authz never throws at Envoy"): a deny, an exception and a passed deadline are all
 * answered with a normal `CheckResponse` carrying a `DeniedHttpResponse`.
 *
 * Upstream: envoy/service/auth/v3/external_auth.proto (CheckResponse, OkHttpResponse,
 * DeniedHttpResponse), envoy/config/core/v3/base.proto (HeaderValueOption.append_action),
 * RFC 6750 §3 (WWW-Authenticate).
 */
import type * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { context, ROOT_CONTEXT, SpanKind, trace, type Context, type Span } from '@opentelemetry/api';
import {
  AuthError,
  DeadlineQueue,
  IDENTITY_HEADERS,
  JWT_MESH_ATTR,
  recordOutcome,
  remoteParentContext,
  SEMCONV,
  toDenial,
  tracingActive,
  type IdentityHeader,
  type AuthRequest,
  type Authenticator,
  type Decision,
  type Identity,
} from '@jwt-mesh/core';
import type { CheckResponse } from './generated/envoy/service/auth/v3/CheckResponse.js';
import type { HeaderValueOption } from './generated/envoy/config/core/v3/HeaderValueOption.js';
import type { AuthzMetrics } from './metrics.js';
import { MalformedCheckRequest, type CheckRequestView } from './wire.js';

// Identity header names: one list, in the core (IDENTITY_HEADERS), shared with envoy/.
export { IDENTITY_HEADERS, type IdentityHeader } from '@jwt-mesh/core';

/** What {@link buildCheckHandler} needs. */
export interface CheckDeps {
  /** The core's authenticator (verifier + revocation + policy + verified-token cache). */
  readonly authenticator: Authenticator;
  /** Own deadline per decision, milliseconds; past it the answer is a 503 deny (`deadline_exceeded`). */
  readonly deadlineMs: number;
  readonly logger: Logger;
  readonly metrics?: AuthzMetrics;
  /** Optional RFC 6750 `realm` for challenges. */
  readonly realm?: string;
}

type Headers = Record<string, string | string[]>;

/** A Check's request: the lean decoder's view (or a full proto-loader object), or undecodable bytes. */
export type CheckInput = CheckRequestView | MalformedCheckRequest;

function addHeader(headers: Headers, key: string, value: string): void {
  const name = key.toLowerCase();
  const prev = headers[name];
  if (prev === undefined) headers[name] = value;
  else if (Array.isArray(prev)) prev.push(value);
  else headers[name] = [prev, value];
}

/**
 * Translates a `CheckRequest` into the core's {@link AuthRequest}.
 *
 * - `method`: `attributes.request.http.method`, upper-cased.
 * - `path`: `attributes.request.http.path` (Envoy sends the request target with the query
 *   string) cut at the first `?`: the query is never used for matching and a token in it is
 *   never read (RFC 6750 §2.3 unsupported on purpose).
 * - `headers`: lower-case names. From `header_map` (Envoy `encode_raw_headers: true`: one entry
 *   per header line, value in `raw_value` bytes) a repeated header becomes an array. The
 *   `headers` map, where Envoy has already joined repeated headers with `,`, is passed as is:
 *   the core's `extractBearer` treats a comma-joined Bearer value as two credentials
 *   (`credentials_multiple`), so a duplicated Authorization header is refused either way.
 *   The object has no prototype: a header named `__proto__` is a header like any other.
 */
export function toAuthRequest(req: CheckRequestView): AuthRequest {
  const http = req.attributes?.request?.http;
  const rawPath = http?.path ?? '';
  const q = rawPath.indexOf('?');
  const headers = Object.create(null) as Headers;
  const list = http?.header_map?.headers;
  if (list && list.length > 0) {
    for (const h of list) {
      const raw = h.raw_value;
      const value = raw && raw.length > 0 ? (Buffer.isBuffer(raw) ? raw : Buffer.from(raw)).toString('utf8') : (h.value ?? '');
      addHeader(headers, h.key ?? '', value);
    }
  } else if (http?.headers) {
    for (const [key, value] of Object.entries(http.headers)) addHeader(headers, key, value);
  }
  return {
    method: (http?.method ?? '').toUpperCase(),
    path: q === -1 ? rawPath : rawPath.slice(0, q),
    headers,
  };
}

/** RFC 9110 field-value: visible ASCII, obs-text, SP and HTAB; no CR, LF, NUL or other controls. */
// eslint-disable-next-line no-control-regex
const UNSAFE_HEADER_VALUE = /[\u0000-\u0008\u000a-\u001f\u007f]/;

/** The identity header values for a verified identity; `undefined` = header to remove. */
export function identityHeaderValues(identity: Identity | null): Record<IdentityHeader, string | undefined> {
  const nonEmpty = (v: string | undefined): string | undefined => (v === undefined || v === '' ? undefined : v);
  return {
    'x-jwt-mesh-sub': nonEmpty(identity?.sub),
    'x-jwt-mesh-scope': nonEmpty(identity?.scopes.join(' ')),
    'x-jwt-mesh-sid': nonEmpty(identity?.sid),
    'x-jwt-mesh-jti': nonEmpty(identity?.jti),
    'x-jwt-mesh-roles': nonEmpty(identity?.roles.join(',')),
    'x-jwt-mesh-client-id': nonEmpty(identity?.clientId),
  };
}

const overwrite = (key: string, value: string): HeaderValueOption => ({
  header: { key, value },
  append_action: 'OVERWRITE_IF_EXISTS_OR_ADD',
});

/**
 * An allowed `CheckResponse`: gRPC OK and an `OkHttpResponse` that sets every identity header
 * present on the identity (`OVERWRITE_IF_EXISTS_OR_ADD`) and removes the others, so a
 * client-sent identity header never reaches the upstream. The `Authorization` header is not
 * touched: the same JWT travels on.
 *
 * @throws AuthError `internal` when a claim cannot be carried in an HTTP header (control
 *   characters): the caller turns it into a deny
 */
export function allowResponse(identity: Identity | null): CheckResponse {
  const headers: HeaderValueOption[] = [];
  const headersToRemove: string[] = [];
  for (const [key, value] of Object.entries(identityHeaderValues(identity))) {
    if (value === undefined) headersToRemove.push(key);
    else if (UNSAFE_HEADER_VALUE.test(value)) throw new AuthError('internal', `claim for ${key} is not a valid header value`);
    else headers.push(overwrite(key, value));
  }
  return {
    status: { code: 0, message: '' },
    ok_response: { headers, headers_to_remove: headersToRemove },
  };
}

/**
 * A denied `CheckResponse` for any error (non-{@link AuthError} values become `internal`):
 * `status.code` is the gRPC code from the core's table, `denied_response` carries the HTTP
 * status, `WWW-Authenticate` / `content-type` / `cache-control` / `retry-after` as the core's
 * `toDenial` gives them, and the small JSON body `{ error, error_description }`.
 */
export function denyResponse(err: unknown, realm?: string): CheckResponse {
  const denial = toDenial(err, realm);
  return {
    status: { code: denial.grpcCode, message: denial.body.error_description },
    denied_response: {
      // envoy.type.v3.StatusCode values are the HTTP status numbers.
      status: { code: denial.httpStatus },
      headers: Object.entries(denial.headers).map(([key, value]) => overwrite(key, value)),
      body: JSON.stringify(denial.body),
    },
  };
}

/**
 * Resolves the decision, or a `deadline_exceeded` deny when the queue's deadline passes first.
 * One timer for every call in flight (the core's {@link DeadlineQueue}), not one per call. An
 * exception from the authenticator (which should never throw) becomes an `internal` deny.
 */
function decideWithin(authenticator: Authenticator, req: AuthRequest, deadlines: DeadlineQueue, deadlineMs: number): Promise<Decision> {
  return new Promise<Decision>((resolve) => {
    const entry = deadlines.add(() =>
      resolve({ allow: false, error: new AuthError('deadline_exceeded', `no decision within ${deadlineMs} ms`) }),
    );
    let pending: Promise<Decision>;
    try {
      pending = authenticator.decide(req);
    } catch (err) {
      pending = Promise.reject(err);
    }
    pending.then(
      (decision) => {
        deadlines.finish(entry);
        resolve(decision);
      },
      (err: unknown) => {
        deadlines.finish(entry);
        resolve({ allow: false, error: err instanceof AuthError ? err : new AuthError('internal', 'authenticator threw', { cause: err }) });
      },
    );
  });
}

/** The outcome of one Check, for metrics and logs. */
interface Outcome {
  readonly response: CheckResponse;
  readonly outcome: 'allow' | 'deny';
  readonly reason: string;
  readonly rule: string | undefined;
  readonly error: AuthError | undefined;
}

/**
 * The decision for one `CheckRequest`; never throws. Bytes that did not decode
 * ({@link MalformedCheckRequest}) are denied as `internal` (503): Envoy never sends them, so a
 * broken or hostile peer is a service-side problem, logged, and nothing is allowed.
 */
async function decideCheck(deps: CheckDeps, deadlines: DeadlineQueue, request: CheckInput): Promise<Decision> {
  try {
    return request instanceof MalformedCheckRequest
      ? { allow: false, error: new AuthError('internal', 'malformed CheckRequest', { cause: request.cause }) }
      : await decideWithin(deps.authenticator, toAuthRequest(request), deadlines, deps.deadlineMs);
  } catch (err) {
    return { allow: false, error: new AuthError('internal', 'check failed', { cause: err }) };
  }
}

/** The `CheckResponse` and labels for a decision; an allow whose identity cannot be carried in headers becomes an `internal` deny. */
function outcomeOf(decision: Decision, realm: string | undefined): Outcome {
  if (decision.allow) {
    try {
      return {
        response: allowResponse(decision.identity),
        outcome: 'allow',
        reason: decision.identity === null ? 'public' : 'ok',
        rule: decision.rule,
        error: undefined,
      };
    } catch (err) {
      const error = err instanceof AuthError ? err : new AuthError('internal', 'allow response failed', { cause: err });
      decision = { allow: false, error, ...(decision.rule !== undefined ? { rule: decision.rule } : {}) };
    }
  }
  return {
    response: denyResponse(decision.error, realm),
    outcome: 'deny',
    reason: decision.error.code,
    rule: decision.rule,
    error: decision.error,
  };
}

/**
 * Decides one `CheckRequest` end to end; never throws. Bytes that did not decode
 * ({@link MalformedCheckRequest}) are denied as `internal` (503).
 *
 * @returns the `CheckResponse` plus the outcome/reason labels
 */
export async function check(deps: CheckDeps, request: CheckInput): Promise<Outcome> {
  return outcomeOf(await decideCheck(deps, new DeadlineQueue(deps.deadlineMs), request), deps.realm);
}

/** Serializes a `CheckResponse` to protobuf bytes (the method's full `responseSerialize`). */
export type CheckResponseEncoder = (response: CheckResponse) => Buffer;

/** Most distinct denial responses kept encoded (reason x required scopes: bounded by the policy anyway). */
const MAX_ENCODED_DENIALS = 256;

/**
 * Encoded `CheckResponse`s, built once and reused (issue 12: encoding every response was a
 * share of a Check's CPU):
 * - an allow, per verified {@link Identity} object: the core's verified-token cache returns the
 *   same object for every request with that token, so the bytes live exactly as long as its
 *   cache entry (a WeakMap: evicted entries take their bytes with them). Reused only when the
 *   core has just allowed this request, revocation checked, so a revoked token never gets them;
 * - the allow of a public route (no identity: every identity header removed);
 * - a deny, per reason (and required scopes for `insufficient_scope`: the only part of a
 *   denial that varies), since its status, headers and body are fixed by the core's table.
 */
class EncodedResponses {
  private readonly allows = new WeakMap<Identity, Buffer>();
  private publicAllow: Buffer | undefined;
  private readonly denials = new Map<string, Buffer>();

  constructor(
    private readonly encode: CheckResponseEncoder,
    private readonly realm: string | undefined,
  ) {}

  /** The encoded response and the labels for `decision`. */
  of(decision: Decision): { bytes: Buffer; outcome: 'allow' | 'deny'; reason: string; rule: string | undefined; error: AuthError | undefined } {
    if (decision.allow) {
      const id = decision.identity;
      const bytes = id === null ? this.publicAllow : this.allows.get(id);
      if (bytes !== undefined) return { bytes, outcome: 'allow', reason: id === null ? 'public' : 'ok', rule: decision.rule, error: undefined };
    } else {
      const bytes = this.denials.get(denialKey(decision.error));
      if (bytes !== undefined) return { bytes, outcome: 'deny', reason: decision.error.code, rule: decision.rule, error: decision.error };
    }
    const o = outcomeOf(decision, this.realm);
    const bytes = this.encode(o.response);
    if (o.outcome === 'allow' && decision.allow) {
      if (decision.identity === null) this.publicAllow = bytes;
      else this.allows.set(decision.identity, bytes);
    } else if (o.error !== undefined && this.denials.size < MAX_ENCODED_DENIALS) {
      this.denials.set(denialKey(o.error), bytes);
    }
    return { bytes, outcome: o.outcome, reason: o.reason, rule: o.rule, error: o.error };
  }
}

/** What makes two denials' responses differ: the code, and the scopes an `insufficient_scope` names. */
function denialKey(err: AuthError): string {
  return err.code === 'insufficient_scope' ? `${err.code} ${(err.requiredScopes ?? []).join(' ')}` : err.code;
}

/** Instrumentation scope of the authz-service's own spans. */
export const AUTHZ_TRACER_NAME = '@jwt-mesh/authz-service';

/** The fully-qualified gRPC method (semconv 1.45 `rpc.method`). */
const CHECK_METHOD = 'envoy.service.auth.v3.Authorization/Check';

/** One value of a gRPC metadata key, `undefined` when absent, repeated or binary. */
function metadataValue(md: grpc.Metadata | undefined, key: string): string | undefined {
  const v = md?.get(key);
  return v !== undefined && v.length === 1 && typeof v[0] === 'string' ? v[0] : undefined;
}

/** One value of a header of the checked request, `undefined` when absent or repeated. */
function checkedHeader(request: CheckInput, key: 'traceparent' | 'tracestate'): string | undefined {
  if (request instanceof MalformedCheckRequest) return undefined;
  const http = request.attributes?.request?.http;
  const list = http?.header_map?.headers;
  if (list && list.length > 0) {
    let found: string | undefined;
    for (const h of list) {
      if (h.key?.toLowerCase() !== key) continue;
      if (found !== undefined) return undefined; // repeated: ambiguous
      const raw = h.raw_value;
      found = raw && raw.length > 0 ? (Buffer.isBuffer(raw) ? raw : Buffer.from(raw)).toString('utf8') : (h.value ?? '');
    }
    return found;
  }
  return http?.headers?.[key];
}

/**
 * The parent of the `authz.Check` span (W3C Trace Context): the `traceparent` in the gRPC
 * metadata of the Check call, which Envoy's tracer injects for its own ext_authz client span
 * (so the Check is a child of Envoy's span); failing that, the `traceparent` among the checked
 * request's headers (the client's, when Envoy traces nothing); failing that, none (a new trace,
 * sampled by this process's sampler).
 *
 * @param metadata - the Check call's gRPC metadata
 * @param request - the decoded CheckRequest (or undecodable bytes: no header is read then)
 */
export function checkParentContext(metadata: grpc.Metadata | undefined, request: CheckInput): Context {
  const fromMetadata = remoteParentContext(metadataValue(metadata, 'traceparent'), metadataValue(metadata, 'tracestate'));
  if (fromMetadata !== ROOT_CONTEXT) return fromMetadata;
  return remoteParentContext(checkedHeader(request, 'traceparent'), checkedHeader(request, 'tracestate'));
}

/** Ends the `authz.Check` span with the decision's attributes (never a header value). */
function endCheckSpan(span: Span, request: CheckInput, result: Pick<Outcome, 'outcome' | 'rule' | 'error'>): void {
  if (span.isRecording()) {
    if (!(request instanceof MalformedCheckRequest)) {
      const http = request.attributes?.request?.http;
      if (http?.method) span.setAttribute(SEMCONV.HTTP_REQUEST_METHOD, http.method.toUpperCase());
      const path = http?.path;
      if (path) {
        const q = path.indexOf('?');
        span.setAttribute(SEMCONV.URL_PATH, q === -1 ? path : path.slice(0, q));
      }
    }
    span.setAttribute(SEMCONV.RPC_STATUS_CODE, 'OK'); // every Check is answered; a deny is in the CheckResponse
    span.setAttribute(JWT_MESH_ATTR.POLICY_DECISION, result.outcome);
    if (result.rule !== undefined) span.setAttribute(JWT_MESH_ATTR.POLICY_RULE, result.rule);
    recordOutcome(span, result.error ?? null);
  }
  span.end();
}

/** Deny reasons that mean the service (not the caller) has a problem: logged as warnings. */
const SERVICE_SIDE = new Set(['jwks_unavailable', 'revocation_unavailable', 'deadline_exceeded', 'internal']);

/** At most one warning per reason per this many milliseconds (an outage must not flood the log). */
const WARN_INTERVAL_MS = 1_000;

/**
 * Builds the `Check` handler for `envoy.service.auth.v3.Authorization`.
 *
 * Every call is answered with `callback(null, CheckResponse)`: OK + `ok_response` when allowed;
 * UNAUTHENTICATED (16) / PERMISSION_DENIED (7) / INVALID_ARGUMENT (3) / UNAVAILABLE (14) +
 * `denied_response` when denied (codes from the core's `ERROR_MAP`). Records
 * `jwtmesh_authz_decisions_total` and `jwtmesh_authz_check_duration_seconds` when `metrics` is
 * given. Logs service-side denials at `warn` with the error cause (at most one per reason per
 * second, with the number suppressed), others at `debug`; never logs header values.
 *
 * @param encode - the method's response serializer: when given, responses are encoded once and
 *   reused (see `EncodedResponses`) and the handler answers with the bytes, which the server's
 *   `responseSerialize` passes through; without it, with `CheckResponse` objects
 *
 * Tracing (only when an OpenTelemetry SDK is registered): a SERVER span `authz.Check` per call,
 * parented to the gRPC metadata's `traceparent` (Envoy's ext_authz span), else the checked
 * request's; attributes `rpc.system.name`/`rpc.system` `grpc`, `rpc.service`, `rpc.method`
 * (`envoy.service.auth.v3.Authorization/Check`), `rpc.status_code` `OK`, the checked request's
 * `http.request.method` and `url.path` (no query), `jwt_mesh.policy.decision` (`allow`/`deny`),
 * `jwt_mesh.policy.rule`, `jwt_mesh.outcome`, `jwt_mesh.reason`. Headers are never recorded.
 * With tracing off the handler does no span work (one `tracingActive()` check per call).
 */
export function buildCheckHandler(
  deps: CheckDeps,
  encode?: CheckResponseEncoder,
): grpc.handleUnaryCall<CheckInput, CheckResponse | Buffer> {
  const lastWarn = new Map<string, { at: number; suppressed: number }>();
  const encoded = encode === undefined ? undefined : new EncodedResponses(encode, deps.realm);
  const deadlines = new DeadlineQueue(deps.deadlineMs);

  function log(
    call: grpc.ServerUnaryCall<CheckInput, CheckResponse | Buffer>,
    result: Pick<Outcome, 'outcome' | 'reason' | 'rule' | 'error'>,
    seconds: number,
  ): void {
    if (!result.error) return;
    const serviceSide = SERVICE_SIDE.has(result.reason);
    if (!serviceSide && !deps.logger.isLevelEnabled('debug')) return;
    let suppressed = 0;
    if (serviceSide) {
      const now = Date.now();
      const seen = lastWarn.get(result.reason);
      if (seen && now - seen.at < WARN_INTERVAL_MS) {
        seen.suppressed++;
        return;
      }
      suppressed = seen?.suppressed ?? 0;
      lastWarn.set(result.reason, { at: now, suppressed: 0 });
    }
    const http = call.request instanceof MalformedCheckRequest ? undefined : call.request.attributes?.request?.http;
    const path = http?.path ?? '';
    const q = path.indexOf('?');
    const entry = {
      outcome: result.outcome,
      reason: result.reason,
      rule: result.rule,
      method: http?.method,
      path: q === -1 ? path : path.slice(0, q),
      requestId: http?.id,
      ms: seconds * 1000,
      ...(suppressed > 0 ? { suppressed } : {}),
      err: result.error.cause instanceof Error ? result.error.cause : undefined,
    };
    if (serviceSide) deps.logger.warn(entry, `ext_authz deny: ${result.error.message}`);
    else deps.logger.debug(entry, 'ext_authz deny');
  }

  // Label children bound once (prom-client hashes a labels object on every inc/observe otherwise).
  const durations = deps.metrics && { allow: deps.metrics.checkDuration.labels('allow'), deny: deps.metrics.checkDuration.labels('deny') };
  const counters = { allow: new Map<string, { inc(): void }>(), deny: new Map<string, { inc(): void }>() };
  const count = (outcome: 'allow' | 'deny', reason: string): void => {
    if (!deps.metrics) return;
    let c = counters[outcome].get(reason);
    if (c === undefined) counters[outcome].set(reason, (c = deps.metrics.decisions.labels(outcome, reason)));
    c.inc();
  };

  const handle = (call: grpc.ServerUnaryCall<CheckInput, CheckResponse | Buffer>, callback: grpc.sendUnaryData<CheckResponse | Buffer>, span: Span | null): void => {
    const started = performance.now();
    decideCheck(deps, deadlines, call.request)
      .then((decision) => {
        let result: Pick<Outcome, 'outcome' | 'reason' | 'rule' | 'error'>;
        if (encoded === undefined) {
          const o = outcomeOf(decision, deps.realm);
          callback(null, o.response);
          result = o;
        } else {
          const e = encoded.of(decision);
          callback(null, e.bytes);
          result = e;
        }
        const seconds = (performance.now() - started) / 1000;
        count(result.outcome, result.reason);
        durations?.[result.outcome].observe(seconds);
        log(call, result, seconds);
        if (span !== null) endCheckSpan(span, call.request, result);
      })
      .catch((err: unknown) => {
        // Only reachable through a bug in the code above; still answer with a deny.
        deps.logger.error({ err }, 'ext_authz Check handler failed');
        if (span !== null) endCheckSpan(span, call.request, { outcome: 'deny', rule: undefined, error: new AuthError('internal') });
        try {
          callback(null, denyResponse(err, deps.realm));
        } catch {
          // the call is already answered
        }
      });
  };

  const tracer = trace.getTracer(AUTHZ_TRACER_NAME);
  return (call, callback) => {
    if (!tracingActive()) return handle(call, callback, null);
    // SERVER span `authz.Check`, child of Envoy's span (see checkParentContext); the core's
    // `authenticate` span and its children nest under it through the active context.
    const parent = checkParentContext(call.metadata, call.request);
    const span = tracer.startSpan(
      'authz.Check',
      {
        kind: SpanKind.SERVER,
        attributes: {
          [SEMCONV.RPC_SYSTEM_NAME]: 'grpc',
          [SEMCONV.RPC_SYSTEM]: 'grpc',
          [SEMCONV.RPC_SERVICE]: 'envoy.service.auth.v3.Authorization',
          [SEMCONV.RPC_METHOD]: CHECK_METHOD,
        },
      },
      parent,
    );
    context.with(trace.setSpan(parent, span), handle, undefined, call, callback, span);
  };
}
