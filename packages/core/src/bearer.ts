/**
 * Bearer credential extraction from the `Authorization` request header (RFC 6750 §2.1).
 *
 * Only the header is read. RFC 6750 §2.2 (form body) and §2.3 (URI query parameter) are not
 * supported on purpose: a token in a query string leaks into logs and `Referer` headers.
 */
import { AuthError } from './errors.js';
import type { AuthRequest } from './types.js';

/**
 * `b64token` from RFC 6750 §2.1: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
 * A compact JWS (base64url segments joined by `.`) always matches it.
 */
const B64TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/;

/** `Bearer` followed by one or more spaces (the scheme name is case-insensitive, RFC 9110 §11.1). */
const BEARER_PREFIX = /^bearer(?: +|$)/i;

/** Any auth-scheme token followed by whitespace or the end of the value. */
const SCHEME = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+)(?:[ \t]|$)/;

/** Strips leading and trailing SP / HTAB (without a regex scan over the whole token). */
function trimOws(v: string): string {
  let start = 0;
  let end = v.length;
  while (start < end && (v.charCodeAt(start) === 32 || v.charCodeAt(start) === 9)) start++;
  while (end > start && (v.charCodeAt(end - 1) === 32 || v.charCodeAt(end - 1) === 9)) end--;
  return start === 0 && end === v.length ? v : v.slice(start, end);
}

/**
 * Extracts the one Bearer token from the `Authorization` header.
 *
 * @param headers - request headers with lower-case names; a value is an array when the header
 *   was sent more than once (Node's `IncomingMessage.headers` joins most duplicates, but adapters
 *   such as the ext_authz server and Fastify pass them as arrays or comma-joined strings).
 * @returns the credential (for a JWT, the compact serialization), without the scheme
 * @throws AuthError
 *   - `credentials_missing`: no `Authorization` header, an empty one, or a scheme other than
 *     `Bearer` (RFC 6750 §3.1: answer with a bare `Bearer` challenge)
 *   - `credentials_multiple`: two `Authorization` headers, or a Bearer credential in a
 *     comma-joined value (`Bearer a, Bearer b`, `Basic x, Bearer y`)
 *   - `credentials_malformed`: `Bearer` with an empty credential, whitespace inside it, a
 *     separator other than spaces, or characters outside `b64token`
 */
export function extractBearer(headers: AuthRequest['headers']): string {
  let value = headers['authorization'];
  if (value === undefined) throw new AuthError('credentials_missing');
  if (typeof value !== 'string') {
    if (value.length > 1) throw new AuthError('credentials_multiple', 'more than one Authorization header');
    value = value[0];
    if (value === undefined) throw new AuthError('credentials_missing');
  }
  // Optional whitespace around a field value is not part of it (RFC 9110 §5.5); gRPC
  // CheckRequest headers are not trimmed by anyone before us.
  value = trimOws(value);
  if (value === '') throw new AuthError('credentials_missing', 'empty Authorization header');

  if (value.includes(',')) {
    // Two credentials joined into one field value. A single non-Bearer credential may itself
    // contain commas (Digest auth-params); that is still "no Bearer credentials".
    const parts = value.split(',');
    if (parts.some((p) => BEARER_PREFIX.test(p.replace(/^[ \t]+/, '')))) {
      throw new AuthError('credentials_multiple', 'comma-joined Authorization values');
    }
    throw new AuthError('credentials_missing', 'no Bearer credentials');
  }

  const scheme = SCHEME.exec(value);
  if (scheme === null || scheme[1]!.toLowerCase() !== 'bearer') {
    throw new AuthError('credentials_missing', 'no Bearer credentials');
  }
  const rest = value.slice(scheme[1]!.length);
  // RFC 6750 §2.1: `"Bearer" 1*SP b64token`: spaces only, at least one.
  const sep = /^ +/.exec(rest);
  if (sep === null) throw new AuthError('credentials_malformed', 'missing Bearer credential');
  const credential = rest.slice(sep[0].length);
  if (!B64TOKEN.test(credential)) throw new AuthError('credentials_malformed', 'the Bearer credential is not a b64token');
  return credential;
}
