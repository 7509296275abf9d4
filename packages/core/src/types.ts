/**
 * Transport-neutral shapes shared by every verifier (the ext_authz server, the Fastify plugin,
 * the gRPC service interceptor) and the issuer. No `@grpc/*` or `fastify` imports here or
 * anywhere in this package (CONTRIBUTING.md, "A pure core, thin adapters").
 */
import type { AuthError } from './errors.js';

/**
 * A plain request as seen by a verifier.
 *
 * - `method`: upper-case HTTP method (`GET`, `POST`, ...).
 * - `path`: the request path, without the query string (adapters strip it; the core strips it
 *   again defensively). Already normalised by Envoy at the edge.
 * - `headers`: lower-case names. A value is an array when the header was sent more than once.
 *   Only headers are read: a token in a query string or a body is never read (RFC 6750 §2.3 is
 *   not supported on purpose).
 */
export interface AuthRequest {
  readonly method: string;
  readonly path: string;
  readonly headers: Readonly<Record<string, string | readonly string[] | undefined>>;
}

/** Access-token claims after verification (RFC 9068 §2.2). Times are epoch seconds. */
export interface AccessTokenClaims {
  readonly iss: string;
  readonly sub: string;
  readonly aud: string | readonly string[];
  readonly exp: number;
  readonly iat: number;
  readonly nbf?: number;
  readonly jti: string;
  readonly client_id?: string;
  /** Space-separated scopes (RFC 9068 §2.2.3). */
  readonly scope?: string;
  /** Session id = refresh-token family id. */
  readonly sid?: string;
  /** Role names (RFC 9068 §2.2.3.1 / RFC 7643 `roles`). */
  readonly roles?: readonly string[];
  readonly [claim: string]: unknown;
}

/** A token that passed signature and claims checks (not yet revocation). */
export interface VerifiedToken {
  /** The exact compact JWT that was verified. */
  readonly token: string;
  /** Protected header fields that were checked. */
  readonly header: { readonly alg: string; readonly kid: string; readonly typ: string };
  readonly claims: AccessTokenClaims;
}

/**
 * The verified identity put on a request after every check passed. Derived only from the
 * verified token, never from identity headers.
 */
export interface Identity {
  readonly sub: string;
  readonly jti: string;
  readonly sid: string | undefined;
  readonly clientId: string | undefined;
  readonly scopes: readonly string[];
  readonly roles: readonly string[];
  /** Expiry, epoch seconds. */
  readonly exp: number;
  /** Issued-at, epoch seconds. */
  readonly iat: number;
  readonly claims: AccessTokenClaims;
}

/** Per-route requirements (from the policy file, or from a Fastify route option). */
export interface RouteRequirement {
  /** No token needed at all (login, token, JWKS, health). */
  readonly public?: boolean;
  /** Every one of these scopes must be present in the token's `scope`. */
  readonly scopes?: readonly string[];
  /** At least one of these roles must be present in the token's `roles`. */
  readonly anyRole?: readonly string[];
}

/**
 * The outcome of checking one request. Never thrown: an `allow: false` carries the
 * {@link AuthError} whose code picks every status through `ERROR_MAP`.
 */
export type Decision =
  | {
      readonly allow: true;
      /** `null` on a public route that was reached without a token. */
      readonly identity: Identity | null;
      /** The matched policy rule id, when a policy was consulted. */
      readonly rule?: string;
    }
  | {
      readonly allow: false;
      readonly error: AuthError;
      readonly rule?: string;
    };

/** What to revoke. Times are epoch seconds. */
export type RevocationTarget =
  /** One access token by `jti`. */
  | { readonly kind: 'jti'; readonly id: string }
  /** A session: every access token carrying this `sid` (refresh-token family). */
  | { readonly kind: 'sid'; readonly id: string }
  /** Every token of a user (`sub`) issued before `before` (epoch seconds). */
  | { readonly kind: 'sub'; readonly id: string; readonly before: number };

/**
 * Read side of revocation, used on every request by every verifier.
 *
 * @throws AuthError `revocation_unavailable` when the store cannot answer and the configured
 *   mode is fail-closed (the default). Never resolves "not revoked" on error in that mode.
 */
export interface RevocationChecker {
  /**
   * Resolves `null` when the token may be used, or the {@link RevocationTarget} kind that
   * revoked it.
   * @param token - `jti`, `sid` (may be undefined), `sub`, and `iat` in epoch seconds.
   */
  check(token: {
    readonly jti: string;
    readonly sid: string | undefined;
    readonly sub: string;
    readonly iat: number;
  }): Promise<'jti' | 'sid' | 'sub' | null>;
}

/**
 * Write side of revocation, used by the issuer after it has written its database (the source
 * of truth): sets the Redis entry with a TTL and publishes the invalidation message.
 */
export interface RevocationPublisher {
  /**
   * @param target - what to revoke
   * @param expiresAt - epoch seconds after which no token this entry covers can still be valid
   *   (the Redis TTL is at least `expiresAt - now`, never shorter than the token's remaining
   *   lifetime)
   * @throws Error from the Redis client when Redis cannot be written (the caller decides)
   */
  revoke(target: RevocationTarget, expiresAt: number): Promise<void>;
  /**
   * Optional: runs a full re-publication (`publishAll` writes every live revocation through
   * `revoke`) and then records that the store is complete, so that verifiers which require it
   * trust the store again. The Redis store implements it with its sync marker
   * (`RedisRevocation.resync`).
   * @throws whatever `publishAll` throws, or the store's error; nothing is recorded then
   */
  resync?<T>(publishAll: () => Promise<T>): Promise<T>;
  /**
   * Optional: whether the store is still marked complete (see `resync`); the issuer polls it to
   * re-sync at once when the mark is gone (a flushed or replaced store).
   * @throws the store's error when it cannot be read
   */
  checkSynced?(): Promise<boolean>;
}
