// Least privilege on the revocation store: the Redis ACL users of `redisAclRules`, loaded from
// an ACL file into a redis-server of this test's own (never the shared Redis: its ACLs are not
// ours to change). A verifier's user gets NOPERM for every write; the issuer's user and the
// verifier's user together still run the whole revocation path; rediss:// works the same.
import { randomBytes, randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import t from 'tap';
import { startRedisServer, type RedisServer } from '@jwt-mesh/testkit';
import type { RedisConnectionOptions } from '@jwt-mesh/core';
import { REDIS_ACL_USERS, redisAclFile, redisAclRules, redisClientOptions } from '@jwt-mesh/core/redis';
import { nowSec, outcome, store, tok } from '../../packages/core/test/redis-helpers.js';

const PREFIX = 'jwtmesh-acl:';
const secret = () => randomBytes(24).toString('hex');
const passwords = { issuer: secret(), verifier: secret(), admin: secret() };
const rules = redisAclRules(PREFIX);
const aclFile = redisAclFile([
  { name: REDIS_ACL_USERS.issuer, password: passwords.issuer, rules: rules.issuer },
  { name: REDIS_ACL_USERS.verifier, password: passwords.verifier, rules: rules.verifier },
  // The test's own view of the server (set-up and checks only).
  { name: 'test-admin', password: passwords.admin, rules: ['~*', '&*', '+@all'] },
]);
const issuerConn: RedisConnectionOptions = { username: REDIS_ACL_USERS.issuer, password: passwords.issuer };
const verifierConn: RedisConnectionOptions = { username: REDIS_ACL_USERS.verifier, password: passwords.verifier };


function client(t: { teardown(fn: () => unknown): void }, server: RedisServer, conn: RedisConnectionOptions): Redis {
  const r = new Redis(server.url, { ...redisClientOptions(server.url, conn), maxRetriesPerRequest: 0, retryStrategy: () => null });
  r.on('error', () => undefined);
  t.teardown(() => r.disconnect());
  return r;
}

/** The error a command got (its message), or `ok`. */
async function errorOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (err) {
    return (err as Error).message;
  }
}

t.test('redisAclRules: the exact rules, and a prefix that could reach a pattern is refused', async (t) => {
  t.same(rules.verifier, [
    'resetkeys', 'resetchannels',
    '%R~jwtmesh-acl:rv:jti:*', '%R~jwtmesh-acl:rv:sid:*', '%R~jwtmesh-acl:rv:sub:*', '%R~jwtmesh-acl:rv:synced',
    '&jwtmesh-acl:revocations',
    '-@all', '+mget', '+info', '+subscribe', '+ping', '+select', '+client|setname',
  ]);
  t.same(rules.issuer, [
    'resetkeys', 'resetchannels', '~jwtmesh-acl:rv:*', '~jwtmesh-acl:rl:*', '&jwtmesh-acl:revocations',
    '-@all', '+get', '+mget', '+set', '+del', '+exists', '+ttl', '+incr', '+pexpire', '+pttl',
    '+eval', '+evalsha', '+publish', '+subscribe', '+info', '+ping', '+select', '+client|setname',
  ]);
  t.equal(redisAclRules().verifier[2], '%R~jwtmesh:rv:jti:*', 'default prefix');
  for (const bad of ['a*', 'a b', '', 'x?', '[x]', 'a\nuser evil on nopass +@all']) t.throws(() => redisAclRules(bad), TypeError, JSON.stringify(bad));
  t.throws(() => redisAclFile([{ name: 'default', password: 'x', rules: [] }]), TypeError);
  t.throws(() => redisAclFile([{ name: 'a', password: '', rules: [] }]), TypeError);
  t.throws(() => redisAclFile([{ name: 'a', password: 'x', rules: ['+get +set'] }]), TypeError);
  t.notMatch(aclFile, passwords.issuer, 'the file holds hashes, not passwords');
  t.match(aclFile, /^user default off /m, 'the default user is off');
});

t.test('a verifier\'s credentials: NOPERM for every write, on the revocation keys and anywhere', async (t) => {
  const server = await startRedisServer(t, { aclFile });
  const admin = client(t, server, { username: 'test-admin', password: passwords.admin });
  const key = `${PREFIX}rv:jti:${randomUUID()}`;
  const marker = `${PREFIX}rv:synced`;
  await admin.set(key, '1');
  await admin.set(marker, 'x');
  const v = client(t, server, verifierConn);
  const denied: Array<[string, () => Promise<unknown>]> = [
    ['SET', () => v.set(key, '2')],
    ['SET (marker)', () => v.set(marker, 'forged')],
    ['DEL', () => v.del(key)],
    ['DEL (marker)', () => v.del(marker)],
    ['UNLINK', () => v.unlink(key)],
    ['EXPIRE', () => v.expire(key, 1)],
    ['GETDEL', () => v.getdel(key)],
    ['FLUSHALL', () => v.flushall()],
    ['FLUSHDB', () => v.flushdb()],
    ['PUBLISH', () => v.publish(`${PREFIX}revocations`, '{"kind":"jti","id":"x"}')],
    ['EVAL', () => v.eval("return redis.call('DEL', KEYS[1])", 1, key)],
    ['EVAL (read-only script)', () => v.eval("return redis.call('GET', KEYS[1])", 1, key)],
    ['EVALSHA', () => v.evalsha('0'.repeat(40), 1, key)],
    ['FCALL', () => v.call('FCALL', 'f', 1, key)],
    ['SCRIPT FLUSH', () => v.script('FLUSH')],
    ['CONFIG SET', () => v.config('SET', 'appendonly', 'no')],
    ['ACL SETUSER', () => v.acl('SETUSER', REDIS_ACL_USERS.verifier, '+@all')],
    ['KEYS', () => v.keys('*')],
    ['MGET outside the prefix', () => v.mget('other:key')],
    ['MGET of a re-sync nonce', () => v.mget(`${PREFIX}rv:syncing:x`)],
    ['SUBSCRIBE to another channel', () => client(t, server, verifierConn).subscribe('other-channel')],
  ];
  for (const [what, run] of denied) t.match(await errorOf(run()), /^NOPERM/, `${what}: NOPERM`);
  t.same(await v.mget(key, marker), ['1', 'x'], 'it can read the revocation keys and the marker');
  t.match(await v.info('replication'), /role:master/, 'and INFO (the server identity)');
  t.equal(await admin.get(key), '1', 'the entry survived');
  t.equal(await admin.get(marker), 'x', 'the marker is not forged');
  const log = (await admin.acl('LOG', '100')) as unknown[];
  t.ok(log.length > 0, 'the denials are in ACL LOG');
});

t.test('the issuer\'s credentials: only its keys and channel, no admin command', async (t) => {
  const server = await startRedisServer(t, { aclFile });
  const i = client(t, server, issuerConn);
  for (const [what, run] of [
    ['FLUSHALL', () => i.flushall()],
    ['SET outside the prefix', () => i.set('other:key', '1')],
    ['PUBLISH on another channel', () => i.publish('other', 'x')],
    ['CONFIG GET', () => i.config('GET', '*')],
    ['KEYS', () => i.keys('*')],
    ['a script touching a key it did not declare outside the prefix', () => i.eval("return redis.call('SET', 'other:key', '1')", 0)],
  ] as Array<[string, () => Promise<unknown>]>) {
    t.match(await errorOf(run()), /NOPERM|can't access/, `${what}: refused`);
  }
  // The auth-service's rate-limit script (@fastify/rate-limit): INCR, PEXPIRE, PTTL on <prefix>rl:*.
  const rl = `${PREFIX}rl:login:127.0.0.1`;
  const [count, pttl] = (await i.eval("local c = redis.call('INCR', KEYS[1]); redis.call('PEXPIRE', KEYS[1], 60000); return {c, redis.call('PTTL', KEYS[1])}", 1, rl)) as [number, number];
  t.equal(count, 1, 'INCR');
  t.ok(pttl > 0 && pttl <= 60_000, `PEXPIRE and PTTL (${pttl} ms)`);
});

t.test('the revocation path works with these users: lookup, marker, subscribe, re-sync, revoke', async (t) => {
  const server = await startRedisServer(t, { aclFile });
  const errors: string[] = [];
  const verifier = store(t, {
    redisUrl: server.url,
    connection: verifierConn,
    prefix: PREFIX,
    cacheTtlMs: 60_000,
    onError: (e, c) => void (c === 'sync' || errors.push(`${c}: ${e.message}`)), // 'sync': the expected refusal before the re-sync
  });
  const issuer = store(t, { redisUrl: server.url, connection: issuerConn, prefix: PREFIX });
  await Promise.all([verifier.ready(), issuer.ready()]);
  t.ok(verifier.stats().subscribed, 'the verifier subscribed to the channel');
  const tk = tok();
  t.equal(await outcome(verifier.check(tk)), 'revocation_unavailable', 'before the issuer\'s re-sync: fail closed (no marker)');
  t.same(await issuer.resync(async () => 'published'), 'published', 'the issuer\'s re-sync writes the marker');
  t.equal(await issuer.checkSynced(), true, 'its marker check script runs');
  t.equal(await outcome(verifier.check(tk)), 'null', 'the verifier reads the keys and the marker');
  t.equal(await outcome(verifier.check(tk)), 'null', 'cached');
  const before = verifier.stats().invalidations;
  await issuer.revoke({ kind: 'jti', id: tk.jti }, nowSec() + 60);
  await issuer.revoke({ kind: 'sub', id: tk.sub, before: nowSec() + 1 }, nowSec() + 60);
  for (let i = 0; i < 100 && verifier.stats().invalidations < before + 2; i++) await new Promise((r) => setTimeout(r, 20));
  t.ok(verifier.stats().invalidations >= before + 2, 'the verifier got the invalidations');
  t.equal(await outcome(verifier.check(tk)), 'jti', 'and sees the revocation at once, despite its 60 s cache');
  t.equal(await outcome(verifier.check({ ...tok(), sub: tk.sub })), 'sub');
  t.same(errors, [], 'no Redis error on the verifier\'s side');
});

t.test('wrong credentials: the verifier fails closed, and no error names the password', async (t) => {
  const server = await startRedisServer(t, { aclFile });
  const errors: string[] = [];
  const wrong = 'not-the-password-' + secret();
  const verifier = store(t, { redisUrl: server.url, connection: { username: REDIS_ACL_USERS.verifier, password: wrong }, prefix: PREFIX, onError: (e) => errors.push(e.message) });
  await t.rejects(verifier.ready(1_000), /not ready/);
  t.equal(await outcome(verifier.check(tok())), 'revocation_unavailable');
  t.ok(errors.some((m) => /WRONGPASS/.test(m)), 'the cause is reported: WRONGPASS');
  t.notOk(errors.some((m) => m.includes(wrong)), 'never the password');
  const anonymous = new Redis(server.url, { maxRetriesPerRequest: 0, retryStrategy: () => null, lazyConnect: true, enableReadyCheck: false });
  anonymous.on('error', () => undefined);
  t.teardown(() => anonymous.disconnect());
  await anonymous.connect();
  t.match(await errorOf(anonymous.mget(`${PREFIX}rv:synced`)), /NOAUTH/, 'no credentials: nothing (the default user is off)');
});

t.test('rediss:// (TLS): the same users over TLS; a server the CA did not sign is refused', async (t) => {
  const server = await startRedisServer(t, { aclFile, tls: true });
  t.match(server.url, /^rediss:/);
  const ca = server.tlsCa as string;
  const verifier = store(t, { redisUrl: server.url, connection: { ...verifierConn, tlsCa: ca }, prefix: PREFIX, cacheTtlMs: 0 });
  const issuer = store(t, { redisUrl: server.url, connection: { ...issuerConn, tlsCa: ca }, prefix: PREFIX });
  await Promise.all([verifier.ready(), issuer.ready()]);
  await issuer.resync(async () => undefined);
  const tk = tok();
  t.equal(await outcome(verifier.check(tk)), 'null');
  await issuer.revoke({ kind: 'sid', id: tk.sid }, nowSec() + 60);
  t.equal(await outcome(verifier.check(tk)), 'sid', 'revoke and lookup over TLS');
  const v = client(t, server, { ...verifierConn, tlsCa: ca });
  t.match(await errorOf(v.set(`${PREFIX}rv:synced`, 'forged')), /^NOPERM/, 'the ACLs hold over TLS');

  const errors: string[] = [];
  const untrusting = store(t, { redisUrl: server.url, connection: verifierConn, prefix: PREFIX, onError: (e) => errors.push(e.message) });
  await t.rejects(untrusting.ready(1_000), /not ready/, 'without the CA (Node\'s default store): no connection');
  t.equal(await outcome(untrusting.check(tk)), 'revocation_unavailable', 'and the verifier fails closed');
  t.ok(errors.some((m) => /certificate|self.signed/i.test(m)), `a certificate error is reported (${errors[0] ?? 'none'})`);
  t.throws(() => redisClientOptions('redis://127.0.0.1:6379', { tlsCa: ca }), TypeError, 'a CA for a plain redis:// URL is refused');
});
