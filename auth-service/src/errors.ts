/**
 * The auth service's one table from error code to HTTP status (CONTRIBUTING.md, "One table from error to status"). Bearer-token
 * failures (logout, introspection credentials) go through the core's `toDenial` instead; every
 * other failure is an {@link OAuthError} with a code from this table.
 *
 * Codes follow RFC 6749 §5.2 (token endpoint), RFC 7009 §2.2.1 (revocation) and §4.1.2.1
 * (`temporarily_unavailable`); `username_taken` and `too_many_requests` are this service's own.
 */
import { Prisma } from './generated/prisma/client.js';

/** Every error code this service answers with in a JSON body `{ error, error_description }`. */
export type OAuthErrorCode =
  /** a required parameter is missing, repeated, of the wrong type or too long; a malformed body */
  | 'invalid_request'
  /** wrong username/password; an unknown, expired, revoked or reused refresh token (RFC 6749 §5.2) */
  | 'invalid_grant'
  /** `grant_type` other than `refresh_token` / `password` */
  | 'unsupported_grant_type'
  /** a requested scope the user (or the refresh-token family) does not hold */
  | 'invalid_scope'
  /** `client_id` does not match the one the refresh token was issued to */
  | 'invalid_client'
  /** RFC 7009 §2.2.1: revocation of this token type is not supported */
  | 'unsupported_token_type'
  /** registration of a username that exists */
  | 'username_taken'
  /** a rate limit was hit; `Retry-After` says when to try again */
  | 'too_many_requests'
  /** the database or Redis cannot be reached, or an unexpected failure; retry later */
  | 'temporarily_unavailable';

/** HTTP status per code. */
export const OAUTH_ERROR_STATUS: Readonly<Record<OAuthErrorCode, 400 | 401 | 409 | 429 | 503>> = Object.freeze({
  invalid_request: 400,
  invalid_grant: 400,
  unsupported_grant_type: 400,
  invalid_scope: 400,
  invalid_client: 401,
  unsupported_token_type: 400,
  username_taken: 409,
  too_many_requests: 429,
  temporarily_unavailable: 503,
});

/**
 * An error answered to the client as `{ error: code, error_description }` with the status from
 * {@link OAUTH_ERROR_STATUS}. `description` is shown to the client: never put token material,
 * passwords or internal details in it. `cause` is logged, never shown.
 */
export class OAuthError extends Error {
  readonly code: OAuthErrorCode;
  readonly description: string;
  /** Seconds, for `Retry-After` (429, 503). */
  readonly retryAfterSec: number | undefined;

  constructor(code: OAuthErrorCode, description: string, options?: { cause?: unknown; retryAfterSec?: number }) {
    super(`${code}: ${description}`, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.description = description;
    this.retryAfterSec = options?.retryAfterSec ?? (code === 'temporarily_unavailable' ? 1 : undefined);
  }

  get status(): number {
    return OAUTH_ERROR_STATUS[this.code];
  }

  get body(): { error: OAuthErrorCode; error_description: string } {
    return { error: this.code, error_description: this.description };
  }
}

/** Prisma error codes that mean "the database cannot serve requests now" (not a bad query). */
const UNAVAILABLE_CODES = new Set(['P1001', 'P1002', 'P1003', 'P1008', 'P1010', 'P1011', 'P1017', 'P2024', 'P2028']);
/** Driver-adapter error kinds with the same meaning. */
const UNAVAILABLE_KINDS = new Set([
  'DatabaseNotReachable',
  'DatabaseDoesNotExist',
  'DatabaseAccessDenied',
  'AuthenticationFailed',
  'ConnectionClosed',
  'SocketTimeout',
  'TooManyConnections',
  'TransactionAlreadyClosed',
  'TlsConnectionError',
]);

/**
 * Classifies an error thrown by Prisma. Returns a client-facing description when the database
 * is unavailable (unreachable, missing, not migrated, pool exhausted, ...), else `null`.
 */
export function databaseUnavailable(err: unknown): string | null {
  if (err instanceof Prisma.PrismaClientInitializationError) return 'the database cannot be reached';
  if (err instanceof Prisma.PrismaClientKnownRequestError) {
    if (err.code === 'P2021' || err.code === 'P2022') return 'the database schema is not migrated (run `make migrate`)';
    if (UNAVAILABLE_CODES.has(err.code)) return 'the database cannot be reached';
    const kind = (err.meta?.['driverAdapterError'] as { cause?: { kind?: string } } | undefined)?.cause?.kind;
    if (kind && UNAVAILABLE_KINDS.has(kind)) return 'the database cannot be reached';
  }
  if (err instanceof Error && err.name === 'DriverAdapterError') {
    const kind = (err.cause as { kind?: string } | undefined)?.kind;
    if (kind && UNAVAILABLE_KINDS.has(kind)) return 'the database cannot be reached';
  }
  return null;
}

/** True for a unique-constraint violation (Prisma P2002). */
export function isUniqueViolation(err: unknown): boolean {
  return err instanceof Prisma.PrismaClientKnownRequestError && err.code === 'P2002';
}

/** True when an ioredis command failed because Redis cannot be reached (by error name/code). */
export function redisUnavailable(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const code = (err as NodeJS.ErrnoException).code ?? '';
  return err.name === 'MaxRetriesPerRequestError' || /^(?:ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE|ENOTFOUND|EHOSTUNREACH)$/.test(code);
}
