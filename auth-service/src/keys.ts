/**
 * Signing keys: the issuer's private keys and the public JWK Set it publishes (RFC 7517), with
 * two-phase rotation by `kid` (RFC 7638 thumbprint) and an overlap window.
 *
 * The database (`signing_keys`) is the source of truth shared by every replica:
 * - the JWKS lists every unretired key: the signing one, the next one (published before it
 *   signs) and the previous ones (until `retiresAt`);
 * - the signer is the newest key whose `activatedAt` has passed, unretired, whose private key is
 *   available (stored in the row, or given in configuration: SIGNING_KEY_PRIVATE_JWK /
 *   SIGNING_KEY_FILE). It is chosen by the clock at each signature, not only at reload, so
 *   every replica that has loaded a pending key switches to it at `activatedAt` exactly;
 * - a rotation (scripts/rotate-key.ts) adds the next key with `activatedAt = now +
 *   KEY_ACTIVATION_DELAY_SEC`: it is published at once and signs only when every verifier has
 *   had time to refresh its cached JWKS, so no verifier meets a `kid` it has not seen (the
 *   delay must exceed KEY_RELOAD_INTERVAL_SEC + the verifiers' JWKS cache age). Older keys get
 *   `retiresAt = activatedAt + KEY_ROTATION_OVERLAP_SEC` (at least the access-token lifetime),
 *   so tokens they signed until the switch verify until they expire;
 * - replicas reload the table every KEY_RELOAD_INTERVAL_SEC, and at once when asked for a `kid`
 *   they do not know, so a rotation takes effect without a restart.
 *
 * With no configured key and no usable key in the database, a key is generated and stored on
 * first start (development only; a warning is logged).
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, KeyObject } from 'node:crypto';
import { calculateJwkThumbprint, SignJWT, type JWK, type JWTPayload } from 'jose';
import { AuthError, createLocalKeySource, type KeySource } from '@jwt-mesh/core';
import type { Logger } from 'pino';
import type { Clock } from './clock.js';
import type { Config, SigningAlgorithm } from './config.js';
import type { PrismaClient } from './db.js';

/** A key that can sign. */
export interface ActiveSigningKey {
  readonly kid: string;
  readonly alg: SigningAlgorithm;
  readonly privateKey: KeyObject;
}

/** The key store one app instance uses. */
export interface KeyStore {
  /**
   * The current signer: the newest loaded key whose `activatedAt` has passed by the injected
   * clock (a pending key takes over at its activation time without a reload).
   * @throws Error when no usable signing key is loaded (the app answers 503)
   */
  signer(): ActiveSigningKey;
  /**
   * The public JWK Set: every unretired key (pending, signing, overlapping), with `kid`, `alg`,
   * `use: "sig"`; never private members. Updated at each reload.
   */
  jwks(): { keys: JWK[] };
  /** Verification keys for this service's own verifier; reloads once on an unknown `kid`. */
  readonly keySource: KeySource;
  /** Reloads from the database now. */
  reload(): Promise<void>;
  /** Signs an RFC 9068 access token with the current signer (header `alg`, `kid`, `typ: at+jwt`). */
  signAccessToken(claims: JWTPayload): Promise<string>;
  /** Stops the reload timer. */
  close(): void;
}

/** Where a private key for a given algorithm comes from. */
const KEYGEN: Record<SigningAlgorithm, () => { privateKey: KeyObject; publicKey: KeyObject }> = {
  RS256: () => generateKeyPairSync('rsa', { modulusLength: 2048, publicExponent: 0x10001 }),
  ES256: () => generateKeyPairSync('ec', { namedCurve: 'P-256' }),
  EdDSA: () => generateKeyPairSync('ed25519'),
};

/**
 * Checks that a key fits an algorithm (RSA >= 2048 bits for RS256, P-256 for ES256, Ed25519 for
 * EdDSA).
 * @throws Error naming the mismatch
 */
export function assertKeyFitsAlg(key: KeyObject, alg: SigningAlgorithm): void {
  const type = key.asymmetricKeyType;
  const details = key.asymmetricKeyDetails ?? {};
  const ok =
    (alg === 'RS256' && type === 'rsa' && (details.modulusLength ?? 0) >= 2048) ||
    (alg === 'ES256' && type === 'ec' && details.namedCurve === 'prime256v1') ||
    (alg === 'EdDSA' && type === 'ed25519');
  if (!ok) throw new Error(`a ${type ?? 'unknown'} key cannot sign ${alg} (RS256: RSA >= 2048 bits, ES256: P-256, EdDSA: Ed25519)`);
}

/** The public JWK of a key pair, with `kid` (RFC 7638 thumbprint unless given), `alg`, `use`. */
export async function publicJwkOf(publicKey: KeyObject, alg: SigningAlgorithm, kid?: string): Promise<JWK & { kid: string }> {
  const jwk = publicKey.export({ format: 'jwk' }) as JWK;
  const thumbprint = await calculateJwkThumbprint(jwk, 'sha256');
  return { ...jwk, kid: kid ?? thumbprint, alg, use: 'sig' };
}

/** A freshly generated key pair as stored in the database. */
export async function generateSigningKey(alg: SigningAlgorithm): Promise<{ kid: string; publicJwk: JWK; privateKeyPem: string }> {
  const { privateKey, publicKey } = KEYGEN[alg]();
  const publicJwk = await publicJwkOf(publicKey, alg);
  return { kid: publicJwk.kid, publicJwk, privateKeyPem: privateKey.export({ format: 'pem', type: 'pkcs8' }).toString() };
}

/** Options of {@link rotateSigningKey}. */
export interface RotateOptions {
  /** Algorithm of a generated key: RS256 | ES256 | EdDSA. */
  alg: SigningAlgorithm;
  /**
   * Seconds the previous keys stay published after the new key starts signing
   * (>= access-token TTL + clock tolerance, KEY_ROTATION_OVERLAP_SEC).
   */
  overlapSec: number;
  /**
   * Seconds from `now` until the new key signs (KEY_ACTIVATION_DELAY_SEC). Meanwhile it is only
   * published in the JWKS and the current key keeps signing. Default 0: signs at once (first
   * start, a newly configured key, `rotate-key --now` after a key compromise).
   */
  activationDelaySec?: number;
  /** The rotation time. */
  now: Date;
  /**
   * An existing key to add instead of generating one (private PEM optional: null means the
   * private key comes from configuration).
   */
  key?: { kid: string; publicJwk: JWK; privateKeyPem: string | null };
}

/** What {@link rotateSigningKey} did. */
export interface Rotation {
  /** The new key's `kid`. */
  kid: string;
  /** When the new key starts signing (now + activation delay). */
  activatesAt: Date;
  /** When every older key leaves the JWKS (activatesAt + overlap), unless it retires earlier. */
  previousRetireAt: Date;
}

/**
 * Adds a new signing key: published in the JWKS at once, signing from
 * `now + activationDelaySec`; every other unretired key gets
 * `retiresAt = activatesAt + overlapSec` (it keeps signing until the new key activates, then
 * stays published for the overlap). One transaction.
 *
 * Rotating again before a pending key activates is allowed: the pending key then retires with
 * the others (it may sign for a while if it activates before the newest key).
 *
 * @throws RangeError for a negative or non-integer `overlapSec` / `activationDelaySec`;
 *   a Prisma error when the `kid` exists already or the database fails
 */
export async function rotateSigningKey(prisma: PrismaClient, opts: RotateOptions): Promise<Rotation> {
  const delaySec = opts.activationDelaySec ?? 0;
  for (const [name, v] of [['overlapSec', opts.overlapSec], ['activationDelaySec', delaySec]] as const) {
    if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`${name} must be a whole number of seconds >= 0`);
  }
  const key = opts.key ?? (await generateSigningKey(opts.alg));
  const activatesAt = new Date(opts.now.getTime() + delaySec * 1000);
  const previousRetireAt = new Date(activatesAt.getTime() + opts.overlapSec * 1000);
  await prisma.$transaction([
    prisma.signingKey.updateMany({
      where: { kid: { not: key.kid }, OR: [{ retiresAt: null }, { retiresAt: { gt: previousRetireAt } }] },
      data: { retiresAt: previousRetireAt },
    }),
    prisma.signingKey.create({
      data: {
        kid: key.kid,
        alg: opts.alg,
        publicJwk: key.publicJwk as object,
        privateKeyPem: key.privateKeyPem,
        createdAt: opts.now,
        activatedAt: activatesAt,
      },
    }),
  ]);
  return { kid: key.kid, activatesAt, previousRetireAt };
}

/** The configured private key (if any), with its public JWK. */
async function configuredKey(config: Config): Promise<{ kid: string; publicJwk: JWK; privateKey: KeyObject } | null> {
  const { privateJwk, privatePem, alg } = config.signingKey;
  if (!privateJwk && !privatePem) return null;
  let privateKey: KeyObject;
  try {
    privateKey = privateJwk
      ? createPrivateKey({ key: privateJwk as unknown as import('node:crypto').JsonWebKey, format: 'jwk' })
      : createPrivateKey(privatePem!);
  } catch (err) {
    throw new Error(`${privateJwk ? 'SIGNING_KEY_PRIVATE_JWK' : 'SIGNING_KEY_FILE'}: not a usable private key`, { cause: err });
  }
  try {
    assertKeyFitsAlg(privateKey, alg);
  } catch (err) {
    throw new Error(`SIGNING_KEY_ALG: ${(err as Error).message}`);
  }
  const givenKid = typeof privateJwk?.['kid'] === 'string' ? (privateJwk['kid'] as string) : undefined;
  const publicJwk = await publicJwkOf(createPublicKey(privateKey), alg, givenKid);
  return { kid: publicJwk.kid, publicJwk, privateKey };
}

/** Arbitrary fixed key for the advisory lock that serializes first-start key generation. */
const KEYGEN_LOCK = 727_073_691;

/** Options of {@link createKeyStore}. */
export interface KeyStoreOptions {
  prisma: PrismaClient;
  config: Config;
  clock: Clock;
  logger: Logger;
  /** Start the periodic reload (default true; tests pass false and call `reload()`). */
  autoReload?: boolean;
}

/**
 * Loads the keys (importing the configured key, or generating a development key on first start)
 * and returns the store.
 *
 * @throws Error when the configured key is unusable, or the database cannot be reached
 */
export async function createKeyStore(opts: KeyStoreOptions): Promise<KeyStore> {
  const { clock, logger } = opts;
  const privateByKid = await registerConfiguredKey(opts);

  /** `candidates`: newest `activatedAt` first, pending keys included. */
  let current: { candidates: Candidate[]; jwks: { keys: JWK[] } } = { candidates: [], jwks: { keys: [] } };
  const localSource = createLocalKeySource({ keys: [] });
  let lastReload = 0;
  let inflight: Promise<void> | null = null;
  let announcedKid: string | null = null;

  async function load(): Promise<void> {
    const now = new Date(clock.now());
    const { candidates, keys } = await readKeys(opts, privateByKid, now);
    const pending = candidates.filter((c) => c.activatedAt > now.getTime());
    for (const c of pending) {
      if (!current.candidates.some((p) => p.kid === c.kid)) {
        logger.info({ kid: c.kid, activatesAt: new Date(c.activatedAt).toISOString() }, 'next signing key published; signs from activatesAt');
      }
    }
    current = { candidates, jwks: { keys } };
    localSource.update(current.jwks);
    lastReload = clock.now();
    activeSigner();
  }

  /** The candidate signing at the clock's time (logs a change of signer once). */
  function activeSigner(): ActiveSigningKey | null {
    const t = clock.now();
    const c = current.candidates.find((k) => k.activatedAt <= t && (k.retiresAt === null || k.retiresAt > t)) ?? null;
    const kid = c?.kid ?? null;
    if (kid !== announcedKid) {
      announcedKid = kid;
      logger.info({ kid }, 'signing key in use');
    }
    return c;
  }

  async function reload(): Promise<void> {
    inflight ??= load().finally(() => {
      inflight = null;
    });
    return inflight;
  }

  await load();
  if (!activeSigner()) {
    await generateFirstKey(opts);
    await load();
  }
  const timer = startReloadTimer(opts, reload);

  /** Unknown kid: reload once (at most once a second), then look again. */
  const keySource: KeySource = {
    async getKey(header) {
      try {
        return await localSource.getKey(header);
      } catch (err) {
        if (!(err instanceof AuthError) || err.code !== 'token_key_unknown' || clock.now() - lastReload < 1000) throw err;
        await reload();
        return localSource.getKey(header);
      }
    },
  };

  const signer = (): ActiveSigningKey => {
    const c = activeSigner();
    if (!c) throw new Error('no usable signing key is loaded');
    return c;
  };
  return {
    signer,
    jwks: () => current.jwks,
    keySource,
    reload,
    async signAccessToken(claims) {
      const key = signer();
      return new SignJWT(claims).setProtectedHeader({ alg: key.alg, kid: key.kid, typ: 'at+jwt' }).sign(key.privateKey);
    },
    close() {
      if (timer) clearInterval(timer);
    },
  };
}

/**
 * Registers the configured private key (SIGNING_KEY_PRIVATE_JWK / SIGNING_KEY_FILE), if any, in
 * `signing_keys`: a key not there yet is added as a rotation that signs at once.
 * @returns the private keys known so far by `kid`: the configured one, or none
 * @throws Error when the configured key is unusable, or the database cannot be reached
 */
async function registerConfiguredKey(opts: KeyStoreOptions): Promise<Map<string, KeyObject>> {
  const { prisma, config, clock, logger } = opts;
  const fromConfig = await configuredKey(config);
  const privateByKid = new Map<string, KeyObject>();
  if (fromConfig) {
    privateByKid.set(fromConfig.kid, fromConfig.privateKey);
    const existing = await prisma.signingKey.findUnique({ where: { kid: fromConfig.kid } });
    if (!existing) {
      // A newly configured key is a rotation that signs at once (the replicas restarted with it
      // may no longer hold the previous private key); earlier keys overlap.
      await rotateSigningKey(prisma, {
        alg: config.signingKey.alg,
        overlapSec: config.signingKey.rotationOverlapSec,
        now: new Date(clock.now()),
        key: { kid: fromConfig.kid, publicJwk: fromConfig.publicJwk, privateKeyPem: null },
      });
      logger.info({ kid: fromConfig.kid }, 'configured signing key registered');
    }
  }
  return privateByKid;
}

/** A key that may sign from `activatedAt` (epoch ms) until `retiresAt` (epoch ms or null). */
interface Candidate extends ActiveSigningKey {
  readonly activatedAt: number;
  readonly retiresAt: number | null;
}

/**
 * Reads every key unretired at `now` from `signing_keys`, newest `activatedAt` first.
 * @param privateByKid - private keys known by `kid`; a stored private key read here is added to it
 * @returns `keys`: the public JWKs (RFC 7517, public members only, `kid`, `alg`, `use: "sig"`)
 *   of every such key; `candidates`: those with an activation time and a private key, pending
 *   ones included (an unreadable stored key is logged and skipped)
 */
async function readKeys(
  opts: KeyStoreOptions,
  privateByKid: Map<string, KeyObject>,
  now: Date,
): Promise<{ candidates: Candidate[]; keys: JWK[] }> {
  const { prisma, logger } = opts;
  const rows = await prisma.signingKey.findMany({
    where: { OR: [{ retiresAt: null }, { retiresAt: { gt: now } }] },
    orderBy: [{ activatedAt: 'desc' }, { createdAt: 'desc' }],
  });
  const candidates: Candidate[] = [];
  const keys: JWK[] = [];
  for (const row of rows) {
    const jwk = row.publicJwk as JWK;
    keys.push({ ...publicOnly(jwk), kid: row.kid, alg: row.alg, use: 'sig' });
    if (!row.activatedAt) continue;
    let privateKey = privateByKid.get(row.kid);
    if (!privateKey && row.privateKeyPem) {
      try {
        privateKey = createPrivateKey(row.privateKeyPem);
        privateByKid.set(row.kid, privateKey);
      } catch (err) {
        logger.error({ kid: row.kid, err }, 'stored signing key is unreadable; skipped');
        continue;
      }
    }
    if (privateKey) {
      candidates.push({
        kid: row.kid,
        alg: row.alg as SigningAlgorithm,
        privateKey,
        activatedAt: row.activatedAt.getTime(),
        retiresAt: row.retiresAt?.getTime() ?? null,
      });
    }
  }
  return { candidates, keys };
}

/**
 * First start with no usable key (development only): generates a key that signs at once and
 * stores it with its private key, retiring the others after the overlap; logs a warning. Under
 * an advisory lock, so concurrent replicas generate one key, not one each.
 * @throws a Prisma error when the database fails
 */
async function generateFirstKey(opts: KeyStoreOptions): Promise<void> {
  const { prisma, config, clock, logger } = opts;
  await prisma.$transaction(async (tx) => {
    await tx.$executeRaw`SELECT pg_advisory_xact_lock(${KEYGEN_LOCK})`;
    const now = new Date(clock.now());
    const usable = await tx.signingKey.count({
      where: { privateKeyPem: { not: null }, activatedAt: { lte: now }, OR: [{ retiresAt: null }, { retiresAt: { gt: now } }] },
    });
    if (usable > 0) return; // another replica generated one meanwhile
    const key = await generateSigningKey(config.signingKey.alg);
    await tx.signingKey.updateMany({
      where: { OR: [{ retiresAt: null }, { retiresAt: { gt: now } }] },
      data: { retiresAt: new Date(now.getTime() + config.signingKey.rotationOverlapSec * 1000) },
    });
    await tx.signingKey.create({
      data: { kid: key.kid, alg: config.signingKey.alg, publicJwk: key.publicJwk as object, privateKeyPem: key.privateKeyPem, createdAt: now, activatedAt: now },
    });
    logger.warn(
      { kid: key.kid, alg: config.signingKey.alg },
      'no signing key configured: generated one and stored it in the database (development only; set SIGNING_KEY_PRIVATE_JWK or SIGNING_KEY_FILE in production)',
    );
  });
}

/**
 * Calls `reload` every KEY_RELOAD_INTERVAL_SEC (a failure is logged, the loaded keys kept);
 * unref'd, so it never keeps the process alive.
 * @returns the timer, or null when `opts.autoReload` is false
 */
function startReloadTimer(opts: KeyStoreOptions, reload: () => Promise<void>): NodeJS.Timeout | null {
  const { config, logger } = opts;
  const timer =
    opts.autoReload === false
      ? null
      : setInterval(() => {
          reload().catch((err: unknown) => logger.warn({ err }, 'signing key reload failed; keeping the loaded keys'));
        }, config.signingKey.reloadIntervalSec * 1000);
  timer?.unref();
  return timer;
}

/** Drops private members (`d`, `p`, `q`, ...) from a JWK. */
function publicOnly(jwk: JWK): JWK {
  switch (jwk.kty) {
    case 'RSA':
      return { kty: 'RSA', n: jwk.n, e: jwk.e };
    case 'EC':
      return { kty: 'EC', crv: jwk.crv, x: jwk.x, y: jwk.y };
    case 'OKP':
      return { kty: 'OKP', crv: jwk.crv, x: jwk.x };
    default:
      return {};
  }
}
