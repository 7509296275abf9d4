/**
 * Server side of the gRPC hop: the same check as the Fastify plugin, over `authorization`
 * metadata. A thin adapter over `@jwt-mesh/core` (CONTRIBUTING.md, "A pure core, thin adapters"): metadata becomes the core's
 * plain {@link AuthRequest}, the core's {@link Authenticator} decides, and a deny is sent with
 * the status the core's one table picks ({@link toDenial}: `UNAUTHENTICATED`,
 * `PERMISSION_DENIED`, `INVALID_ARGUMENT`, `UNAVAILABLE`) plus the RFC 6750 challenge in the
 * `www-authenticate` trailer and the {@link AuthErrorCode} in the `auth-error-code` trailer.
 *
 * Upstream: gRPC over HTTP/2 (custom metadata, trailers), https://grpc.io/docs/guides/auth/
 * (token in `authorization` metadata), RFC 6750 §3, google.rpc.Code.
 */
import * as grpc from '@grpc/grpc-js';
import { context, SpanKind, SpanStatusCode, trace, type Span } from '@opentelemetry/api';
import {
  AuthError,
  bindRequestSpan,
  isAuthError,
  remoteParentContext,
  SEMCONV,
  toDenial,
  tracingActive,
  type AuthErrorCode,
  type AuthRequest,
  type Authenticator,
  type Identity,
  type RouteRequirement,
} from '@jwt-mesh/core';

/** Trailer carrying the core's error code of a deny, so the caller maps it back exactly. */
export const AUTH_ERROR_TRAILER = 'auth-error-code';
/** Trailer carrying the RFC 6750 `WWW-Authenticate` challenge of a deny. */
export const CHALLENGE_TRAILER = 'www-authenticate';

/** Request metadata as lower-case headers; repeated keys become arrays. Binary (`-bin`) keys are skipped. */
export type MetadataHeaders = Readonly<Record<string, string | readonly string[] | undefined>>;

/** Instrumentation scope of the gRPC SERVER and CLIENT spans. */
export const GRPC_TRACER_NAME = '@jwt-mesh/grpc-auth';

/** The name of a gRPC status code (`OK`, `PERMISSION_DENIED`, ...), as semconv `rpc.status_code` wants it. */
export function grpcStatusName(code: number): string {
  return (grpc.status as unknown as Record<number, string | undefined>)[code] ?? String(code);
}

/** `rpc.*` attributes of a call to `/package.Service/Method` (semconv 1.45, plus the older `rpc.system` / `rpc.service`). */
export function rpcAttributes(path: string): Record<string, string> {
  const method = path.startsWith('/') ? path.slice(1) : path;
  const slash = method.lastIndexOf('/');
  return {
    [SEMCONV.RPC_SYSTEM_NAME]: 'grpc',
    [SEMCONV.RPC_SYSTEM]: 'grpc',
    [SEMCONV.RPC_METHOD]: method,
    ...(slash > 0 ? { [SEMCONV.RPC_SERVICE]: method.slice(0, slash) } : {}),
  };
}

/** Plain headers from gRPC metadata (keys are already lower-case in gRPC). */
export function headersOfMetadata(metadata: grpc.Metadata): MetadataHeaders {
  const out: Record<string, string | string[]> = {};
  for (const [key, values] of Object.entries(metadata.toJSON())) {
    if (key.endsWith('-bin')) continue;
    const strings = values.map((v) => (typeof v === 'string' ? v : v.toString('utf8')));
    if (strings.length === 1) out[key] = strings[0]!;
    else if (strings.length > 1) out[key] = strings;
  }
  return out;
}

/** Options of {@link createGrpcAuth}. */
export interface GrpcAuthOptions {
  /** The core's decision maker (`createAuthenticator(...)`). */
  readonly authenticator: Authenticator;
  /** `realm` of the `WWW-Authenticate` challenge. */
  readonly realm?: string;
  /** Called once per decision with `'allow'` or the error code (for metrics). Must not throw. */
  readonly onDecision?: (outcome: 'allow' | AuthErrorCode, path: string) => void;
  /**
   * Called with a handler failure that is not an {@link AuthError} (for logs), before the call is
   * answered `INTERNAL`; `call` lets a host put the error on its one log line for that call.
   * Must not throw.
   */
  readonly onError?: (err: unknown, path: string, call: grpc.ServerUnaryCall<unknown, unknown>) => void;
}

/** What an authenticated handler receives beside the call. */
export interface AuthContext {
  /** The verified identity, derived only from the verified token. */
  readonly identity: Identity;
  /** The call's metadata as plain headers (for the trace context and request id). */
  readonly headers: MetadataHeaders;
  /**
   * Checks an extra requirement through the core (e.g. a role for reading someone else's
   * data). Resolves when allowed.
   * @throws AuthError the core's error (the wrapper maps it to the gRPC status)
   */
  require(requirement: RouteRequirement): Promise<void>;
}

/** A unary handler that already has a verified identity; resolve the response or throw. */
export type AuthenticatedUnaryHandler<Req, Res> = (call: grpc.ServerUnaryCall<Req, Res>, ctx: AuthContext) => Promise<Res>;

/** Builds the `ServiceError` for a deny: status from the core table, challenge and code as trailers. */
export function denialStatus(err: unknown, realm?: string): Partial<grpc.StatusObject> {
  const denial = toDenial(err, realm);
  const trailers = new grpc.Metadata();
  trailers.set(AUTH_ERROR_TRAILER, denial.code);
  const challenge = denial.headers['www-authenticate'];
  if (challenge !== undefined) trailers.set(CHALLENGE_TRAILER, challenge);
  return { code: denial.grpcCode as unknown as grpc.status, details: `${denial.body.error}: ${denial.body.error_description}`, metadata: trailers };
}

/**
 * Creates the wrapper for unary handlers of one service.
 *
 * ```ts
 * const auth = createGrpcAuth({ authenticator, realm: 'profile' });
 * server.addService(def, { GetProfile: auth.unary({ scopes: ['profile:read'] }, async (call, ctx) => ...) });
 * ```
 *
 * Tracing (only when an OpenTelemetry SDK is registered): each call gets a SERVER span named
 * `package.Service/Method`, parented to the `traceparent` metadata, with `rpc.system.name`,
 * `rpc.system`, `rpc.service`, `rpc.method` and `rpc.status_code`; the core's `authenticate` span
 * and the handler's work nest under it. No metadata value is recorded.
 */
export function createGrpcAuth(opts: GrpcAuthOptions): {
  unary<Req, Res>(requirement: RouteRequirement, handler: AuthenticatedUnaryHandler<Req, Res>): grpc.handleUnaryCall<Req, Res>;
} {
  const { authenticator, realm, onDecision, onError } = opts;

  async function decide(path: string, headers: MetadataHeaders, requirement: RouteRequirement): Promise<Identity> {
    const req: AuthRequest = { method: 'POST', path, headers };
    let decision;
    try {
      decision = await authenticator.decide(req, requirement);
    } catch (err) {
      decision = { allow: false as const, error: new AuthError('internal', 'the authenticator threw', { cause: err }) };
    }
    if (!decision.allow) {
      onDecision?.(decision.error.code, path);
      throw decision.error;
    }
    if (decision.identity === null) {
      // A gRPC method always needs a token; a public rule here is a configuration mistake.
      const err = new AuthError('credentials_missing');
      onDecision?.(err.code, path);
      throw err;
    }
    onDecision?.('allow', path);
    return decision.identity;
  }

  return {
    unary<Req, Res>(requirement: RouteRequirement, handler: AuthenticatedUnaryHandler<Req, Res>): grpc.handleUnaryCall<Req, Res> {
      const tracer = trace.getTracer(GRPC_TRACER_NAME);
      const run = (call: grpc.ServerUnaryCall<Req, Res>, callback: grpc.sendUnaryData<Res>, path: string, headers: MetadataHeaders): void => {
        (async () => {
          const identity = await decide(path, headers, requirement);
          const ctx: AuthContext = {
            identity,
            headers,
            async require(extra) {
              await decide(path, headers, extra);
            },
          };
          return handler(call, ctx);
        })().then(
          (res) => callback(null, res),
          (err: unknown) => {
            if (isAuthError(err)) {
              callback(denialStatus(err, realm));
              return;
            }
            if (isServiceError(err)) {
              callback(err);
              return;
            }
            onError?.(err, path, call as grpc.ServerUnaryCall<unknown, unknown>);
            callback({ code: grpc.status.INTERNAL, details: 'internal error' });
          },
        );
      };
      return (call, callback) => {
        const path = call.getPath();
        const headers = headersOfMetadata(call.metadata);
        if (!tracingActive()) return run(call, callback, path, headers);
        // SERVER span, child of the caller's CLIENT span (its traceparent in the metadata).
        const single = (v: string | readonly string[] | undefined): string | undefined => (typeof v === 'string' ? v : undefined);
        const parent = remoteParentContext(single(headers['traceparent']), single(headers['tracestate']));
        const span = tracer.startSpan(path.slice(1), { kind: SpanKind.SERVER, attributes: rpcAttributes(path) }, parent);
        bindRequestSpan(headers, span.spanContext());
        const answer = endingWith(span, callback);
        context.with(trace.setSpan(parent, span), () => run(call, answer, path, headers));
      };
    },
  };
}

/** Wraps a unary callback so the SERVER span gets `rpc.status_code` (and ERROR status for server-side codes) and ends. */
function endingWith<Res>(span: Span, callback: grpc.sendUnaryData<Res>): grpc.sendUnaryData<Res> {
  return (err, value, trailer, flags) => {
    const code = err === null || err === undefined ? grpc.status.OK : (err.code ?? grpc.status.UNKNOWN);
    if (span.isRecording()) {
      span.setAttribute(SEMCONV.RPC_STATUS_CODE, grpcStatusName(code));
      // semconv: for a gRPC server, only these codes are errors (the others are the caller's).
      if (code === grpc.status.UNKNOWN || code === grpc.status.DEADLINE_EXCEEDED || code === grpc.status.UNIMPLEMENTED ||
          code === grpc.status.INTERNAL || code === grpc.status.UNAVAILABLE || code === grpc.status.DATA_LOSS) {
        span.setAttribute(SEMCONV.ERROR_TYPE, grpcStatusName(code));
        span.setStatus({ code: SpanStatusCode.ERROR });
      }
    }
    span.end();
    callback(err, value, trailer, flags);
  };
}

/** An error a handler throws on purpose with a gRPC status (e.g. `NOT_FOUND`). */
export interface GrpcStatusError extends Partial<grpc.StatusObject> {
  code: grpc.status;
}

function isServiceError(err: unknown): err is GrpcStatusError {
  return typeof err === 'object' && err !== null && typeof (err as { code?: unknown }).code === 'number' && !(err instanceof AuthError);
}

/**
 * An error to throw from an authenticated handler to answer with a given gRPC status
 * (not for authentication or authorization failures: throw the core's {@link AuthError}).
 */
export function grpcError(code: grpc.status, details: string): Error & GrpcStatusError {
  return Object.assign(new Error(details), { code, details });
}
