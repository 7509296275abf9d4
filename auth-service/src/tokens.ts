/**
 * Token material: opaque refresh tokens (stored only as a SHA-256 hash), the sealed successor
 * used for concurrent refreshes, and RFC 9068 access-token claims.
 */
import { createCipheriv, createDecipheriv, createHash, hkdfSync, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import type { JWTPayload } from 'jose';

/** 32 random bytes, base64url (43 characters, 256 bits of entropy). */
export function newRefreshToken(): string {
  return randomBytes(32).toString('base64url');
}

/** The shape of a refresh token this service issues (checked before any database lookup). */
export const REFRESH_TOKEN_PATTERN = /^[A-Za-z0-9_-]{43}$/;

/** Hex SHA-256 of a refresh token: the only form stored. */
export function hashRefreshToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

/** Constant-time comparison of two hex digests of equal length. */
export function sameHash(a: string, b: string): boolean {
  const x = Buffer.from(a, 'hex');
  const y = Buffer.from(b, 'hex');
  return x.length === y.length && x.length > 0 && timingSafeEqual(x, y);
}

const SEAL_INFO = 'jwt-mesh refresh-token successor v1';

/** AES-256-GCM key derived (HKDF-SHA256) from a refresh token's plaintext. */
function sealKey(token: string): Buffer {
  return Buffer.from(hkdfSync('sha256', Buffer.from(token, 'utf8'), Buffer.alloc(0), SEAL_INFO, 32));
}

/**
 * Encrypts `successor` under a key derived from `token` (the token being rotated). The server
 * stores only the hash of `token`, so neither a database reader nor the server can open the
 * seal without being handed `token` again: only a holder of the old token gets the successor.
 *
 * @returns base64url(iv(12) || ciphertext || tag(16))
 */
export function sealSuccessor(token: string, successor: string, rowId: string): string {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', sealKey(token), iv);
  cipher.setAAD(Buffer.from(rowId, 'utf8'));
  const ct = Buffer.concat([cipher.update(successor, 'utf8'), cipher.final()]);
  return Buffer.concat([iv, ct, cipher.getAuthTag()]).toString('base64url');
}

/** Opens a seal from {@link sealSuccessor}; `null` when it does not open with this token. */
export function openSuccessor(token: string, sealed: string, rowId: string): string | null {
  try {
    const raw = Buffer.from(sealed, 'base64url');
    if (raw.length < 12 + 16 + 1) return null;
    const decipher = createDecipheriv('aes-256-gcm', sealKey(token), raw.subarray(0, 12));
    decipher.setAAD(Buffer.from(rowId, 'utf8'));
    decipher.setAuthTag(raw.subarray(raw.length - 16));
    return Buffer.concat([decipher.update(raw.subarray(12, raw.length - 16)), decipher.final()]).toString('utf8');
  } catch {
    return null;
  }
}

/** Inputs of {@link accessTokenClaims}. Times are epoch seconds. */
export interface AccessTokenInput {
  issuer: string;
  audience: string;
  subject: string;
  clientId: string;
  scope: readonly string[];
  roles: readonly string[];
  sid: string;
  iat: number;
  ttlSec: number;
}

/**
 * RFC 9068 §2.2 claims: `iss sub aud exp iat jti client_id scope sid roles`. `jti` is a random
 * UUID. `scope` is space-separated (RFC 8693 §4.2).
 */
export function accessTokenClaims(input: AccessTokenInput): JWTPayload & { jti: string; exp: number } {
  return {
    iss: input.issuer,
    sub: input.subject,
    aud: input.audience,
    iat: input.iat,
    exp: input.iat + input.ttlSec,
    jti: randomUUID(),
    client_id: input.clientId,
    scope: input.scope.join(' '),
    sid: input.sid,
    roles: [...input.roles],
  };
}

/** Splits a space-separated scope string (RFC 6749 §3.3) into unique scope tokens. */
export function parseScope(scope: string | undefined | null): string[] {
  return [...new Set((scope ?? '').split(' ').filter(Boolean))];
}
