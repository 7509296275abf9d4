/**
 * Password hashing with node:crypto scrypt (RFC 7914), a memory-hard KDF. The parameters are
 * stored with each hash, so they can be raised later without invalidating existing hashes.
 *
 * Format: `scrypt$<log2 N>$<r>$<p>$<salt b64url>$<hash b64url>`.
 * Default cost: N = 2^15, r = 8, p = 1 (32 MiB, OWASP Password Storage Cheat Sheet minimum is
 * N = 2^17 at 128 MiB for a p = 1 setting; 2^15 is the Node.js/libsodium interactive default and
 * keeps a 2-core machine responsive; raise `SCRYPT_DEFAULTS.log2N` where memory allows).
 */
import { randomBytes, scrypt as scryptCb, timingSafeEqual, type ScryptOptions } from 'node:crypto';

/** scrypt cost parameters. `log2N` is the base-2 logarithm of N (CPU/memory cost). */
export interface ScryptParams {
  readonly log2N: number;
  readonly r: number;
  readonly p: number;
}

export const SCRYPT_DEFAULTS: ScryptParams = Object.freeze({ log2N: 15, r: 8, p: 1 });

const SALT_BYTES = 16;
const KEY_BYTES = 32;

function scrypt(password: string, salt: Buffer, keylen: number, params: ScryptParams): Promise<Buffer> {
  const N = 2 ** params.log2N;
  // 128 * N * r bytes for the main buffer, plus a margin; Node's default maxmem (32 MiB) is too small.
  const options: ScryptOptions = { N, r: params.r, p: params.p, maxmem: 256 * N * params.r + 1024 * 1024 };
  return new Promise((resolve, reject) => {
    scryptCb(password.normalize('NFKC'), salt, keylen, options, (err, key) => (err ? reject(err) : resolve(key)));
  });
}

/**
 * Hashes a password with a fresh random salt.
 * @param password - the plaintext (normalized to NFKC before hashing)
 * @returns the encoded hash (at most ~100 characters)
 */
export async function hashPassword(password: string, params: ScryptParams = SCRYPT_DEFAULTS): Promise<string> {
  const salt = randomBytes(SALT_BYTES);
  const key = await scrypt(password, salt, KEY_BYTES, params);
  return ['scrypt', params.log2N, params.r, params.p, salt.toString('base64url'), key.toString('base64url')].join('$');
}

/** Parses an encoded hash; `null` when it is not one this module wrote. */
function parse(encoded: string): { params: ScryptParams; salt: Buffer; key: Buffer } | null {
  const parts = encoded.split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') return null;
  const [log2N, r, p] = parts.slice(1, 4).map(Number) as [number, number, number];
  if (![log2N, r, p].every(Number.isInteger) || log2N < 10 || log2N > 20 || r < 1 || r > 32 || p < 1 || p > 16) return null;
  const salt = Buffer.from(parts[4]!, 'base64url');
  const key = Buffer.from(parts[5]!, 'base64url');
  if (salt.length < 8 || key.length < 16) return null;
  return { params: { log2N, r, p }, salt, key };
}

/**
 * Checks a password against an encoded hash in constant time (timingSafeEqual).
 * @returns `false` for a wrong password or an unreadable hash; never throws for bad input
 */
export async function verifyPassword(password: string, encoded: string): Promise<boolean> {
  const parsed = parse(encoded);
  if (parsed === null) return false;
  const key = await scrypt(password, parsed.salt, parsed.key.length, parsed.params);
  return key.length === parsed.key.length && timingSafeEqual(key, parsed.key);
}

let dummy: Promise<string> | undefined;
/**
 * Spends the same work as {@link verifyPassword} for a user that does not exist, so a wrong
 * username and a wrong password take similar time. Always resolves `false`.
 */
export async function verifyDummyPassword(password: string, params: ScryptParams = SCRYPT_DEFAULTS): Promise<false> {
  dummy ??= hashPassword('dummy password for unknown users', params);
  await verifyPassword(password, await dummy);
  return false;
}
