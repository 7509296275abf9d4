/**
 * Signing keys: the issuer's private keys and the public JWK Set it publishes (RFC 7517), with
 * rotation by `kid` (RFC 7638 thumbprint) and an overlap window.
 *
 * The database (`signing_keys`) is the source of truth shared by every replica:
 * - the signer is the newest activated, unretired key whose private key is available (stored in
 *   the row, or given in configuration: SIGNING_KEY_PRIVATE_JWK / SIGNING_KEY_FILE);
 * - the JWKS lists every unretired key, so tokens signed before a rotation keep verifying until
 *   `retiresAt` (= rotation time + KEY_ROTATION_OVERLAP_SEC, at least the access-token lifetime);
 * - replicas reload the table every KEY_RELOAD_INTERVAL_SEC, and at once when asked for a `kid`
 *   they do not know, so a rotation (scripts/rotate-key.ts) takes effect without a restart.
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
   * The current signer.
   * @throws Error when no usable signing key is loaded (the app answers 503)
   */
  signer(): ActiveSigningKey;
  /** The public JWK Set: every unretired key, with `kid`, `alg`, `use: "sig"`; never private members. */
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

/**
 * Adds a new signing key and makes it the signer: every other unretired key gets
 * `retiresAt = now + overlapSec` (stays in the JWKS until then). One transaction.
 *
 * @param opts.alg - RS256 | ES256 | EdDSA
 * @param opts.overlapSec - seconds the previous keys stay published (>= access-token TTL + clock tolerance)
 * @param opts.key - an existing key to add instead of generating one (private PEM optional:
 *   null means the private key comes from configuration)
 * @returns the new `kid`
 */
export async function rotateSigningKey(
  prisma: PrismaClient,
  opts: {
    alg: SigningAlgorithm;
    overlapSec: number;
    now: Date;
    key?: { kid: string; publicJwk: JWK; privateKeyPem: string | null };
  },
): Promise<string> {
  const key = opts.key ?? (await generateSigningKey(opts.alg));
  const retiresAt = new Date(opts.now.getTime() + opts.overlapSec * 1000);
  await prisma.$transaction([
    prisma.signingKey.updateMany({
      where: { kid: { not: key.kid }, OR: [{ retiresAt: null }, { retiresAt: { gt: retiresAt } }] },
      data: { retiresAt },
    }),
    prisma.signingKey.create({
      data: {
        kid: key.kid,
        alg: opts.alg,
        publicJwk: key.publicJwk as object,
        privateKeyPem: key.privateKeyPem,
        createdAt: opts.now,
        activatedAt: opts.now,
      },
    }),
  ]);
  return key.kid;
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
  const { prisma, config, clock, logger } = opts;
  const fromConfig = await configuredKey(config);
  const privateByKid = new Map<string, KeyObject>();
  if (fromConfig) {
    privateByKid.set(fromConfig.kid, fromConfig.privateKey);
    const existing = await prisma.signingKey.findUnique({ where: { kid: fromConfig.kid } });
    if (!existing) {
      // A newly configured key is a rotation: it signs from now on, earlier keys overlap.
      await rotateSigningKey(prisma, {
        alg: config.signingKey.alg,
        overlapSec: config.signingKey.rotationOverlapSec,
        now: new Date(clock.now()),
        key: { kid: fromConfig.kid, publicJwk: fromConfig.publicJwk, privateKeyPem: null },
      });
      logger.info({ kid: fromConfig.kid }, 'configured signing key registered');
    }
  }

  let current: { signer: ActiveSigningKey | null; jwks: { keys: JWK[] } } = { signer: null, jwks: { keys: [] } };
  const localSource = createLocalKeySource({ keys: [] });
  let lastReload = 0;
  let inflight: Promise<void> | null = null;

  async function load(): Promise<void> {
    const now = new Date(clock.now());
    const rows = await prisma.signingKey.findMany({
      where: { OR: [{ retiresAt: null }, { retiresAt: { gt: now } }] },
      orderBy: [{ activatedAt: 'desc' }, { createdAt: 'desc' }],
    });
    let signer: ActiveSigningKey | null = null;
    const keys: JWK[] = [];
    for (const row of rows) {
      const jwk = row.publicJwk as JWK;
      keys.push({ ...publicOnly(jwk), kid: row.kid, alg: row.alg, use: 'sig' });
      if (signer || !row.activatedAt || row.activatedAt > now) continue;
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
      if (privateKey) signer = { kid: row.kid, alg: row.alg as SigningAlgorithm, privateKey };
    }
    if (current.signer?.kid !== signer?.kid) logger.info({ kid: signer?.kid ?? null }, 'signing key in use');
    current = { signer, jwks: { keys } };
    localSource.update(current.jwks);
    lastReload = clock.now();
  }

  async function reload(): Promise<void> {
    inflight ??= load().finally(() => {
      inflight = null;
    });
    return inflight;
  }

  await load();
  if (!current.signer) {
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
    await load();
  }

  const timer =
    opts.autoReload === false
      ? null
      : setInterval(() => {
          reload().catch((err: unknown) => logger.warn({ err }, 'signing key reload failed; keeping the loaded keys'));
        }, config.signingKey.reloadIntervalSec * 1000);
  timer?.unref();

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
    if (!current.signer) throw new Error('no usable signing key is loaded');
    return current.signer;
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
