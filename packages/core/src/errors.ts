/**
 * The one set of authentication / authorization error codes, the one error class that carries
 * them, and the one table that maps each code to an HTTP status, a gRPC status and the RFC 6750
 * `error=` value. Nothing else in the project picks a status (CONTRIBUTING.md, "One table from error to status").
 *
 * Upstream: RFC 6750 §3 and §3.1 (Bearer challenges and error codes), RFC 6749 §5.2,
 * google.rpc.Code (gRPC status numbers), Envoy ext_authz `DeniedHttpResponse`.
 */

/**
 * Every reason a request can be refused. Stable strings: they appear in metrics labels,
 * logs, JSON error bodies (`error_description` is separate) and tests.
 *
 * - `credentials_missing`: no `Authorization` header, or one with a scheme other than Bearer
 *   (RFC 6750 §3.1: no error code, bare `Bearer` challenge).
 * - `credentials_multiple`: more than one credential (two `Authorization` headers, or values
 *   joined by a comma).
 * - `credentials_malformed`: `Bearer` with an empty or non-token68 credential.
 * - `token_too_large`: the token is over the size cap; rejected before decoding.
 * - `token_malformed`: not a JWS compact serialization with a JSON header and payload.
 * - `token_alg_not_allowed`: `alg` outside the asymmetric allowlist (`none`, HS*, ...).
 * - `token_typ_invalid`: header `typ` is not `at+jwt` (RFC 9068 §2.1); also a refresh token
 *   or ID token presented as an access token.
 * - `token_key_unknown`: no key with this `kid` (and `alg`) in the JWK Set after the allowed
 *   refetch. Header `jwk`, `jku`, `x5u`, `x5c` are never used to find a key.
 * - `token_signature_invalid`: the signature does not verify.
 * - `token_claims_invalid`: a required claim is missing or of the wrong type
 *   (`exp`/`iat`/`nbf` not finite integers in seconds, `sub`/`jti` not non-empty strings, ...).
 * - `token_expired`: `exp` is past, beyond the clock tolerance.
 * - `token_not_yet_valid`: `nbf` (or `iat`) is in the future, beyond the clock tolerance.
 * - `token_issuer_invalid`: `iss` is not the configured issuer.
 * - `token_audience_invalid`: `aud` missing, or does not contain the configured audience.
 * - `token_lifetime_exceeded`: `exp - iat` is longer than the configured access-token lifetime.
 * - `token_revoked`: the `jti`, the `sid` (refresh-token family) or every token of the `sub`
 *   issued before a time has been revoked.
 * - `insufficient_scope`: the token is valid but lacks a scope / role the route needs.
 * - `route_denied`: no policy rule matches this method and path and the policy's default is
 *   to deny (authenticated or not).
 * - `jwks_unavailable`: the key for this `kid` is not known and the JWK Set could not be
 *   fetched; the decision cannot be made, so it fails closed.
 * - `revocation_unavailable`: the revocation store could not be read and the configured
 *   behaviour is fail-closed (the default).
 * - `deadline_exceeded`: the verifier's own deadline passed before a decision.
 * - `internal`: any other failure inside the verifier; always a deny.
 */
export type AuthErrorCode =
  | 'credentials_missing'
  | 'credentials_multiple'
  | 'credentials_malformed'
  | 'token_too_large'
  | 'token_malformed'
  | 'token_alg_not_allowed'
  | 'token_typ_invalid'
  | 'token_key_unknown'
  | 'token_signature_invalid'
  | 'token_claims_invalid'
  | 'token_expired'
  | 'token_not_yet_valid'
  | 'token_issuer_invalid'
  | 'token_audience_invalid'
  | 'token_lifetime_exceeded'
  | 'token_revoked'
  | 'insufficient_scope'
  | 'route_denied'
  | 'jwks_unavailable'
  | 'revocation_unavailable'
  | 'deadline_exceeded'
  | 'internal';

/** RFC 6750 §3.1 error codes. */
export type BearerErrorCode = 'invalid_request' | 'invalid_token' | 'insufficient_scope';

/** google.rpc.Code numbers used in ext_authz `CheckResponse.status`. */
export const GrpcCode = {
  OK: 0,
  INVALID_ARGUMENT: 3,
  PERMISSION_DENIED: 7,
  UNAVAILABLE: 14,
  UNAUTHENTICATED: 16,
} as const;
export type GrpcCodeNumber = (typeof GrpcCode)[keyof typeof GrpcCode];

/** One row of the mapping table. */
export interface ErrorMapping {
  /** HTTP status sent to the client (Envoy `DeniedHttpResponse.status`, Fastify reply code). */
  readonly httpStatus: 400 | 401 | 403 | 503;
  /** gRPC status number for `CheckResponse.status.code`. */
  readonly grpcCode: GrpcCodeNumber;
  /**
   * RFC 6750 `error=` value for the `WWW-Authenticate` challenge and the JSON body; `null`
   * means a bare `Bearer` challenge (no credentials were sent) or, for 503, no challenge.
   */
  readonly bearerError: BearerErrorCode | null;
  /** Whether the response carries a `WWW-Authenticate: Bearer ...` challenge. */
  readonly challenge: boolean;
  /** A short, fixed, human-readable description; never contains token material. */
  readonly description: string;
}

const invalidToken = (description: string): ErrorMapping => ({
  httpStatus: 401,
  grpcCode: GrpcCode.UNAUTHENTICATED,
  bearerError: 'invalid_token',
  challenge: true,
  description,
});

const unavailable = (description: string): ErrorMapping => ({
  httpStatus: 503,
  grpcCode: GrpcCode.UNAVAILABLE,
  bearerError: null,
  challenge: false,
  description,
});

/** The one table from error code to statuses. Frozen; exhaustive over {@link AuthErrorCode}. */
export const ERROR_MAP: Readonly<Record<AuthErrorCode, ErrorMapping>> = Object.freeze({
  credentials_missing: {
    httpStatus: 401,
    grpcCode: GrpcCode.UNAUTHENTICATED,
    bearerError: null,
    challenge: true,
    description: 'Bearer credentials are required',
  },
  credentials_multiple: {
    httpStatus: 400,
    grpcCode: GrpcCode.INVALID_ARGUMENT,
    bearerError: 'invalid_request',
    challenge: true,
    description: 'more than one credential was sent',
  },
  credentials_malformed: {
    httpStatus: 400,
    grpcCode: GrpcCode.INVALID_ARGUMENT,
    bearerError: 'invalid_request',
    challenge: true,
    description: 'the Authorization header is malformed',
  },
  token_too_large: invalidToken('the token is too large'),
  token_malformed: invalidToken('the token is not a well-formed JWT'),
  token_alg_not_allowed: invalidToken('the token algorithm is not allowed'),
  token_typ_invalid: invalidToken('the token is not an access token'),
  token_key_unknown: invalidToken('the token signing key is unknown'),
  token_signature_invalid: invalidToken('the token signature is invalid'),
  token_claims_invalid: invalidToken('the token claims are invalid'),
  token_expired: invalidToken('the token has expired'),
  token_not_yet_valid: invalidToken('the token is not yet valid'),
  token_issuer_invalid: invalidToken('the token issuer is not accepted'),
  token_audience_invalid: invalidToken('the token audience is not accepted'),
  token_lifetime_exceeded: invalidToken('the token lifetime is too long'),
  token_revoked: invalidToken('the token has been revoked'),
  insufficient_scope: {
    httpStatus: 403,
    grpcCode: GrpcCode.PERMISSION_DENIED,
    bearerError: 'insufficient_scope',
    challenge: true,
    description: 'the token lacks a scope or role this route requires',
  },
  route_denied: {
    httpStatus: 403,
    grpcCode: GrpcCode.PERMISSION_DENIED,
    bearerError: null,
    challenge: false,
    description: 'no policy rule allows this route',
  },
  jwks_unavailable: unavailable('signing keys are temporarily unavailable'),
  revocation_unavailable: unavailable('revocation status is temporarily unavailable'),
  deadline_exceeded: unavailable('the authorization decision timed out'),
  internal: unavailable('the authorization decision could not be made'),
});

/**
 * The one error class of the core. `code` is stable; `name` is the class name; `cause` is
 * passed through (e.g. the jose or ioredis error) and is never shown to clients.
 *
 * Extra fields: `requiredScopes` for `insufficient_scope` (RFC 6750 §3 `scope=` attribute).
 */
export class AuthError extends Error {
  readonly code: AuthErrorCode;
  readonly requiredScopes: readonly string[] | undefined;

  /**
   * @param code - one of {@link AuthErrorCode}
   * @param message - internal detail for logs (defaults to the table's description); never
   *   include token material
   * @param options - `cause` (any), `requiredScopes` (for `insufficient_scope`)
   */
  constructor(
    code: AuthErrorCode,
    message?: string,
    options?: { cause?: unknown; requiredScopes?: readonly string[] },
  ) {
    super(message ?? ERROR_MAP[code].description, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.requiredScopes = options?.requiredScopes;
  }
}

/** Type guard: true when `err` is an {@link AuthError}. */
export function isAuthError(err: unknown): err is AuthError {
  return err instanceof AuthError;
}

/**
 * A denial in transport-neutral form: what an HTTP server or the ext_authz server sends.
 * `headers` keys are lower-case. `body` is the small JSON error body
 * (`{ error, error_description }`, RFC 6749 §5.2 / RFC 6750 §3 style).
 */
export interface Denial {
  readonly code: AuthErrorCode;
  readonly httpStatus: ErrorMapping['httpStatus'];
  readonly grpcCode: GrpcCodeNumber;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: { readonly error: string; readonly error_description: string };
}

/** Body `error` for rows with no RFC 6750 code. */
const FALLBACK_BODY_ERROR = { 400: 'invalid_request', 401: 'unauthorized', 403: 'access_denied', 503: 'temporarily_unavailable' } as const;

/**
 * Escapes a value for an RFC 7235 quoted-string (auth-param value).
 * Only `"` and `\` need escaping; control characters are removed.
 */
function quote(value: string): string {
  // eslint-disable-next-line no-control-regex
  return `"${value.replace(/[\u0000-\u001f\u007f]/g, '').replace(/["\\]/g, (c) => `\\${c}`)}"`;
}

/**
 * Builds the `WWW-Authenticate` header value for an error (RFC 6750 §3).
 * `credentials_missing` gives `Bearer realm="..."` with no error attributes (§3.1).
 *
 * @param err - the error (its `code`, and `requiredScopes` for `insufficient_scope`)
 * @param realm - optional `realm` auth-param
 * @returns the header value, or `null` when the code carries no challenge
 */
export function bearerChallenge(err: AuthError, realm?: string): string | null {
  const row = ERROR_MAP[err.code];
  if (!row.challenge) return null;
  const params: string[] = [];
  if (realm) params.push(`realm=${quote(realm)}`);
  if (row.bearerError) {
    params.push(`error=${quote(row.bearerError)}`);
    params.push(`error_description=${quote(row.description)}`);
    if (err.code === 'insufficient_scope' && err.requiredScopes && err.requiredScopes.length > 0) {
      params.push(`scope=${quote(err.requiredScopes.join(' '))}`);
    }
  }
  return params.length === 0 ? 'Bearer' : `Bearer ${params.join(', ')}`;
}

/**
 * Maps any thrown value to a {@link Denial}. A non-{@link AuthError} becomes `internal` (503):
 * an unknown failure is always a deny, never an allow and never a 500.
 *
 * @param err - anything caught
 * @param realm - optional `realm` for the challenge
 */
export function toDenial(err: unknown, realm?: string): Denial {
  const authErr = isAuthError(err) ? err : new AuthError('internal', undefined, { cause: err });
  const row = ERROR_MAP[authErr.code];
  const headers: Record<string, string> = { 'content-type': 'application/json', 'cache-control': 'no-store' };
  const challenge = bearerChallenge(authErr, realm);
  if (challenge !== null) headers['www-authenticate'] = challenge;
  if (row.httpStatus === 503) headers['retry-after'] = '1';
  return Object.freeze({
    code: authErr.code,
    httpStatus: row.httpStatus,
    grpcCode: row.grpcCode,
    headers: Object.freeze(headers),
    body: Object.freeze({
      error: row.bearerError ?? FALLBACK_BODY_ERROR[row.httpStatus],
      error_description: row.description,
    }),
  });
}
