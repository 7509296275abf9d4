/**
 * How a process reaches Redis, and with which Redis ACL user (Redis 6+ `AUTH <username>
 * <password>`): read from the environment by the issuer and by every verifier, in one way.
 *
 * - `REDIS_URL`: `redis://[user:password@]host[:port][/db]`, or `rediss://` for TLS. The URL is
 *   the standard place for the credentials (percent-encoded).
 * - `REDIS_USERNAME` and `REDIS_PASSWORD_FILE`: the same credentials kept out of the URL, e.g. a
 *   Kubernetes Secret mounted as a file. The file holds the password alone (one trailing newline
 *   is ignored). Each may be set only when the URL does not carry that part.
 * - `REDIS_TLS_CA_FILE`: PEM CA certificate(s) that sign the server certificate of a
 *   `rediss://` Redis, instead of Node's default CA store (only with `rediss://`).
 *
 * The password is never part of an error message, and it is a non-enumerable property of the
 * returned object, so a logged or serialized configuration does not contain it.
 */
import { readFileSync } from 'node:fs';
import { ConfigError, readConfigFile } from './env.js';

/** Credentials and TLS trust for a Redis connection, beside its URL. */
export interface RedisConnectionOptions {
  /** ACL user name (`REDIS_USERNAME`); absent: the URL's, else Redis's `default` user. */
  readonly username?: string;
  /** Password (`REDIS_PASSWORD_FILE`); absent: the URL's. Non-enumerable when read from the environment. */
  readonly password?: string;
  /** PEM CA certificate(s) for a `rediss://` server (`REDIS_TLS_CA_FILE`); absent: Node's default CAs. */
  readonly tlsCa?: string;
}

/** The Redis variables of the environment (unset and empty are the same). */
export interface RedisConnectionEnv {
  readonly REDIS_URL?: string | undefined;
  readonly REDIS_USERNAME?: string | undefined;
  readonly REDIS_PASSWORD_FILE?: string | undefined;
  readonly REDIS_TLS_CA_FILE?: string | undefined;
}

/** Largest password file read, bytes (Redis ACL passwords have no limit; a Secret's is far below). */
const MAX_PASSWORD_FILE_BYTES = 4096;

/**
 * Reads and validates the Redis credentials and TLS trust that complete `REDIS_URL` (see the
 * module comment). `REDIS_URL` itself is validated by the caller's schema; this checks how the
 * other variables combine with it.
 *
 * @param env - the variables; `REDIS_URL` must be present (the caller applied its default)
 * @param readFile - reads a file as UTF-8 (tests inject one); default `fs.readFileSync`
 * @returns frozen {@link RedisConnectionOptions}: `{}` when neither variable is set
 * @throws ConfigError naming the variable, e.g. `REDIS_PASSWORD_FILE: cannot read
 *   /run/x (ENOENT)`, `REDIS_USERNAME: REDIS_URL already names a user; set it in one place`,
 *   `REDIS_USERNAME: needs a password (REDIS_PASSWORD_FILE, or in REDIS_URL)`,
 *   `REDIS_TLS_CA_FILE: only with a rediss:// REDIS_URL`. Never the password or the URL.
 */
export function redisConnectionFromEnv(
  env: RedisConnectionEnv,
  readFile: (path: string) => string = (path) => readFileSync(path, 'utf8'),
): RedisConnectionOptions {
  const val = (v: string | undefined) => (v === undefined || v.trim() === '' ? undefined : v.trim());
  const read = (variable: string, path: string): string => readConfigFile(variable, path, readFile);
  let url: URL;
  try {
    url = new URL(val(env.REDIS_URL) ?? '');
  } catch {
    throw new ConfigError('REDIS_URL', 'must be a redis:// or rediss:// URL');
  }
  const username = val(env.REDIS_USERNAME);
  const passwordFile = val(env.REDIS_PASSWORD_FILE);
  const caFile = val(env.REDIS_TLS_CA_FILE);
  const out: { username?: string; tlsCa?: string } = {};
  let password: string | undefined;

  if (username !== undefined) {
    if (url.username !== '') throw new ConfigError('REDIS_USERNAME', 'REDIS_URL already names a user; set it in one place');
    if (!/^[!-~]{1,128}$/.test(username)) throw new ConfigError('REDIS_USERNAME', 'must be 1-128 printable ASCII characters without spaces');
    out.username = username;
  }
  if (passwordFile !== undefined) {
    if (url.password !== '') throw new ConfigError('REDIS_PASSWORD_FILE', 'REDIS_URL already carries a password; set it in one place');
    const text = read('REDIS_PASSWORD_FILE', passwordFile);
    if (Buffer.byteLength(text) > MAX_PASSWORD_FILE_BYTES) throw new ConfigError('REDIS_PASSWORD_FILE', `${passwordFile} is larger than ${MAX_PASSWORD_FILE_BYTES} bytes`);
    password = text.replace(/\r?\n$/, '');
    if (password === '') throw new ConfigError('REDIS_PASSWORD_FILE', `${passwordFile} is empty`);
    if (/[\r\n]/.test(password)) throw new ConfigError('REDIS_PASSWORD_FILE', `${passwordFile} must hold the password alone, on one line`);
  }
  if (username !== undefined && password === undefined && url.password === '') {
    throw new ConfigError('REDIS_USERNAME', 'needs a password (REDIS_PASSWORD_FILE, or in REDIS_URL)');
  }
  if (caFile !== undefined) {
    if (url.protocol !== 'rediss:') throw new ConfigError('REDIS_TLS_CA_FILE', 'only with a rediss:// REDIS_URL');
    const pem = read('REDIS_TLS_CA_FILE', caFile);
    if (!pem.includes('-----BEGIN CERTIFICATE-----')) throw new ConfigError('REDIS_TLS_CA_FILE', `${caFile} holds no PEM certificate`);
    out.tlsCa = pem;
  }
  if (password !== undefined) Object.defineProperty(out, 'password', { value: password, enumerable: false });
  return Object.freeze(out);
}
