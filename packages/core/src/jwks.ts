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
import { KeyObject, X509Certificate } from 'node:crypto';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { isIP } from 'node:net';
import { createSecureContext, type PeerCertificate } from 'node:tls';
import { importJWK, type JWK } from 'jose';
import { isSupportedAlgorithm, jwkMatchesAlg, keyObjectMatchesAlg, type JwsAlgorithm } from './algorithms.js';
import { AuthError } from './errors.js';
import { readConfigFile } from './env.js';

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

/**
 * TLS settings of the JWK Set fetch (the fetch path of the verifiers: the issuer's identity is
 * pinned, so nobody else who can answer on that address can hand out keys).
 * PEM contents, not file names (see {@link readJwksTlsFiles}).
 */
export interface JwksTlsOptions {
  /** CA certificate(s) the JWKS server's chain must end in (the mesh CA). Replaces the system CAs; absent: the system CAs. */
  ca?: string | Buffer;
  /** Client certificate (chain) for mTLS, with {@link JwksTlsOptions.key}. The issuer's sidecar requires one. */
  cert?: string | Buffer;
  /** Private key of {@link JwksTlsOptions.cert}. */
  key?: string | Buffer;
  /**
   * The identity the server's certificate must carry, checked instead of the host name: a URI
   * SAN such as the SPIFFE ID `spiffe://jwt-mesh.local/ns/jwt-mesh/sa/auth` (X.509-SVID), matched
   * exactly. When absent the host name of the URL is checked against the certificate (RFC 6125).
   */
  serverId?: string;
}

/**
 * Why a JWK Set fetch failed (label `reason` of `jwtmesh_jwks_fetch_failures_total`):
 * - `tls`: the TLS handshake failed (certificate from an untrusted CA, expired, no client certificate accepted, ...);
 * - `identity`: the chain was trusted but the certificate is not the issuer's ({@link JwksTlsOptions.serverId}, host name);
 * - `network`: connection refused or reset, DNS;
 * - `timeout`: no complete answer within `timeoutMs`;
 * - `http_status`: an answer other than 2xx (redirects included: they are never followed);
 * - `invalid`: not a JWK Set (not JSON, no `keys` array, larger than 512 KiB).
 */
export type JwksFetchFailureReason = 'tls' | 'identity' | 'network' | 'timeout' | 'http_status' | 'invalid';

/** Every {@link JwksFetchFailureReason}, for metrics that pre-declare their label values. */
export const JWKS_FETCH_FAILURE_REASONS: readonly JwksFetchFailureReason[] = Object.freeze([
  'tls',
  'identity',
  'network',
  'timeout',
  'http_status',
  'invalid',
]);

/** A failed JWK Set fetch; `reason` says which kind (see {@link JwksFetchFailureReason}). */
export class JwksFetchError extends Error {
  readonly reason: JwksFetchFailureReason;
  constructor(reason: JwksFetchFailureReason, message: string, opts?: { cause?: unknown }) {
    super(message, opts?.cause === undefined ? undefined : { cause: opts.cause });
    this.name = new.target.name;
    this.reason = reason;
  }
}

/**
 * Reads the PEM files named by the `JWKS_*_FILE` settings (`VerifierConfig.jwksTls` of
 * `loadVerifierConfig`) into {@link JwksTlsOptions}. Read once at start-up: a renewed
 * certificate takes effect on restart.
 * @param files - `caFile`, `certFile`, `keyFile` (paths), `serverId`; `undefined` gives `undefined`
 * @throws ConfigError naming the variable and file that cannot be read
 */
export function readJwksTlsFiles(
  files: Readonly<{ caFile?: string; certFile?: string; keyFile?: string; serverId?: string }> | undefined,
): JwksTlsOptions | undefined {
  if (files === undefined) return undefined;
  const read = (variable: string, file: string): Buffer => readConfigFile(variable, file);
  return {
    ...(files.caFile !== undefined ? { ca: read('JWKS_CA_FILE', files.caFile) } : {}),
    ...(files.certFile !== undefined ? { cert: read('JWKS_CERT_FILE', files.certFile) } : {}),
    ...(files.keyFile !== undefined ? { key: read('JWKS_KEY_FILE', files.keyFile) } : {}),
    ...(files.serverId !== undefined ? { serverId: files.serverId } : {}),
  };
}

/** Options of {@link createRemoteKeySource}. All durations in milliseconds. */
export interface RemoteKeySourceOptions {
  /**
   * The JWK Set URL, e.g. `https://auth.jwt-mesh.svc.cluster.local:8443/.well-known/jwks.json`.
   * Redirects are refused. Plain `http:` only to a loopback address (`localhost`, 127.0.0.0/8,
   * `::1`): anyone who can answer on a network path could otherwise hand out signing keys.
   */
  url: string | URL;
  /** TLS of the fetch: trusted CA, client certificate, pinned server identity. Needs an `https:` URL. */
  tls?: JwksTlsOptions;
  /**
   * Called once per failed fetch (after the last good set was kept), for a counter and a
   * throttled log line. Must not throw.
   */
  onFetchFailure?: (err: JwksFetchError) => void;
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
  /** Failed fetches by reason. */
  readonly failures: Readonly<Record<JwksFetchFailureReason, number>>;
}

/** True for `localhost` and loopback IP literals. */
function isLoopbackHost(hostname: string): boolean {
  const h = hostname.replace(/^\[|\]$/g, '');
  if (h === 'localhost') return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  if (isIP(h) === 6) return h === '::1';
  return false;
}

/** Node TLS error codes of a handshake whose certificate chain or peer was refused. */
const TLS_ERROR_CODE = /^(ERR_SSL_|ERR_TLS_|UNABLE_TO_|CERT_|DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN|ERR_OSSL_)/;

/** The URI SANs of a peer certificate (`subjectaltname` is `URI:a, DNS:b, ...`). */
function uriSans(cert: PeerCertificate): string[] {
  const out: string[] = [];
  if (cert.raw) {
    // X509Certificate parses the SAN extension properly (a comma inside a URI cannot split it).
    const san = new X509Certificate(cert.raw).subjectAltName ?? '';
    for (const part of san.split(/,\s*(?=[A-Za-z ]+:)/)) if (part.startsWith('URI:')) out.push(part.slice(4));
  }
  return out;
}

/**
 * GETs a JWK Set over http(s) with node:http(s): no redirect followed, `timeoutMs` for connect
 * plus body, at most {@link MAX_JWKS_BYTES}, and with `tls` the chain checked against `tls.ca`
 * only and the server identity against `tls.serverId`.
 * @throws JwksFetchError with its reason
 */
function getJwksDocument(url: URL, tls: JwksTlsOptions | undefined, timeoutMs: number): Promise<unknown> {
  return new Promise((resolveDoc, reject) => {
    let settled = false;
    const fail = (err: JwksFetchError) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      req.destroy();
      reject(err);
    };
    const headers = { accept: 'application/jwk-set+json, application/json' };
    const onResponse = (res: IncomingMessage) => {
      const status = res.statusCode ?? 0;
      if (status < 200 || status > 299) {
        res.resume();
        fail(new JwksFetchError('http_status', `JWKS endpoint answered HTTP ${status}`));
        return;
      }
      if (Number(res.headers['content-length'] ?? '0') > MAX_JWKS_BYTES) {
        fail(new JwksFetchError('invalid', 'JWKS document too large'));
        return;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > MAX_JWKS_BYTES) fail(new JwksFetchError('invalid', 'JWKS document too large'));
        else chunks.push(c);
      });
      res.on('error', (err) => fail(new JwksFetchError('network', 'JWKS response broke off', { cause: err })));
      res.on('end', () => {
        if (settled) return;
        let doc: unknown;
        try {
          doc = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        } catch (err) {
          fail(new JwksFetchError('invalid', 'JWKS document is not JSON', { cause: err }));
          return;
        }
        settled = true;
        clearTimeout(timer);
        resolveDoc(doc);
      });
    };
    const req =
      url.protocol === 'https:'
        ? httpsRequest(
            url,
            {
              method: 'GET',
              headers,
              agent: false,
              ...(tls
                ? {
                    ...(tls.ca !== undefined ? { ca: tls.ca } : {}),
                    ...(tls.cert !== undefined ? { cert: tls.cert } : {}),
                    ...(tls.key !== undefined ? { key: tls.key } : {}),
                    ...(tls.serverId !== undefined
                      ? {
                          // The chain is already verified against `ca` (rejectUnauthorized stays on);
                          // this replaces the host-name check with the pinned identity.
                          checkServerIdentity: (_host: string, cert: PeerCertificate) => {
                            if (uriSans(cert).includes(tls.serverId as string)) return undefined;
                            const err = new Error(`the JWKS server's certificate is not ${tls.serverId}`) as Error & { code: string };
                            err.code = 'ERR_JWKS_SERVER_IDENTITY';
                            return err;
                          },
                        }
                      : {}),
                  }
                : {}),
            },
            onResponse,
          )
        : httpRequest(url, { method: 'GET', headers, agent: false }, onResponse);
    const timer = setTimeout(() => fail(new JwksFetchError('timeout', `no JWK Set within ${timeoutMs} ms`)), timeoutMs);
    timer.unref?.();
    req.on('error', (err: NodeJS.ErrnoException) => {
      const code = err.code ?? '';
      if (code === 'ERR_JWKS_SERVER_IDENTITY' || code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
        fail(new JwksFetchError('identity', err.message, { cause: err }));
      } else if (TLS_ERROR_CODE.test(code)) {
        fail(new JwksFetchError('tls', `TLS handshake with the JWKS server failed (${code || err.message})`, { cause: err }));
      } else {
        fail(new JwksFetchError('network', `cannot reach the JWKS server (${code || err.message})`, { cause: err }));
      }
    });
    req.end();
  });
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
 * - A failed fetch (network error, timeout, non-2xx, not a JWK Set, a TLS peer that is not the
 *   issuer) keeps the last good set, so known keys keep working while the endpoint is down or
 *   impersonated; it is counted by reason in `stats().failures` and reported to `onFetchFailure`. A successful fetch replaces the
 *   set, so a key removed by the issuer stops verifying.
 *
 * Errors of `getKey`: `token_key_unknown` when the `kid` is absent from a set fetched
 * successfully; `jwks_unavailable` when it is absent and the last fetch failed (or none ever
 * succeeded): the decision cannot be made, so it fails closed (503).
 *
 * @param opts - see {@link RemoteKeySourceOptions}
 * @returns the key source, plus `stats()` (fetch count, last success) for metrics and tests
 * @throws TypeError for a non-http(s) URL, plain http to a non-loopback host, TLS settings with
 *   an http URL, a cert without its key, or PEM that is not a usable CA, certificate or key;
 *   RangeError for a negative duration
 */
export function createRemoteKeySource(opts: RemoteKeySourceOptions): KeySource & { stats(): RemoteKeySourceStats } {
  const url = new URL(opts.url);
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new TypeError(`JWKS url must be http(s): ${url.href}`);
  if (url.protocol === 'http:' && !isLoopbackHost(url.hostname)) {
    throw new TypeError(`JWKS url must be https unless it is on loopback (anyone on the path could serve keys): ${url.href}`);
  }
  const tls = opts.tls;
  if (tls !== undefined) {
    if (url.protocol !== 'https:') throw new TypeError(`JWKS TLS settings need an https url: ${url.href}`);
    if ((tls.cert === undefined) !== (tls.key === undefined)) throw new TypeError('JWKS TLS: cert and key go together');
    try {
      // Unusable PEM (not a certificate, a key that does not match) fails here, at start-up, not on every fetch.
      createSecureContext({
        ...(tls.ca !== undefined ? { ca: tls.ca } : {}),
        ...(tls.cert !== undefined ? { cert: tls.cert, key: tls.key } : {}),
      });
    } catch (err) {
      throw new TypeError(`JWKS TLS: unusable certificate or key (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, { cause: err });
    }
  }
  const onFetchFailure = opts.onFetchFailure;
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
  const failures: Record<JwksFetchFailureReason, number> = { tls: 0, identity: 0, network: 0, timeout: 0, http_status: 0, invalid: 0 };
  let inflight: Promise<void> | null = null;

  async function download(): Promise<KeyIndex> {
    const doc = await getJwksDocument(url, tls, timeoutMs);
    try {
      return new KeyIndex(doc);
    } catch (err) {
      throw new JwksFetchError('invalid', (err as Error).message, { cause: err });
    }
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
          const failure = err instanceof JwksFetchError ? err : new JwksFetchError('network', String(err), { cause: err });
          failures[failure.reason]++;
          try {
            onFetchFailure?.(failure);
          } catch {
            // a metrics or logging hook must not break key lookups
          }
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
      return { fetches, lastSuccessAt: index === null ? null : fetchedAt, lastFetchFailed: lastFailed, failures: { ...failures } };
    },
  };
}
