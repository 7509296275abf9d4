// REDIS_USERNAME / REDIS_PASSWORD_FILE / REDIS_TLS_CA_FILE beside REDIS_URL: read, validated
// with errors that name the variable, the password never echoed nor serialized.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import t from 'tap';
import { loadVerifierConfig } from '../src/config.js';
import { redisConnectionFromEnv } from '../src/redis-connection.js';

const dir = mkdtempSync(join(tmpdir(), 'jwtmesh-redis-conn-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const file = (name: string, text: string) => {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
};
const PASSWORD = 's3cr3t-Password-42';
const pwFile = file('password', `${PASSWORD}\n`);
const caPem = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
const caFile = file('ca.pem', caPem);

t.test('nothing set: no credentials beyond the URL', async (t) => {
  t.same(redisConnectionFromEnv({ REDIS_URL: 'redis://u:p@127.0.0.1:6379/0' }), {});
  t.same(loadVerifierConfig({}).redisConnection, {});
});

t.test('username and password file: read, trailing newline dropped, password hidden from logs', async (t) => {
  const c = redisConnectionFromEnv({ REDIS_URL: 'redis://127.0.0.1:6379/0', REDIS_USERNAME: 'jwtmesh-verifier', REDIS_PASSWORD_FILE: pwFile });
  t.equal(c.username, 'jwtmesh-verifier');
  t.equal(c.password, PASSWORD);
  t.notMatch(JSON.stringify(c), PASSWORD, 'not in JSON (pino)');
  t.notMatch(inspect(c), PASSWORD, 'not in util.inspect');
  t.ok(Object.isFrozen(c));
  const cfg = loadVerifierConfig({ REDIS_USERNAME: 'jwtmesh-verifier', REDIS_PASSWORD_FILE: pwFile });
  t.equal(cfg.redisConnection.password, PASSWORD, 'loadVerifierConfig reads it too');
  t.notMatch(JSON.stringify(cfg), PASSWORD);
  t.equal(redisConnectionFromEnv({ REDIS_URL: 'redis://127.0.0.1', REDIS_PASSWORD_FILE: pwFile }).password, PASSWORD, 'a password alone: the default user');
});

t.test('TLS CA file with rediss://', async (t) => {
  t.equal(redisConnectionFromEnv({ REDIS_URL: 'rediss://redis:6380/0', REDIS_TLS_CA_FILE: caFile }).tlsCa, caPem);
});

t.test('bad combinations and files: clear errors naming the variable, never the secret', async (t) => {
  const cases: Array<[Record<string, string>, RegExp]> = [
    [{ REDIS_URL: 'redis://u@h', REDIS_USERNAME: 'x', REDIS_PASSWORD_FILE: pwFile }, /REDIS_USERNAME: REDIS_URL already names a user; set it in one place$/],
    [{ REDIS_URL: `redis://:${PASSWORD}@h`, REDIS_PASSWORD_FILE: pwFile }, /REDIS_PASSWORD_FILE: REDIS_URL already carries a password; set it in one place$/],
    [{ REDIS_URL: 'redis://h', REDIS_USERNAME: 'jwtmesh-verifier' }, /REDIS_USERNAME: needs a password \(REDIS_PASSWORD_FILE, or in REDIS_URL\)$/],
    [{ REDIS_URL: 'redis://h', REDIS_USERNAME: 'a b', REDIS_PASSWORD_FILE: pwFile }, /REDIS_USERNAME: must be 1-128 printable ASCII/],
    [{ REDIS_URL: 'redis://h', REDIS_PASSWORD_FILE: join(dir, 'missing') }, /REDIS_PASSWORD_FILE: cannot read .*missing \(ENOENT\)$/],
    [{ REDIS_URL: 'redis://h', REDIS_PASSWORD_FILE: file('empty', '\n') }, /REDIS_PASSWORD_FILE: .* is empty$/],
    [{ REDIS_URL: 'redis://h', REDIS_PASSWORD_FILE: file('two-lines', 'a\nb\n') }, /one line/],
    [{ REDIS_URL: 'redis://h', REDIS_PASSWORD_FILE: file('huge', 'x'.repeat(5000)) }, /larger than 4096 bytes/],
    [{ REDIS_URL: 'redis://h', REDIS_TLS_CA_FILE: caFile }, /REDIS_TLS_CA_FILE: only with a rediss:\/\/ REDIS_URL$/],
    [{ REDIS_URL: 'rediss://h', REDIS_TLS_CA_FILE: pwFile }, /REDIS_TLS_CA_FILE: .* holds no PEM certificate$/],
    [{ REDIS_URL: 'rediss://h', REDIS_TLS_CA_FILE: join(dir, 'nope.pem') }, /REDIS_TLS_CA_FILE: cannot read/],
  ];
  for (const [env, re] of cases) {
    const err = t.throws(() => redisConnectionFromEnv(env)) as Error;
    t.match(err.message, re, JSON.stringify(Object.keys(env)));
    t.notMatch(err.message, PASSWORD, 'the password is never echoed');
  }
  t.throws(() => loadVerifierConfig({ REDIS_USERNAME: 'x' }), /^invalid configuration: REDIS_USERNAME: needs a password/);
});
