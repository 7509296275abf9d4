/**
 * Signing-key rotation, two-phase by default (RFC 7517 JWKS; the pre-publication pattern of
 * OpenID Connect Core §10.1.1 "Rotation of Asymmetric Signing Keys"):
 *
 * 1. publish: the new key (new `kid`) is added to the database at once, so every replica's JWKS
 *    lists it from its next reload (KEY_RELOAD_INTERVAL_SEC); the current key keeps signing;
 * 2. activate: at now + KEY_ACTIVATION_DELAY_SEC the new key signs (each replica switches by its
 *    clock; see src/keys.ts). By then every verifier has refreshed its cached JWKS, so none
 *    meets the new `kid` unprepared, even when attacker tokens with random `kid`s keep its
 *    unknown-`kid` refetch in cooldown.
 *
 * Older keys stay in the JWKS until activation + KEY_ROTATION_OVERLAP_SEC (at least the
 * access-token lifetime + clock tolerance), so tokens they signed verify until they expire.
 *
 * `--now` makes the new key sign at once (the pre-two-phase behaviour), for emergencies such as a
 * compromised signing key: verifiers then learn the `kid` only from their refetch on an unknown
 * `kid`, which random-`kid` noise can hold in cooldown for up to 5 s.
 *
 * Usage: npm run rotate-key -w @jwt-mesh/auth-service -- [--alg ES256] [--now] [--list]
 */
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';
import { REMOTE_KEY_SOURCE_DEFAULTS } from '@jwt-mesh/core';
import { parseConfig, SIGNING_ALGORITHMS, type SigningAlgorithm } from '../src/config.js';
import { createPrisma } from '../src/db.js';
import { rotateSigningKey } from '../src/keys.js';

/** The core remote key source's default JWKS cache age, in seconds (what our verifiers use). */
const VERIFIER_JWKS_MAX_AGE_SEC = REMOTE_KEY_SOURCE_DEFAULTS.cacheMaxAgeMs / 1000;

const HELP = `Usage: rotate-key [options]

Two-phase rotation: adds a new signing key that is published in the JWKS at once and starts
signing after KEY_ACTIVATION_DELAY_SEC, so every verifier holds the key before the first token
signed with it arrives. Older keys keep signing until then, stay in the JWKS for the overlap
window after it, then retire. Reads DATABASE_URL, SIGNING_KEY_ALG, KEY_ACTIVATION_DELAY_SEC,
KEY_ROTATION_OVERLAP_SEC, KEY_RELOAD_INTERVAL_SEC, JWT_ALGORITHMS, ACCESS_TOKEN_TTL_SEC and
JWT_CLOCK_TOLERANCE_SEC from the environment.

The activation delay must exceed KEY_RELOAD_INTERVAL_SEC + the longest JWKS cache age of any
verifier (@jwt-mesh/core verifiers: ${VERIFIER_JWKS_MAX_AGE_SEC} s; Envoy jwt_authn: its cache_duration).

Options:
  --alg <alg>            RS256 | ES256 | EdDSA (default: SIGNING_KEY_ALG, else RS256); must be
                         in JWT_ALGORITHMS of every verifier
  --activate-in <sec>    seconds until the new key signs (default: KEY_ACTIVATION_DELAY_SEC)
  --now                  sign with the new key at once (emergency, e.g. a compromised key);
                         verifiers under random-kid noise may reject new tokens for up to their
                         refetch cooldown (5 s)
  --overlap-sec <n>      seconds older keys stay published after the new key activates
                         (default: KEY_ROTATION_OVERLAP_SEC); at least ACCESS_TOKEN_TTL_SEC +
                         JWT_CLOCK_TOLERANCE_SEC
  --list                 list the keys and their state; rotate nothing
  -h, --help             this text`;

/**
 * CLI entry point; returns the exit code (0 done, 1 database failure, 2 bad arguments or
 * configuration). Output lines go to `out`, errors to stderr.
 *
 * @param now - clock in epoch milliseconds (tests inject one; default `Date.now`)
 */
export async function main(
  argv: string[],
  env: NodeJS.ProcessEnv = process.env,
  out: (line: string) => void = console.log,
  now: () => number = Date.now,
): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        alg: { type: 'string' },
        'activate-in': { type: 'string' },
        now: { type: 'boolean' },
        'overlap-sec': { type: 'string' },
        list: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (err) {
    console.error(`${(err as Error).message}\n\n${HELP}`);
    return 2;
  }
  if (values.help) {
    out(HELP);
    return 0;
  }
  let config;
  try {
    config = parseConfig(env);
  } catch (err) {
    console.error(`rotate-key: ${(err as Error).message}`);
    return 2;
  }
  const alg = (values.alg ?? config.signingKey.alg) as SigningAlgorithm;
  if (!SIGNING_ALGORITHMS.includes(alg)) {
    console.error(`rotate-key: --alg must be one of ${SIGNING_ALGORITHMS.join(', ')}`);
    return 2;
  }
  if (!config.jwt.algorithms.includes(alg)) {
    console.error(`rotate-key: ${alg} is not in JWT_ALGORITHMS (${config.jwt.algorithms.join(',')}); add it for every verifier first`);
    return 2;
  }
  const minOverlap = config.jwt.accessTokenTtlSec + config.jwt.clockToleranceSec;
  const overlapSec = values['overlap-sec'] === undefined ? config.signingKey.rotationOverlapSec : Number(values['overlap-sec']);
  if (!Number.isSafeInteger(overlapSec) || overlapSec < minOverlap) {
    console.error(`rotate-key: --overlap-sec must be a whole number >= ${minOverlap} (access-token lifetime + clock tolerance)`);
    return 2;
  }

  if (values.now && values['activate-in'] !== undefined) {
    console.error('rotate-key: --now and --activate-in exclude each other');
    return 2;
  }
  const reloadSec = config.signingKey.reloadIntervalSec;
  const activationDelaySec = values.now ? 0 : values['activate-in'] === undefined ? config.signingKey.activationDelaySec : Number(values['activate-in']);
  if (!Number.isSafeInteger(activationDelaySec) || activationDelaySec < 0 || (activationDelaySec !== 0 && activationDelaySec <= reloadSec)) {
    console.error(`rotate-key: --activate-in must be a whole number > KEY_RELOAD_INTERVAL_SEC (${reloadSec}); use --now to sign at once`);
    return 2;
  }

  const prisma = createPrisma(config.databaseUrl, { poolMax: 2 });
  try {
    if (!values.list) {
      const r = await rotateSigningKey(prisma, { alg, overlapSec, activationDelaySec, now: new Date(now()) });
      if (activationDelaySec === 0) {
        out(`new signing key: kid=${r.kid} alg=${alg} (signs from now (--now); replicas reload within ${reloadSec}s)`);
        out('  verifiers learn the kid by refetching the JWKS on the first token with it; under random-kid noise that refetch may wait for its cooldown');
      } else {
        out(`new signing key: kid=${r.kid} alg=${alg} (published now, signs from ${r.activatesAt.toISOString()}, in ${activationDelaySec}s)`);
        const window = activationDelaySec - reloadSec;
        out(`  every verifier must refresh its JWKS within ${window}s (KEY_ACTIVATION_DELAY_SEC - KEY_RELOAD_INTERVAL_SEC); @jwt-mesh/core verifiers refresh after ${VERIFIER_JWKS_MAX_AGE_SEC}s`);
        if (window <= VERIFIER_JWKS_MAX_AGE_SEC) {
          out(
            `  warning: ${window}s is not more than the verifiers' JWKS cache age (${VERIFIER_JWKS_MAX_AGE_SEC}s): a verifier may meet the new kid before its background refresh, and then relies on its unknown-kid refetch (cooldown ${REMOTE_KEY_SOURCE_DEFAULTS.cooldownMs / 1000}s)`,
          );
        }
      }
      out(`older keys stay in the JWKS until ${r.previousRetireAt.toISOString()}`);
    }
    const keys = await prisma.signingKey.findMany({ orderBy: [{ createdAt: 'desc' }] });
    const at = new Date(now());
    const signing = keys.find((k) => k.activatedAt && k.activatedAt <= at && (!k.retiresAt || k.retiresAt > at));
    for (const k of keys) {
      const state =
        k.retiresAt && k.retiresAt <= at
          ? 'retired'
          : k.activatedAt && k.activatedAt > at
            ? `published, signs from ${k.activatedAt.toISOString()}`
            : `${k === signing ? 'signing, ' : ''}published ${k.retiresAt ? `until ${k.retiresAt.toISOString()}` : 'until the next rotation'}`;
      out(`  ${k.kid}  ${k.alg.padEnd(5)}  created ${k.createdAt.toISOString()}  ${state}${k.privateKeyPem ? '' : '  (private key from configuration or erased)'}`);
    }
    return 0;
  } catch (err) {
    console.error(`rotate-key failed: ${(err as Error).message}`);
    return 1;
  } finally {
    await prisma.$disconnect();
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = await main(process.argv.slice(2));
}
