/**
 * Request bodies of the auth endpoints (zod), JSON or application/x-www-form-urlencoded, and
 * {@link parseBody}, which turns the first bad field into a 400 invalid_request (RFC 6749 §5.2).
 * Descriptions name the field, never echo its value.
 */
import { z } from 'zod';
import { OAuthError } from '../errors.js';

const USERNAME = /^[A-Za-z0-9._-]+$/;
const CLIENT_ID = /^[A-Za-z0-9._:-]{1,128}$/;
const SCOPE = /^[\x21\x23-\x5b\x5d-\x7e]+(?: [\x21\x23-\x5b\x5d-\x7e]+)*$/; // RFC 6749 §3.3

const field = (name: string, min: number, max: number) =>
  z
    .string({ error: (iss) => (iss.input === undefined ? `${name} is required` : `${name} must be a string (given once)`) })
    .min(min, min <= 1 ? `${name} must not be empty` : `${name} must be at least ${min} characters`)
    .max(max, `${name} must be at most ${max} characters`);
const optionalField = (name: string, max: number, pattern: RegExp, what: string) =>
  z
    .string({ error: () => `${name} must be a string (given once)` })
    .max(max, `${name} must be at most ${max} characters`)
    .regex(pattern, `${name} must be ${what}`)
    .optional();

const credentials = {
  username: field('username', 3, 64).regex(USERNAME, 'username must use only A-Z a-z 0-9 . _ -'),
  password: field('password', 8, 256),
};
/** POST /auth/register: `username` (3-64 of A-Z a-z 0-9 . _ -), `password` (8-256 characters). */
export const registerBody = z.object(credentials);
/**
 * POST /auth/login and the password grant (RFC 6749 §4.3): the credentials, optional `scope`
 * (§3.3) and `client_id`.
 */
export const loginBody = z.object({
  ...credentials,
  scope: optionalField('scope', 1024, SCOPE, 'space-separated scope tokens (RFC 6749 §3.3)'),
  client_id: optionalField('client_id', 128, CLIENT_ID, '1-128 of A-Z a-z 0-9 . _ : -'),
});
/** POST /auth/token: `grant_type` (RFC 6749 §4.3, §6), checked before the grant's own body. */
export const grantTypeBody = z.object({ grant_type: field('grant_type', 1, 64) });
/**
 * RFC 6749 §5.2: a refresh_token that is not a live refresh token of ours is `invalid_grant`,
 * whatever its length or shape (a JWT, a random string, a value of kilobytes); only a missing,
 * empty (§3.2: "sent without a value" = omitted) or repeated parameter, or one that is not a
 * string, is `invalid_request`. Its size is bounded by BODY_LIMIT_BYTES, and a value that is not
 * shaped like our tokens is refused before any hashing or database lookup (sessions.ts).
 */
export const refreshBody = z.object({
  refresh_token: z
    .string({ error: (iss) => (iss.input === undefined ? 'refresh_token is required' : 'refresh_token must be a string (given once)') })
    .min(1, 'refresh_token is required'),
  scope: optionalField('scope', 1024, SCOPE, 'space-separated scope tokens (RFC 6749 §3.3)'),
  client_id: optionalField('client_id', 128, CLIENT_ID, '1-128 of A-Z a-z 0-9 . _ : -'),
});
/** POST /auth/revoke (RFC 7009 §2.1) and POST /auth/introspect (RFC 7662 §2.1): `token`, optional `token_type_hint`. */
export const tokenBody = z.object({
  token: field('token', 1, 8192),
  token_type_hint: z.string({ error: () => 'token_type_hint must be a string (given once)' }).max(64).optional(),
});
/** POST /auth/logout: an optional `refresh_token` to revoke with the Bearer token's session. */
export const logoutBody = z.object({ refresh_token: field('refresh_token', 1, 512).optional() });

/**
 * Validates a body (JSON object or form) against a schema.
 * @throws OAuthError invalid_request naming the first bad field
 */
export function parseBody<T extends z.ZodType>(schema: T, body: unknown): z.infer<T> {
  const value = body === undefined || body === null ? {} : body;
  if (typeof value !== 'object' || Array.isArray(value)) {
    throw new OAuthError('invalid_request', 'the body must be a JSON object or application/x-www-form-urlencoded');
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw new OAuthError('invalid_request', parsed.error.issues[0]?.message ?? 'the request is malformed');
  return parsed.data;
}

/** Usernames are case-insensitive: stored and compared in lower case. */
export const normalizeUsername = (u: string): string => u.toLowerCase();
