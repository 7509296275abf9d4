// The environment helpers every process reads its variables with: one message shape, every bad
// variable named, no secret echoed, blank = unset, ConfigError carries the variable.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { z } from 'zod';
import { ConfigError, envBool, envEnum, envInt, envList, envMs, envPort, envText, envUrl, parseEnv, readConfigFile } from '../src/env.js';

const schema = z.object({
  PORT: envPort(),
  TIMEOUT_MS: envMs(1, 60_000),
  TTL_SEC: envInt(10, 300, 's'),
  MODE: envEnum(['closed', 'open']),
  TLS: envBool(),
  NAME: envText(),
  UPSTREAM_URL: envUrl(['http:', 'https:']),
  ALGS: envList(envEnum(['RS256', 'ES256']), 1),
});
const good = { PORT: '8080', TIMEOUT_MS: '250', TTL_SEC: '30', MODE: 'open', TLS: '1', NAME: ' orders ', UPSTREAM_URL: 'http://127.0.0.1:1', ALGS: 'RS256, ES256 RS256' };

t.test('values are parsed, trimmed, frozen; a list keeps order without duplicates', async (t) => {
  const v = parseEnv(schema, good);
  t.same(v, { PORT: 8080, TIMEOUT_MS: 250, TTL_SEC: 30, MODE: 'open', TLS: true, NAME: 'orders', UPSTREAM_URL: 'http://127.0.0.1:1', ALGS: ['RS256', 'ES256'] });
  t.ok(Object.isFrozen(v));
});

t.test('unset, empty and blank take the default; a required one is still missing', async (t) => {
  const d = { PORT: '3001', TIMEOUT_MS: '5000', TTL_SEC: '300', MODE: 'closed', TLS: 'false', NAME: 'x', UPSTREAM_URL: 'http://a', ALGS: 'RS256' };
  t.equal(parseEnv(schema, { PORT: '' }, d).PORT, 3001);
  t.equal(parseEnv(schema, { PORT: '   ' }, d).PORT, 3001);
  t.throws(() => parseEnv(z.object({ NAME: envText() }), { NAME: ' ' }), { name: 'ConfigError', variable: 'NAME' });
});

t.test('one ConfigError names every bad variable, why, and the value given', async (t) => {
  const err = t.throws(() =>
    parseEnv(schema, { ...good, PORT: 'eighty', TIMEOUT_MS: '0', TTL_SEC: '3600', MODE: 'maybe', TLS: 'yes', UPSTREAM_URL: 'ftp://x', ALGS: 'HS256' }),
  ) as ConfigError;
  t.ok(err instanceof ConfigError);
  t.equal(err.variable, 'PORT');
  t.same(err.problems.map((p) => p.variable), ['PORT', 'TIMEOUT_MS', 'TTL_SEC', 'MODE', 'TLS', 'UPSTREAM_URL', 'ALGS']);
  t.match(err.message, /^invalid configuration: PORT: must be a whole number from 0 to 65535 \(got "eighty"\); /);
  t.match(err.message, /TIMEOUT_MS: must be at least 1 ms \(got "0"\)/);
  t.match(err.message, /TTL_SEC: must be at most 300 s \(got "3600"\)/);
  t.match(err.message, /MODE: must be closed or open \(got "maybe"\)/);
  t.match(err.message, /TLS: must be true or false/);
  t.match(err.message, /UPSTREAM_URL: must be a http:\/\/ or https:\/\/ URL;/);
  t.match(err.message, /ALGS: must be RS256 or ES256/);
});

t.test('a value that may be a secret is never echoed', async (t) => {
  const secrets = z.object({ REDIS_URL: envUrl(['redis:']), DB_PASSWORD: envInt(0, 1), SIGNING_KEY_PRIVATE_JWK: envText().pipe(z.string().startsWith('{')) });
  const err = t.throws(() => parseEnv(secrets, { REDIS_URL: 'http://u:hunter2@x', DB_PASSWORD: 'hunter2', SIGNING_KEY_PRIVATE_JWK: 'hunter2' })) as Error;
  t.match(err.message, /REDIS_URL: .*DB_PASSWORD: .*SIGNING_KEY_PRIVATE_JWK: /);
  t.notMatch(err.message, /hunter2/);
});

t.test('readConfigFile names the variable and the file; the read error is the cause', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'jwtmesh-env-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'ok.pem'), 'pem');
  t.equal(readConfigFile('AUTHZ_TLS_CERT', join(dir, 'ok.pem')).toString(), 'pem');
  const err = t.throws(() => readConfigFile('AUTHZ_TLS_KEY', join(dir, 'nope.key'))) as ConfigError;
  t.equal(err.variable, 'AUTHZ_TLS_KEY');
  t.match(err.message, /^invalid configuration: AUTHZ_TLS_KEY: cannot read .*nope\.key \(ENOENT\)$/);
  t.equal((err.cause as NodeJS.ErrnoException).code, 'ENOENT');
});
