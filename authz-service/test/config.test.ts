/**
 * Configuration: defaults, frozen, TLS on by default, plaintext only with the explicit
 * development setting, and every bad value named by its variable.
 */
import t from 'tap';
import { DEFAULTS, loadConfig } from '../src/config.js';

const TLS = { AUTHZ_TLS_CERT: '/etc/mesh/authz.crt', AUTHZ_TLS_KEY: '/etc/mesh/authz.key', AUTHZ_TLS_CA: '/etc/mesh/ca.crt' };

t.test('defaults with TLS files given', async (t) => {
  const c = loadConfig({ ...TLS });
  t.equal(c.port, 9191);
  t.equal(c.host, '127.0.0.1');
  t.equal(c.metricsPort, 9464);
  t.equal(c.metricsHost, '127.0.0.1');
  t.equal(c.deadlineMs, DEFAULTS.AUTHZ_DEADLINE_MS);
  t.equal(c.policyFile, DEFAULTS.AUTHZ_POLICY_FILE);
  t.match(c.policyFile, /authz-service\/policy\.yaml$/);
  t.same(c.security, { mode: 'mtls', certFile: TLS.AUTHZ_TLS_CERT, keyFile: TLS.AUTHZ_TLS_KEY, caFile: TLS.AUTHZ_TLS_CA });
  t.equal(c.revocationKeyPrefix, 'jwtmesh:');
  t.ok(Object.isFrozen(c) && Object.isFrozen(c.security), 'frozen');
  t.ok(c.verifier, 'the shared verifier settings come from the core');
});

t.test('explicit values', async (t) => {
  const c = loadConfig({
    AUTHZ_INSECURE_PLAINTEXT: 'true',
    AUTHZ_PORT: '0',
    AUTHZ_HOST: '0.0.0.0',
    AUTHZ_DEADLINE_MS: '150',
    AUTHZ_METRICS_PORT: '19464',
    VERIFIED_CACHE_MAX_ENTRIES: '0',
    AUTHZ_POLICY_FILE: 'relative/policy.yaml',
  });
  t.same(c.security, { mode: 'insecure-plaintext' });
  t.equal(c.port, 0);
  t.equal(c.host, '0.0.0.0');
  t.equal(c.deadlineMs, 150);
  t.equal(c.metricsPort, 19464);
  t.equal(c.verifiedCacheMaxEntries, 0);
  t.equal(c.policyFile, `${process.cwd()}/relative/policy.yaml`, 'resolved against the working directory');
});

t.test('bad values stop start-up naming the variable', async (t) => {
  const bad: Array<[Record<string, string>, RegExp]> = [
    [{ ...TLS, AUTHZ_PORT: 'abc' }, /AUTHZ_PORT/],
    [{ ...TLS, AUTHZ_PORT: '70000' }, /AUTHZ_PORT/],
    [{ ...TLS, AUTHZ_DEADLINE_MS: '0' }, /AUTHZ_DEADLINE_MS/],
    [{ ...TLS, AUTHZ_DEADLINE_MS: '1.5' }, /AUTHZ_DEADLINE_MS/],
    [{ ...TLS, AUTHZ_METRICS_PORT: '-1' }, /AUTHZ_METRICS_PORT/],
    [{ ...TLS, VERIFIED_CACHE_MAX_ENTRIES: 'many' }, /VERIFIED_CACHE_MAX_ENTRIES/],
    [{ ...TLS, AUTHZ_INSECURE_PLAINTEXT: 'yes' }, /AUTHZ_INSECURE_PLAINTEXT/],
    [{ ...TLS, LOG_LEVEL: 'loud' }, /LOG_LEVEL/],
    [{ ...TLS, REDIS_PREFIX: 'a b' }, /REDIS_PREFIX/],
    [{}, /AUTHZ_TLS_CERT.*required/],
    [{ AUTHZ_TLS_CERT: 'c', AUTHZ_TLS_KEY: 'k' }, /AUTHZ_TLS_CA/],
    [{ AUTHZ_TLS: 'false' }, /AUTHZ_TLS.*AUTHZ_INSECURE_PLAINTEXT=true/],
    [{ AUTHZ_TLS: 'true', AUTHZ_INSECURE_PLAINTEXT: 'true' }, /AUTHZ_INSECURE_PLAINTEXT/],
    [{ ...TLS, JWT_CLOCK_TOLERANCE_SEC: 'soon' }, /JWT_CLOCK_TOLERANCE_SEC/],
  ];
  for (const [env, named] of bad) t.throws(() => loadConfig(env), named, JSON.stringify(env));
});
