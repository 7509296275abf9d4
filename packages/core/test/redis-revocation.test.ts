// Redis revocation against the real Redis (REDIS_URL, default redis://127.0.0.1:6379/0).
// Every test uses its own key prefix (and so its own channel). These tests are about the store's
// own semantics, with the sync marker off; test/redis/redis-sync-marker.test.ts at the repository root tests the marker (default on).
import { randomUUID } from 'node:crypto';
import { createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { Redis } from 'ioredis';
import t from 'tap';
import { createAuthenticator } from '../src/authenticate.js';
import { AuthError } from '../src/errors.js';
import { createLocalKeySource } from '../src/jwks.js';
import { createRedisRevocation, type RedisRevocation, type RedisRevocationOptions } from '../src/revocation/redis.js';
import { createVerifier } from '../src/verify.js';
import { AUDIENCE, ISSUER, atHeader, claims, makeKey, signWith } from './fixtures/tokens.js';

const REDIS_URL = process.env['REDIS_URL'] ?? 'redis://127.0.0.1:6379/0';
const admin = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
t.teardown(() => admin.quit());

function store(t: { teardown(fn: () => unknown): void }, over: Partial<RedisRevocationOptions> = {}): RedisRevocation {
  const s = createRedisRevocation({ redisUrl: REDIS_URL, prefix: `jwtmesh-test:${randomUUID()}:`, requireSyncMarker: false, ...over });
  t.teardown(() => s.close());
  return s;
}

const nowSec = () => Math.floor(Date.now() / 1000);
const tok = (over: Partial<{ jti: string; sid: string | undefined; sub: string; iat: number }> = {}) => ({
  jti: `j-${randomUUID()}`,
  sid: `s-${randomUUID()}` as string | undefined,
  sub: `u-${randomUUID()}`,
  iat: nowSec(),
  ...over,
});

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    return JSON.stringify(await p);
  } catch (err) {
    if (!(err instanceof AuthError)) throw err;
    return err.code;
  }
}

t.test('revoke jti, sid, sub: check rejects', async (t) => {
  const s = store(t);
  await s.ready();
  const a = tok();
  t.equal(await s.check(a), null, 'not revoked');
  await s.revoke({ kind: 'jti', id: a.jti }, nowSec() + 300);
  t.equal(await s.check(a), 'jti');
  t.equal(await s.check({ ...a, jti: 'other' }), null, 'another jti of the same session');

  const b = tok();
  await s.revoke({ kind: 'sid', id: b.sid! }, nowSec() + 300);
  t.equal(await s.check(b), 'sid');
  t.equal(await s.check({ ...b, jti: 'x2' }), 'sid', 'every token of the family');
  t.equal(await s.check({ ...b, sid: undefined }), null, 'a token without sid is not touched');

  const c = tok({ iat: 1_000 });
  await s.revoke({ kind: 'sub', id: c.sub, before: 2_000 }, nowSec() + 300);
  t.equal(await s.check(c), 'sub', 'iat < before');
  t.equal(await s.check({ ...c, iat: 1_999 }), 'sub');
  t.equal(await s.check({ ...c, iat: 2_000 }), null, 'iat == before: issued after the cut');
  t.equal(await s.check({ ...c, iat: 3_000 }), null);
  await s.revoke({ kind: 'sub', id: c.sub, before: 1_500 }, nowSec() + 300);
  t.equal(await s.check({ ...c, iat: 1_800 }), 'sub', 'a later revoke with an earlier cut does not lower it');
});

t.test('TTL is max(1, expiresAt - now) seconds, never shortened', async (t) => {
  const prefix = `jwtmesh-test:${randomUUID()}:`;
  const s = store(t, { prefix });
  await s.ready();
  await s.revoke({ kind: 'jti', id: 'ttl-1' }, nowSec() + 120);
  const ttl1 = await admin.ttl(`${prefix}rv:jti:ttl-1`);
  t.ok(ttl1 >= 119 && ttl1 <= 121, `jti TTL ${ttl1} ~ 120`);
  await s.revoke({ kind: 'jti', id: 'ttl-1' }, nowSec() + 10);
  t.ok((await admin.ttl(`${prefix}rv:jti:ttl-1`)) >= 110, 'a shorter second revoke keeps the longer TTL');
  await s.revoke({ kind: 'sid', id: 'ttl-2' }, nowSec() - 50);
  t.equal(await admin.ttl(`${prefix}rv:sid:ttl-2`), 1, 'already expired: 1 s');
  await s.revoke({ kind: 'sub', id: 'ttl-3', before: 1_700_000_000 }, nowSec() + 300);
  t.equal(await admin.get(`${prefix}rv:sub:ttl-3`), '1700000000', 'sub value is the cut in epoch seconds');
  const ttl3 = await admin.ttl(`${prefix}rv:sub:ttl-3`);
  t.ok(ttl3 >= 299 && ttl3 <= 301, `sub TTL ${ttl3} ~ 300`);
  const v = await admin.get(`${prefix}rv:jti:ttl-1`);
  t.ok(v !== null && Math.abs(Number(v) - nowSec()) < 5, 'jti value is the revocation time');
});

t.test('pub/sub invalidation reaches a second instance\'s cache', async (t) => {
  const prefix = `jwtmesh-test:${randomUUID()}:`;
  const verifierSide = store(t, { prefix, cacheTtlMs: 60_000 }); // only the message can drop the entry
  const issuerSide = store(t, { prefix });
  await Promise.all([verifierSide.ready(), issuerSide.ready()]);
  const a = tok();
  t.equal(await verifierSide.check(a), null);
  t.equal(await verifierSide.check(a), null);
  t.equal(verifierSide.stats().cacheHits, 1, 'second check served from the cache');
  const lookups = verifierSide.stats().lookups;

  const started = process.hrtime.bigint();
  await issuerSide.revoke({ kind: 'jti', id: a.jti }, nowSec() + 300);
  let result: string | null = null;
  let polls = 0;
  while (result === null) {
    result = await verifierSide.check(a);
    polls++;
    if (result === null) await new Promise((r) => setImmediate(r));
    if (polls > 1_000_000) break;
  }
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  t.equal(result, 'jti', 'the other instance sees the revocation despite a 60 s cache');
  t.equal(verifierSide.stats().lookups, lookups + 1, 'exactly one fresh lookup after the invalidation');
  t.ok(verifierSide.stats().invalidations >= 1);
  t.comment(`revocation reached the second instance's cache in ${ms.toFixed(2)} ms (revoke() call included)`);
  console.log(`# pub/sub invalidation: ${ms.toFixed(2)} ms from revoke() to rejection on another instance`);
});

t.test('subscriber down: the cache is cleared and bypassed until resubscribed', async (t) => {
  const name = `jwtmesh-test-${randomUUID()}`;
  const s = store(t, { cacheTtlMs: 60_000, clientName: name });
  await s.ready();
  const a = tok();
  await s.check(a);
  await s.check(a);
  t.equal(s.stats().cacheHits, 1);
  // Kill only our own subscriber connection (other tests run in parallel): found by its name.
  const list = String(await admin.call('CLIENT', 'LIST', 'TYPE', 'pubsub'));
  const line = list.split('\n').find((l) => l.includes(` name=${name}-sub `));
  const id = line === undefined ? undefined : /\bid=(\d+)/.exec(line)?.[1];
  t.ok(id, 'our subscriber is listed');
  await admin.call('CLIENT', 'KILL', 'ID', id!);
  for (let i = 0; i < 500 && s.stats().subscribed; i++) await new Promise((r) => setTimeout(r, 2));
  t.equal(s.stats().subscribed, false, 'the drop was noticed');
  const before = s.stats();
  await s.check(a);
  await s.check(a);
  const during = s.stats();
  t.equal(during.cacheHits, before.cacheHits, 'no cache hits while unsubscribed (cache cleared and bypassed)');
  await s.ready(10_000);
  t.equal(s.stats().subscribed, true, 'resubscribed after the reconnect');
  await s.check(a);
  await s.check(a);
  t.ok(s.stats().cacheHits > during.cacheHits, 'cache in use again');
});

t.test('Redis unreachable: revocation_unavailable in deny mode, null in allow mode', async (t) => {
  const closed = createNetServer();
  await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
  const port = (closed.address() as AddressInfo).port;
  await new Promise<void>((r) => closed.close(() => r()));
  const url = `redis://127.0.0.1:${port}/0`;
  const errors: string[] = [];
  const deny = createRedisRevocation({ redisUrl: url, onError: (_e, ctx) => errors.push(ctx) });
  const deny2 = createRedisRevocation({ redisUrl: url, onUnavailable: 'deny' });
  const allow = createRedisRevocation({ redisUrl: url, onUnavailable: 'allow', onError: (_e, ctx) => errors.push(ctx) });
  t.teardown(() => Promise.all([deny.close(), deny2.close(), allow.close()]));
  t.equal(await codeOf(deny.check(tok())), 'revocation_unavailable', 'default is fail closed');
  t.equal(await codeOf(deny2.check(tok())), 'revocation_unavailable');
  t.equal(await allow.check(tok()), null, 'allow mode: unsafe fail open');
  t.ok(errors.includes('lookup'), 'failures are reported to onError');
  await t.rejects(deny.ready(200), /not ready/);
  await t.rejects(deny.revoke({ kind: 'jti', id: 'x' }, nowSec() + 10), 'revoke surfaces the Redis error');
});

t.test('Redis reachable but slower than lookupTimeoutMs', async (t) => {
  // A fake RESP server that answers the connection handshake but never answers MGET
  // (an injected fault; no real Redis can be slowed without affecting other tests).
  const sockets = new Set<Socket>();
  const fake: NetServer = createNetServer((sock) => {
    sockets.add(sock);
    sock.on('data', (buf) => {
      // Reply to each command in order; RESP arrays: *N, then $len NAME, then the arguments.
      const text = buf.toString('latin1');
      for (const m of text.matchAll(/\*\d+\r\n\$\d+\r\n([A-Za-z]+)\r\n(?:\$\d+\r\n([^\r]*)\r\n)?/g)) {
        const cmd = m[1]!.toLowerCase();
        if (cmd === 'info') {
          const body = '# Server\r\nrun_id:0123456789abcdef0123456789abcdef01234567\r\nloading:0\r\n# Replication\r\nrole:master\r\nmaster_replid:89abcdef0123456789abcdef0123456789abcdef\r\n';
          sock.write(`$${body.length}\r\n${body}\r\n`);
        } else if (cmd === 'subscribe') {
          const ch = m[2] ?? 'x';
          sock.write(`*3\r\n$9\r\nsubscribe\r\n$${ch.length}\r\n${ch}\r\n:1\r\n`);
        } else if (cmd !== 'mget') {
          sock.write('+OK\r\n'); // client setname, select, ...
        } // mget: silence
      }
    });
    sock.on('error', () => undefined);
  });
  await new Promise<void>((r) => fake.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    fake.close();
  });
  const url = `redis://127.0.0.1:${(fake.address() as AddressInfo).port}/0`;
  const deny = createRedisRevocation({ redisUrl: url, lookupTimeoutMs: 100 });
  const allow = createRedisRevocation({ redisUrl: url, lookupTimeoutMs: 100, onUnavailable: 'allow' });
  t.teardown(() => Promise.all([deny.close(), allow.close()]));
  await Promise.all([deny.ready(), allow.ready()]);
  t.equal(await codeOf(deny.check(tok())), 'revocation_unavailable', 'timed out lookup, deny mode');
  t.equal(await allow.check(tok()), null, 'timed out lookup, allow mode');
  t.equal(deny.stats().failures, 1);
});

t.test('authenticator end to end: a cache hit still checks Redis revocation', async (t) => {
  const key = makeKey('RS256', 'e2e');
  const verifier = createVerifier({ issuer: ISSUER, audience: AUDIENCE, keys: createLocalKeySource({ keys: [key.jwk] }) });
  const prefix = `jwtmesh-test:${randomUUID()}:`;
  const revocation = store(t, { prefix });
  const issuer = store(t, { prefix });
  await Promise.all([revocation.ready(), issuer.ready()]);
  const auth = createAuthenticator({ verifier, revocation });
  const request = (token: string) => ({ method: 'GET', path: '/api', headers: { authorization: `Bearer ${token}` } });

  // Revoked through the same store instance: its own cache entry is dropped at once.
  const c1 = claims(nowSec(), { jti: `j-${randomUUID()}` });
  const req1 = request(signWith(key, atHeader(key), c1));
  t.equal((await auth.decide(req1)).allow, true, 'first call: verified');
  t.equal((await auth.decide(req1)).allow, true, 'second call: verified-token cache hit');
  await revocation.revoke({ kind: 'jti', id: c1['jti'] as string }, c1['exp'] as number);
  const d = await auth.decide(req1);
  t.equal(d.allow, false, 'third call: denied although the token is in the verified-token cache');
  if (!d.allow) {
    t.ok(d.error instanceof AuthError);
    t.equal(d.error.code, 'token_revoked');
  }

  // Revoked by another instance (the issuer): reaches this verifier through pub/sub.
  const c2 = claims(nowSec(), { sid: `s-${randomUUID()}` });
  const req2 = request(signWith(key, atHeader(key), c2));
  t.equal((await auth.decide(req2)).allow, true);
  t.equal((await auth.decide(req2)).allow, true);
  await issuer.revoke({ kind: 'sid', id: c2['sid'] as string }, c2['exp'] as number);
  let d2 = await auth.decide(req2);
  for (let i = 0; i < 10_000 && d2.allow; i++) {
    await new Promise((r) => setImmediate(r));
    d2 = await auth.decide(req2);
  }
  t.equal(d2.allow, false, 'denied once the invalidation message arrives');
  if (!d2.allow) t.equal(d2.error.code, 'token_revoked');
});

t.test('bad options', async (t) => {
  t.throws(() => createRedisRevocation({ redisUrl: '' }), TypeError);
  t.throws(() => createRedisRevocation({ redisUrl: REDIS_URL, onUnavailable: 'maybe' as 'deny' }), TypeError);
  t.throws(() => createRedisRevocation({ redisUrl: REDIS_URL, cacheTtlMs: -1 }), RangeError);
  t.throws(() => createRedisRevocation({ redisUrl: REDIS_URL, lookupTimeoutMs: 0 }), RangeError);
});
