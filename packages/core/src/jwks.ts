/**
 * Signing keys from a JWK Set (RFC 7517 §5): a local set (the issuer, tests) or a remote
 * `/.well-known/jwks.json` with a cache, a single-flight refetch on an unknown `kid`, a cooldown
 * between fetches, and "keep the last good set" when the endpoint is down.
 *
 * Keys are found only by the token's `kid` and `alg`. The header parameters `jwk`, `jku`,
 * `x5u` and `x5c` are never read (RFC 8725 §3.10): a token cannot bring its own key.
 *
 * jose's `createRemoteJWKSet` is not used as-is: once its cache is older than `cacheMaxAge`
 * it refetches on every lookup and throws for known keys when the endpoint is down.
 */
import { KeyObject } from 'node:crypto';
import { importJWK, type JWK } from 'jose';
import { isSupportedAlgorithm, jwkMatchesAlg, keyObjectMatchesAlg, type JwsAlgorithm } from './algorithms.js';
import { AuthError } from './errors.js';

export type { JWK } from 'jose';

/** A source of verification keys. */
export interface KeySource {
  /**
   * Resolves the public key for a token's protected header.
   *
   * @param header - `kid` and `alg` from the verified-to-be JWS header
   * @returns a node:crypto public `KeyObject` whose type matches `alg`
   * @throws AuthError `token_key_unknown` when no key of this `kid` fits `alg`;
   *   `jwks_unavailable` when the key is unknown and the JWK Set could not be fetched
   */
  getKey(header: { kid: string; alg: string }): Promise<KeyObject>;
}

/** Largest JWK Set document accepted from the network, in bytes. */
const MAX_JWKS_BYTES = 512 * 1024;

/** The public members of a JWK per key type (private members such as `d` are dropped). */
function publicJwk(jwk: JWK): JWK | null {
  switch (jwk.kty) {
    case 'RSA':
      return typeof jwk.n === 'string' && typeof jwk.e === 'string' ? { kty: 'RSA', n: jwk.n, e: jwk.e } : null;
    case 'EC':
      return typeof jwk.crv === 'string' && typeof jwk.x === 'string' && typeof jwk.y === 'string'
        ? { kty: 'EC', crv: jwk.crv, x: jwk.x, y: jwk.y }
        : null;
    case 'OKP':
      return typeof jwk.crv === 'string' && typeof jwk.x === 'string' ? { kty: 'OKP', crv: jwk.crv, x: jwk.x } : null;
    default:
      return null; // `oct` (symmetric) keys and unknown types are never used
  }
}

async function importKey(jwk: JWK, alg: JwsAlgorithm): Promise<KeyObject | null> {
  const pub = publicJwk(jwk);
  if (pub === null) return null;
  try {
    const imported = await importJWK(pub, alg);
    if (imported instanceof Uint8Array) return null;
    const key = KeyObject.from(imported);
    return keyObjectMatchesAlg(key, alg) ? key : null;
  } catch {
    return null; // an unusable entry is skipped, like one that does not exist
  }
}

/**
 * An immutable, indexed JWK Set. Imports each (key, alg) pair at most once.
 * @throws TypeError when the document is not an object with a `keys` array
 */
class KeyIndex {
  private readonly byKid = new Map<string, JWK[]>();
  private readonly imported = new Map<string, Promise<KeyObject | null>>();
  /** Resolved lookups, so the hot path is one Map read. */
  private readonly resolved = new Map<string, KeyObject>();

  constructor(doc: unknown) {
    if (typeof doc !== 'object' || doc === null || !Array.isArray((doc as { keys?: unknown }).keys)) {
      throw new TypeError('a JWK Set must be an object with a "keys" array (RFC 7517 §5)');
    }
    for (const entry of (doc as { keys: unknown[] }).keys) {
      if (typeof entry !== 'object' || entry === null) continue;
      const jwk = entry as JWK;
      if (typeof jwk.kid !== 'string' || jwk.kid === '') continue; // tokens must name a kid
      if (jwk.use !== undefined && jwk.use !== 'sig') continue;
      const list = this.byKid.get(jwk.kid);
      if (list) list.push(jwk);
      else this.byKid.set(jwk.kid, [jwk]);
    }
  }

  /** Number of usable-looking entries (for diagnostics). */
  get size(): number {
    let n = 0;
    for (const list of this.byKid.values()) n += list.length;
    return n;
  }

  /** The first key with this `kid` that fits `alg`, or `undefined`. */
  async find(kid: string, alg: string): Promise<KeyObject | undefined> {
    if (!isSupportedAlgorithm(alg)) return undefined;
    const cacheKey = `${alg}\u0000${kid}`;
    const hit = this.resolved.get(cacheKey);
    if (hit !== undefined) return hit;
    const candidates = this.byKid.get(kid);
    if (candidates === undefined) return undefined;
    for (let i = 0; i < candidates.length; i++) {
      const jwk = candidates[i]!;
      if (!jwkMatchesAlg(jwk, alg)) continue;
      const importKeyId = `${cacheKey}\u0000${i}`;
      let pending = this.imported.get(importKeyId);
      if (pending === undefined) {
        pending = importKey(jwk, alg);
        this.imported.set(importKeyId, pending);
      }
      const key = await pending;
      if (key !== null) {
        this.resolved.set(cacheKey, key);
        return key;
      }
    }
    return undefined;
  }
}

/**
 * A key source over a JWK Set held in memory (the issuer's own keys, tests).
 *
 * Entries without a `kid`, with `use` other than `sig`, with `key_ops` lacking `verify`, of
 * type `oct`, RSA under 2048 bits, or whose type or curve does not fit the token's `alg` are
 * ignored. Private members (`d`, ...) are dropped before import.
 *
 * @param jwks - a JWK Set `{ keys: JWK[] }` (RFC 7517 §5)
 * @returns the source; `update(jwks)` replaces the whole set atomically (key rotation)
 * @throws TypeError when `jwks` is not an object with a `keys` array
 */
export function createLocalKeySource(jwks: { keys: JWK[] }): KeySource & { update(jwks: { keys: JWK[] }): void } {
  let index = new KeyIndex(jwks);
  return {
    async getKey({ kid, alg }) {
      const key = await index.find(kid, alg);
      if (key === undefined) throw new AuthError('token_key_unknown', 'no key with this kid fits this alg');
      return key;
    },
    update(next) {
      index = new KeyIndex(next);
    },
  };
}

/** Options of {@link createRemoteKeySource}. All durations in milliseconds. */
export interface RemoteKeySourceOptions {
  /** The JWK Set URL, e.g. `http://auth:4000/.well-known/jwks.json`. Redirects are refused. */
  url: string | URL;
  /**
   * After this age the set is refreshed in the background on the next lookup; lookups never
   * wait for it and a failed refresh keeps the old set. Default 60_000 (1 min): the issuer's
   * JWKS `Cache-Control: max-age=60`, and shorter than the issuer's KEY_ACTIVATION_DELAY_SEC
   * (150 s) minus its key reload, so a rotated key is held before it signs.
   */
  cacheMaxAgeMs?: number;
  /**
   * Cooldown after a fetch caused by an unknown `kid`, and after any failed fetch. An unknown
   * `kid` inside the cooldown is answered from the current set without a fetch, so random
   * `kid`s cannot cause a fetch storm (at most one such fetch per cooldown). Default 5_000.
   */
  cooldownMs?: number;
  /** Timeout of one fetch (connect + body). Default 2_000. */
  timeoutMs?: number;
  /** Clock in epoch milliseconds, for tests. Default `Date.now`. */
  now?: () => number;
}

/** Defaults of {@link RemoteKeySourceOptions}. */
export const REMOTE_KEY_SOURCE_DEFAULTS = Object.freeze({ cacheMaxAgeMs: 60_000, cooldownMs: 5_000, timeoutMs: 2_000 });

/** Diagnostics of a remote key source. */
export interface RemoteKeySourceStats {
  /** Fetches started (successful or not). */
  readonly fetches: number;
  /** Epoch ms of the last successful fetch, or `null`. */
  readonly lastSuccessAt: number | null;
  /** Whether the most recent fetch failed. */
  readonly lastFetchFailed: boolean;
}

/**
 * A key source backed by a remote JWK Set, for every verifier that is not the issuer.
 *
 * - The first lookup fetches the set. Concurrent lookups share one fetch (single-flight).
 * - A known `kid` is answered from the cache, however old; a set older than `cacheMaxAgeMs`
 *   is refreshed in the background (outside a cooldown).
 * - An unknown `kid` triggers one refetch, unless such a refetch (or a failed fetch) ran less
 *   than `cooldownMs` ago; lookups arriving while a fetch is in flight wait for that fetch.
 *   The first load and background refreshes do not open a cooldown, so a key rotated right
 *   after start-up is still picked up at once.
 * - A failed fetch (network error, timeout, non-2xx, not a JWK Set) keeps the last good set,
 *   so known keys keep working while the endpoint is down. A successful fetch replaces the
 *   set, so a key removed by the issuer stops verifying.
 *
 * Errors of `getKey`: `token_key_unknown` when the `kid` is absent from a set fetched
 * successfully; `jwks_unavailable` when it is absent and the last fetch failed (or none ever
 * succeeded): the decision cannot be made, so it fails closed (503).
 *
 * @param opts - see {@link RemoteKeySourceOptions}
 * @returns the key source, plus `stats()` (fetch count, last success) for metrics and tests
 * @throws TypeError for a non-http(s) URL; RangeError for a negative duration
 */
export function createRemoteKeySource(opts: RemoteKeySourceOptions): KeySource & { stats(): RemoteKeySourceStats } {
  const url = new URL(opts.url);
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new TypeError(`JWKS url must be http(s): ${url.href}`);
  const cacheMaxAgeMs = opts.cacheMaxAgeMs ?? REMOTE_KEY_SOURCE_DEFAULTS.cacheMaxAgeMs;
  const cooldownMs = opts.cooldownMs ?? REMOTE_KEY_SOURCE_DEFAULTS.cooldownMs;
  const timeoutMs = opts.timeoutMs ?? REMOTE_KEY_SOURCE_DEFAULTS.timeoutMs;
  const now = opts.now ?? Date.now;
  for (const [name, v] of [['cacheMaxAgeMs', cacheMaxAgeMs], ['cooldownMs', cooldownMs], ['timeoutMs', timeoutMs]] as const) {
    if (!Number.isFinite(v) || v < 0) throw new RangeError(`${name} must be a finite number >= 0 (milliseconds)`);
  }

  let index: KeyIndex | null = null;
  let fetchedAt = 0;
  /** Start of the current cooldown: the last fetch caused by an unknown kid, or the last failure. */
  let cooldownFrom = Number.NEGATIVE_INFINITY;
  let lastFailed = false;
  let lastError: unknown;
  let fetches = 0;
  let inflight: Promise<void> | null = null;

  async function download(): Promise<KeyIndex> {
    const res = await fetch(url, {
      redirect: 'error',
      headers: { accept: 'application/jwk-set+json, application/json' },
      signal: AbortSignal.timeout(timeoutMs),
    });
    if (!res.ok) {
      await res.body?.cancel().catch(() => undefined);
      throw new Error(`JWKS endpoint answered HTTP ${res.status}`);
    }
    const length = Number(res.headers.get('content-length') ?? '0');
    if (length > MAX_JWKS_BYTES) {
      await res.body?.cancel().catch(() => undefined);
      throw new Error('JWKS document too large');
    }
    const body = await res.arrayBuffer();
    if (body.byteLength > MAX_JWKS_BYTES) throw new Error('JWKS document too large');
    return new KeyIndex(JSON.parse(Buffer.from(body).toString('utf8')));
  }

  /** Starts a fetch unless one is in flight (single-flight). */
  function refresh(startsCooldown: boolean): Promise<void> {
    if (inflight !== null) return inflight;
    if (startsCooldown) cooldownFrom = now();
    fetches++;
    inflight = download()
      .then(
        (next) => {
          index = next;
          fetchedAt = now();
          lastFailed = false;
          lastError = undefined;
        },
        (err: unknown) => {
          lastFailed = true;
          lastError = err;
          cooldownFrom = now();
        },
      )
      .finally(() => {
        inflight = null;
      });
    return inflight;
  }

  const coolingDown = (): boolean => now() - cooldownFrom < cooldownMs;

  return {
    async getKey({ kid, alg }) {
      if (index !== null) {
        const key = await index.find(kid, alg);
        if (key !== undefined) {
          if (inflight === null && now() - fetchedAt >= cacheMaxAgeMs && !coolingDown()) void refresh(false);
          return key;
        }
      }
      if (inflight !== null) await inflight;
      else if (!coolingDown()) await refresh(index !== null);
      const current: KeyIndex | null = index;
      if (current !== null) {
        const key = await current.find(kid, alg);
        if (key !== undefined) return key;
      }
      if (current === null || lastFailed) {
        throw new AuthError('jwks_unavailable', 'the JWK Set could not be fetched', { cause: lastError });
      }
      throw new AuthError('token_key_unknown', 'no key with this kid fits this alg');
    },
    stats() {
      return { fetches, lastSuccessAt: index === null ? null : fetchedAt, lastFetchFailed: lastFailed };
    },
  };
}
