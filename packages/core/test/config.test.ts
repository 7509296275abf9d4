import t from 'tap';
import { VERIFIER_CONFIG_DEFAULTS, loadVerifierConfig } from '../src/config.js';

t.test('defaults', async (t) => {
  const c = loadVerifierConfig({});
  t.same(c, {
    issuer: 'http://localhost:4000',
    audience: 'jwt-mesh',
    algorithms: ['RS256'],
    clockToleranceSec: 30,
    accessTokenTtlSec: 300,
    maxTokenBytes: 8192,
    jwksUrl: 'http://localhost:4000/.well-known/jwks.json',
    redisUrl: 'redis://127.0.0.1:6379/0',
    redisConnection: {},
    redisPrefix: 'jwtmesh:',
    revocationFailMode: 'closed',
    revocationCacheTtlMs: 1000,
  });
  t.ok(Object.isFrozen(c) && Object.isFrozen(c.algorithms), 'frozen');
  t.same(loadVerifierConfig({ JWT_CLOCK_TOLERANCE_SEC: '  ' }).clockToleranceSec, 30, 'empty = unset');
  t.ok(Object.isFrozen(VERIFIER_CONFIG_DEFAULTS));
});

t.test('values are parsed', async (t) => {
  const c = loadVerifierConfig({
    JWT_ISSUER: 'https://auth.example',
    JWT_AUDIENCE: 'api',
    JWT_ALGORITHMS: 'ES256, EdDSA RS256,ES256',
    JWT_CLOCK_TOLERANCE_SEC: '0',
    ACCESS_TOKEN_TTL_SEC: '600',
    JWT_MAX_TOKEN_BYTES: '4096',
    JWKS_URL: 'https://auth.example/.well-known/jwks.json',
    REDIS_URL: 'rediss://u:p@redis:6380/2',
    REVOCATION_FAIL_MODE: 'open',
    REVOCATION_CACHE_TTL_MS: '0',
    REDIS_PREFIX: 'e2e-1:',
  });
  t.equal(c.redisPrefix, 'e2e-1:');
  t.same(c.algorithms, ['ES256', 'EdDSA', 'RS256']);
  t.equal(c.clockToleranceSec, 0);
  t.equal(c.accessTokenTtlSec, 600);
  t.equal(c.revocationFailMode, 'open');
  t.equal(c.revocationCacheTtlMs, 0);
});

t.test('a bad value names the variable', async (t) => {
  const bad: Array<[Record<string, string>, RegExp]> = [
    [{ JWT_ALGORITHMS: 'none' }, /JWT_ALGORITHMS/],
    [{ JWT_ALGORITHMS: 'RS256,HS256' }, /JWT_ALGORITHMS/],
    [{ JWT_ALGORITHMS: ',' }, /JWT_ALGORITHMS: must list at least one/],
    [{ JWT_CLOCK_TOLERANCE_SEC: '1.5' }, /JWT_CLOCK_TOLERANCE_SEC: must be a whole number/],
    [{ JWT_CLOCK_TOLERANCE_SEC: '-1' }, /JWT_CLOCK_TOLERANCE_SEC/],
    [{ JWT_CLOCK_TOLERANCE_SEC: '3600' }, /JWT_CLOCK_TOLERANCE_SEC: must be at most 300/],
    [{ ACCESS_TOKEN_TTL_SEC: '0' }, /ACCESS_TOKEN_TTL_SEC/],
    [{ ACCESS_TOKEN_TTL_SEC: '5m' }, /ACCESS_TOKEN_TTL_SEC/],
    [{ JWT_MAX_TOKEN_BYTES: '10' }, /JWT_MAX_TOKEN_BYTES/],
    [{ JWKS_URL: 'ftp://x/jwks' }, /JWKS_URL/],
    [{ JWKS_URL: 'not a url' }, /JWKS_URL/],
    [{ REDIS_URL: 'http://redis' }, /REDIS_URL/],
    [{ REVOCATION_FAIL_MODE: 'allow' }, /REVOCATION_FAIL_MODE: must be closed or open/],
    [{ REVOCATION_CACHE_TTL_MS: 'x' }, /REVOCATION_CACHE_TTL_MS/],
    [{ REDIS_PREFIX: 'a b' }, /REDIS_PREFIX/],
  ];
  for (const [env, msg] of bad) t.throws(() => loadVerifierConfig(env), msg, JSON.stringify(env));
  try {
    loadVerifierConfig({ REDIS_URL: 'http://user:secret@redis' });
  } catch (err) {
    t.notMatch((err as Error).message, /secret/, 'REDIS_URL is never echoed');
  }
  try {
    loadVerifierConfig({ JWT_AUDIENCE: ' ', JWT_MAX_TOKEN_BYTES: 'x', REVOCATION_FAIL_MODE: 'x' });
    t.fail('should throw');
  } catch (err) {
    t.match((err as Error).message, /JWT_MAX_TOKEN_BYTES.*REVOCATION_FAIL_MODE/, 'every bad variable is named');
  }
});
