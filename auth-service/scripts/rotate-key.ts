/**
 * Signing-key rotation: adds a new key (new `kid`), makes it the signer, and keeps every older
 * key in the JWKS until now + overlap (KEY_ROTATION_OVERLAP_SEC, at least the access-token
 * lifetime + clock tolerance), so tokens signed before the rotation verify until they expire.
 * Running replicas pick the new key up within KEY_RELOAD_INTERVAL_SEC without a restart.
 *
 * Usage: npm run rotate-key -w @jwt-mesh/auth-service -- [--alg ES256] [--list]
 */
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';
import { parseConfig, SIGNING_ALGORITHMS, type SigningAlgorithm } from '../src/config.js';
import { createPrisma } from '../src/db.js';
import { rotateSigningKey } from '../src/keys.js';

const HELP = `Usage: rotate-key [options]

Adds a new signing key and makes it the signer; older keys stay in the JWKS for the overlap
window, then retire. Reads DATABASE_URL, SIGNING_KEY_ALG, KEY_ROTATION_OVERLAP_SEC,
JWT_ALGORITHMS, ACCESS_TOKEN_TTL_SEC and JWT_CLOCK_TOLERANCE_SEC from the environment.

Options:
  --alg <alg>          RS256 | ES256 | EdDSA (default: SIGNING_KEY_ALG, else RS256); must be in
                       JWT_ALGORITHMS of every verifier
  --overlap-sec <n>    seconds older keys stay published (default: KEY_ROTATION_OVERLAP_SEC);
                       at least ACCESS_TOKEN_TTL_SEC + JWT_CLOCK_TOLERANCE_SEC
  --list               list the keys and their state; rotate nothing
  -h, --help           this text`;

/** CLI entry point; returns the exit code. Output lines go to `out`. */
export async function main(argv: string[], env: NodeJS.ProcessEnv = process.env, out: (line: string) => void = console.log): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: { alg: { type: 'string' }, 'overlap-sec': { type: 'string' }, list: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
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

  const prisma = createPrisma(config.databaseUrl, { poolMax: 2 });
  try {
    if (!values.list) {
      const now = new Date();
      const kid = await rotateSigningKey(prisma, { alg, overlapSec, now });
      out(`new signing key: kid=${kid} alg=${alg} (signs from now; replicas reload within ${config.signingKey.reloadIntervalSec}s)`);
      out(`older keys stay in the JWKS until ${new Date(now.getTime() + overlapSec * 1000).toISOString()}`);
    }
    const keys = await prisma.signingKey.findMany({ orderBy: [{ createdAt: 'desc' }] });
    const now = new Date();
    for (const k of keys) {
      const state = k.retiresAt && k.retiresAt <= now ? 'retired' : k.retiresAt ? `published until ${k.retiresAt.toISOString()}` : 'signing';
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
