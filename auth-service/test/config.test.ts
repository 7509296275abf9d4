// Configuration: defaults, frozen, and a bad value names the variable.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { ConfigError, DEFAULTS, defaultHashConcurrency, parseConfig, threadpoolSize } from '../src/config.js';

t.test('defaults', async (t) => {
  const c = parseConfig({});
  t.equal(c.port, 4000);
  t.equal(c.host, '127.0.0.1');
  t.equal(c.databaseUrl, DEFAULTS.DATABASE_URL);
  t.equal(c.databasePoolMax, 10);
  t.equal(c.redisUrl, 'redis://127.0.0.1:6379/0');
  t.match(c.jwt, { issuer: 'http://localhost:4000', audience: 'jwt-mesh', algorithms: ['RS256'], clockToleranceSec: 30, accessTokenTtlSec: 300, maxTokenBytes: 8192 });
  t.equal(c.refreshTokenTtlSec, 1_209_600);
  t.equal(c.refreshReuseGraceSec, 10);
  t.match(c.signingKey, { alg: 'RS256', privateJwk: null, privatePem: null, rotationOverlapSec: 3600, reloadIntervalSec: 5 });
  t.match(c.rateLimit, { loginPerAddressPerMin: 20, loginPerUsernamePerMin: 10, refreshPerAddressPerMin: 60, registerPerAddressPerMin: 10 });
  t.equal(c.cleanupIntervalSec, 300);
  t.equal(c.trustProxy, false);
  t.equal(c.logLevel, 'info');
  t.ok(Object.isFrozen(c) && Object.isFrozen(c.jwt) && Object.isFrozen(c.jwt.algorithms), 'frozen');
  t.equal(parseConfig({ PORT: '' }).port, 4000, 'empty means default');
});

t.test('values are parsed', async (t) => {
  const c = parseConfig({ PORT: '0', JWT_ALGORITHMS: 'RS256, ES256 EdDSA', SIGNING_KEY_ALG: 'EdDSA', TRUST_PROXY: '10.0.0.0/8,127.0.0.1', DEFAULT_USER_SCOPES: 'a:b  c' });
  t.equal(c.port, 0);
  t.same(c.jwt.algorithms, ['RS256', 'ES256', 'EdDSA']);
  t.equal(c.signingKey.alg, 'EdDSA');
  t.same(c.trustProxy, ['10.0.0.0/8', '127.0.0.1']);
  t.same(c.defaultUserScopes, ['a:b', 'c']);
  t.equal(parseConfig({ TRUST_PROXY: '2' }).trustProxy, 2);
  t.equal(parseConfig({ DATABASE_POOL_MAX: '1' }).databasePoolMax, 1);
});

const bad: Array<[Record<string, string>, RegExp]> = [
  [{ PORT: 'abc' }, /^invalid configuration: PORT: must be a whole number from 0 to 65535 \(got "abc"\)$/],
  [{ PORT: '70000' }, /PORT: must be at most 65535/],
  [{ DATABASE_POOL_MAX: '0' }, /DATABASE_POOL_MAX: must be at least 1/],
  [{ REDIS_PREFIX: 'tenant/a' }, /REDIS_PREFIX: must be 1-64 characters/],
  [{ DATABASE_URL: 'mysql://x' }, /DATABASE_URL: must be a postgresql:\/\/ or postgres:\/\/ URL/],
  [{ REDIS_URL: 'nope' }, /REDIS_URL: must be a redis:\/\//],
  [{ JWT_ALGORITHMS: 'HS256' }, /JWT_ALGORITHMS: each must be one of RS256, ES256, EdDSA/],
  [{ SIGNING_KEY_ALG: 'ES256' }, /SIGNING_KEY_ALG: ES256 is not in JWT_ALGORITHMS/],
  [{ KEY_ROTATION_OVERLAP_SEC: '60' }, /KEY_ROTATION_OVERLAP_SEC: must be at least ACCESS_TOKEN_TTL_SEC \+ JWT_CLOCK_TOLERANCE_SEC = 330/],
  [{ REFRESH_TOKEN_TTL_SEC: '120', ACCESS_TOKEN_TTL_SEC: '300' }, /REFRESH_TOKEN_TTL_SEC: must be longer than ACCESS_TOKEN_TTL_SEC/],
  [{ REFRESH_REUSE_GRACE_SEC: '-1' }, /REFRESH_REUSE_GRACE_SEC: must be a whole number/],
  [{ LOG_LEVEL: 'loud' }, /LOG_LEVEL: must be fatal, error/],
  [{ TRUST_PROXY: 'maybe?' }, /TRUST_PROXY: expected true, false/],
  [{ SIGNING_KEY_PRIVATE_JWK: '{not json' }, /SIGNING_KEY_PRIVATE_JWK: not valid JSON/],
  [{ SIGNING_KEY_PRIVATE_JWK: '{"kty":"RSA","n":"x","e":"AQAB"}' }, /SIGNING_KEY_PRIVATE_JWK: expected a private JWK/],
  [{ SIGNING_KEY_FILE: '/nonexistent/key.pem' }, /SIGNING_KEY_FILE: cannot read \/nonexistent\/key.pem \(ENOENT\)/],
  [{ SIGNING_KEY_PRIVATE_JWK: '\n' }, /SIGNING_KEY_PRIVATE_JWK: is only white space/],
  [{ SIGNING_KEY_FILE: '  ' }, /SIGNING_KEY_FILE: is only white space/],
  [{ DEFAULT_USER_SCOPES: 'a "b"' }, /DEFAULT_USER_SCOPES: each scope must match/],
  [{ PASSWORD_HASH_CONCURRENCY: '0' }, /PASSWORD_HASH_CONCURRENCY: must be at least 1 \(got "0"\)/],
  [{ PASSWORD_HASH_CONCURRENCY: 'many' }, /PASSWORD_HASH_CONCURRENCY: expected auto or a whole number from 1 to 1024/],
  [{ PASSWORD_HASH_CONCURRENCY: '5' }, /PASSWORD_HASH_CONCURRENCY: must be at most UV_THREADPOOL_SIZE = 4 \(got 5\)/],
  [{ PASSWORD_HASH_QUEUE_MAX: '-1' }, /PASSWORD_HASH_QUEUE_MAX: expected auto or a whole number from 0 to 100000/],
  [{ PASSWORD_HASH_QUEUE_TIMEOUT_MS: '0' }, /PASSWORD_HASH_QUEUE_TIMEOUT_MS: must be at least 1/],
  [{ PASSWORD_HASH_QUEUE_TIMEOUT_MS: '1.5s' }, /PASSWORD_HASH_QUEUE_TIMEOUT_MS: must be a whole number/],
];

t.test('password hashing: sized from the machine by default, explicit values win', async (t) => {
  const c = parseConfig({});
  t.equal(c.passwordHashing.concurrency, defaultHashConcurrency({}), 'auto');
  t.equal(c.passwordHashing.maxQueue, 4 * c.passwordHashing.concurrency, 'auto: 4 waiting per slot');
  t.equal(c.passwordHashing.queueTimeoutMs, 1000);
  t.equal(defaultHashConcurrency({}, 2), 2, '2 cores, pool of 4: 2');
  t.equal(defaultHashConcurrency({}, 16), 3, 'a pool of 4 leaves one thread for signing: 3');
  t.equal(defaultHashConcurrency({ UV_THREADPOOL_SIZE: '1' }, 16), 1, 'never below 1');
  t.equal(defaultHashConcurrency({ UV_THREADPOOL_SIZE: '17' }, 16), 16);
  t.equal(threadpoolSize({ UV_THREADPOOL_SIZE: '5000' }), 1024, 'clamped as libuv does');
  const set = parseConfig({ PASSWORD_HASH_CONCURRENCY: '6', UV_THREADPOOL_SIZE: '8', PASSWORD_HASH_QUEUE_MAX: '0', PASSWORD_HASH_QUEUE_TIMEOUT_MS: '250' });
  t.same(set.passwordHashing, { concurrency: 6, maxQueue: 0, queueTimeoutMs: 250 });
  t.equal(parseConfig({ PASSWORD_HASH_CONCURRENCY: '3' }).passwordHashing.maxQueue, 12, 'auto queue follows the set concurrency');
  t.ok(Object.isFrozen(c.passwordHashing), 'frozen');
});

t.test('a bad value stops start-up naming the variable', async (t) => {
  for (const [env, message] of bad) {
    t.throws(() => parseConfig(env), { name: 'ConfigError', message }, JSON.stringify(env));
  }
  const two = (() => {
    try {
      parseConfig({ PORT: 'x', DATABASE_POOL_MAX: '0' });
    } catch (err) {
      return err as ConfigError;
    }
    return null;
  })();
  t.match(two?.message, /PORT: .*; DATABASE_POOL_MAX: must be at least 1/, 'every bad variable is named');
});

t.test('Redis credentials beside REDIS_URL: read for the issuer\'s ACL user, errors name the variable, no secret echoed', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'jwtmesh-auth-config-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'password');
  writeFileSync(file, 'issuer-secret-pw\n');
  const c = parseConfig({ REDIS_USERNAME: 'jwtmesh-issuer', REDIS_PASSWORD_FILE: file });
  t.equal(c.redisConnection.username, 'jwtmesh-issuer');
  t.equal(c.redisConnection.password, 'issuer-secret-pw');
  t.notMatch(JSON.stringify(c), 'issuer-secret-pw', 'the password is not in the serialized config');
  t.throws(() => parseConfig({ REDIS_USERNAME: 'jwtmesh-issuer' }), /REDIS_USERNAME: needs a password/);
  t.throws(() => parseConfig({ REDIS_PASSWORD_FILE: join(dir, 'missing') }), /REDIS_PASSWORD_FILE: cannot read/);
  const err = t.throws(() => parseConfig({ REDIS_URL: 'http://user:hunter2@redis:6379' })) as Error;
  t.match(err.message, /REDIS_URL/);
  t.notMatch(err.message, 'hunter2', 'a bad REDIS_URL is never echoed (it may carry a password)');
});

t.test('the issuer reads no JWKS_* variable: the verifiers\' JWK Set settings in a shared ConfigMap do not stop it', async (t) => {
  // k8s/base: the shared ConfigMap sets JWKS_SERVER_ID for the verifiers; the auth Deployment sets no JWKS_URL.
  const c = parseConfig({ JWKS_SERVER_ID: 'spiffe://jwt-mesh.local/ns/jwt-mesh/sa/auth', JWKS_CA_FILE: '/nonexistent/ca.crt' });
  t.equal(c.jwt.issuer, 'http://localhost:4000');
  t.throws(() => parseConfig({ JWKS_SERVER_ID: 'x', JWT_ISSUER: 'not a url' }), /JWT_ISSUER/, 'the shared variables are still checked');
});
