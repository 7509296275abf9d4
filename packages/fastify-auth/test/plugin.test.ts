import { randomUUID } from 'node:crypto';
import { createAuthenticator, createRemoteKeySource, createVerifier, type Identity } from '@jwt-mesh/core';
import { createRedisRevocation } from '@jwt-mesh/core/redis';
import { startTestIssuer, TEST_REDIS_URL, uniquePrefix } from '@jwt-mesh/runtime/testing';
import Fastify, { type FastifyInstance } from 'fastify';
import t from 'tap';
import { request as undiciRequest } from 'undici';
import { fastifyAuth, requireScope, type AuthOutcome } from '../src/index.js';

const issuer = await startTestIssuer();
const revocation = createRedisRevocation({ redisUrl: TEST_REDIS_URL, prefix: uniquePrefix('fastify-auth') });
await revocation.ready();
await revocation.resync(async () => undefined); // the issuer's re-sync (nothing revoked yet): the sync marker
const verifier = createVerifier({ issuer: issuer.issuer, audience: issuer.audience, keys: createRemoteKeySource({ url: issuer.jwksUrl }) });
const authenticator = createAuthenticator({ verifier, revocation });
t.teardown(async () => {
  await revocation.close();
  await issuer.close();
});

const outcomes: AuthOutcome[] = [];

async function build(): Promise<FastifyInstance> {
  const app = Fastify();
  await app.register(fastifyAuth, { authenticator, realm: 'test', onDecision: (o) => outcomes.push(o) });
  app.get('/healthz', { config: { auth: false } }, async (request) => ({ ok: true, identity: request.identity }));
  app.get('/me', async (request) => ({ identity: request.identity as Identity }));
  app.get('/orders', { config: { auth: { scopes: ['orders:read'] } } }, async (request) => ({ sub: request.identity?.sub }));
  app.post('/orders', { preHandler: requireScope('orders:write') }, async (request) => ({ sub: request.identity?.sub }));
  app.get('/admin', { config: { auth: { anyRole: ['admin'] } } }, async (request) => ({ sub: request.identity?.sub }));
  await app.ready();
  return app;
}

const app = await build();
t.teardown(() => app.close());

t.test('a valid token: 200 and the verified identity on request.identity', async (t) => {
  const sid = `sid-${randomUUID()}`;
  const token = await issuer.mint({ sub: 'alice', scope: 'orders:read profile:read', sid, roles: ['user'] });
  const res = await app.inject({ method: 'GET', url: '/me', headers: { authorization: `Bearer ${token}` } });
  t.equal(res.statusCode, 200);
  const { identity } = res.json() as { identity: Identity };
  t.equal(identity.sub, 'alice');
  t.equal(identity.sid, sid);
  t.same(identity.scopes, ['orders:read', 'profile:read']);
  t.same(identity.roles, ['user']);
  t.ok(identity.jti.length > 0);
  // The scheme is case-insensitive (RFC 6750 §2.1 / RFC 9110 §11.1).
  const lower = await app.inject({ method: 'GET', url: '/me', headers: { authorization: `bearer ${token}` } });
  t.equal(lower.statusCode, 200);
});

t.test('no token: 401 with a bare Bearer challenge carrying the realm', async (t) => {
  const res = await app.inject({ method: 'GET', url: '/me' });
  t.equal(res.statusCode, 401);
  t.equal(res.headers['www-authenticate'], 'Bearer realm="test"');
  t.equal(res.headers['cache-control'], 'no-store');
  t.equal(res.json().error, 'unauthorized');
  // A Basic credential is "no Bearer credentials", also 401.
  const basic = await app.inject({ method: 'GET', url: '/me', headers: { authorization: 'Basic YTpi' } });
  t.equal(basic.statusCode, 401);
});

t.test('an expired token: 401 invalid_token', async (t) => {
  const token = await issuer.mint({ sub: 'alice', iatOffsetSec: -600, ttlSec: 120 });
  const res = await app.inject({ method: 'GET', url: '/me', headers: { authorization: `Bearer ${token}` } });
  t.equal(res.statusCode, 401);
  t.match(res.headers['www-authenticate'], /^Bearer realm="test", error="invalid_token", error_description="the token has expired"$/);
  t.same(res.json(), { error: 'invalid_token', error_description: 'the token has expired' });
});

t.test('a malformed or foreign token: 401 invalid_token, never a 500', async (t) => {
  for (const token of ['not.a.jwt', 'abc', await issuer.mint({ aud: 'someone-else' }), await issuer.mint({ iss: 'http://evil.test' })]) {
    const res = await app.inject({ method: 'GET', url: '/me', headers: { authorization: `Bearer ${token}` } });
    t.equal(res.statusCode, 401, token.slice(0, 12));
    t.equal(res.json().error, 'invalid_token');
  }
});

t.test('a revoked token (jti in Redis): 401 invalid_token', async (t) => {
  const jti = randomUUID();
  const token = await issuer.mint({ sub: 'alice', jti });
  const before = await app.inject({ method: 'GET', url: '/me', headers: { authorization: `Bearer ${token}` } });
  t.equal(before.statusCode, 200);
  await revocation.revoke({ kind: 'jti', id: jti }, Math.floor(Date.now() / 1000) + 300);
  const after = await app.inject({ method: 'GET', url: '/me', headers: { authorization: `Bearer ${token}` } });
  t.equal(after.statusCode, 401);
  t.same(after.json(), { error: 'invalid_token', error_description: 'the token has been revoked' });
});

t.test('a revoked session (sid) rejects every token of it', async (t) => {
  const sid = `sid-${randomUUID()}`;
  const token = await issuer.mint({ sub: 'bob', sid });
  await revocation.revoke({ kind: 'sid', id: sid }, Math.floor(Date.now() / 1000) + 300);
  const res = await app.inject({ method: 'GET', url: '/me', headers: { authorization: `Bearer ${token}` } });
  t.equal(res.statusCode, 401);
});

t.test('a missing scope: 403 insufficient_scope with the needed scope in the challenge', async (t) => {
  const token = await issuer.mint({ sub: 'alice', scope: 'profile:read' });
  const res = await app.inject({ method: 'GET', url: '/orders', headers: { authorization: `Bearer ${token}` } });
  t.equal(res.statusCode, 403);
  t.match(res.headers['www-authenticate'], /error="insufficient_scope"/);
  t.match(res.headers['www-authenticate'], /scope="orders:read"/);
  t.equal(res.json().error, 'insufficient_scope');

  const ok = await app.inject({ method: 'GET', url: '/orders', headers: { authorization: `Bearer ${await issuer.mint({ scope: 'orders:read' })}` } });
  t.equal(ok.statusCode, 200);
});

t.test('requireScope() preHandler: 403 without the scope, 200 with it', async (t) => {
  const without = await app.inject({ method: 'POST', url: '/orders', headers: { authorization: `Bearer ${await issuer.mint({ scope: 'orders:read' })}` } });
  t.equal(without.statusCode, 403);
  t.match(without.headers['www-authenticate'], /scope="orders:write"/);
  const withScope = await app.inject({ method: 'POST', url: '/orders', headers: { authorization: `Bearer ${await issuer.mint({ sub: 'carol', scope: 'orders:write' })}` } });
  t.equal(withScope.statusCode, 200);
  t.equal(withScope.json().sub, 'carol');
});

t.test('anyRole: 403 without one of the roles', async (t) => {
  const res = await app.inject({ method: 'GET', url: '/admin', headers: { authorization: `Bearer ${await issuer.mint({ roles: ['user'] })}` } });
  t.equal(res.statusCode, 403);
  const admin = await app.inject({ method: 'GET', url: '/admin', headers: { authorization: `Bearer ${await issuer.mint({ roles: ['admin'] })}` } });
  t.equal(admin.statusCode, 200);
});

t.test('identity headers are ignored: a forged x-jwt-mesh-sub does not change request.identity', async (t) => {
  const token = await issuer.mint({ sub: 'alice', scope: 'orders:read' });
  const res = await app.inject({
    method: 'GET',
    url: '/me',
    headers: { authorization: `Bearer ${token}`, 'x-jwt-mesh-sub': 'mallory', 'x-jwt-mesh-scope': 'admin', 'x-jwt-mesh-roles': 'admin' },
  });
  t.equal(res.statusCode, 200);
  const { identity } = res.json() as { identity: Identity };
  t.equal(identity.sub, 'alice');
  t.same(identity.roles, []);
  // Identity headers alone authenticate nothing.
  const alone = await app.inject({ method: 'GET', url: '/me', headers: { 'x-jwt-mesh-sub': 'mallory' } });
  t.equal(alone.statusCode, 401);
  const admin = await app.inject({ method: 'GET', url: '/admin', headers: { authorization: `Bearer ${token}`, 'x-jwt-mesh-roles': 'admin' } });
  t.equal(admin.statusCode, 403);
});

t.test('two Authorization headers: 400 invalid_request (inject)', async (t) => {
  const a = await issuer.mint({ sub: 'alice' });
  const b = await issuer.mint({ sub: 'bob' });
  const res = await app.inject({ method: 'GET', url: '/me', headers: { authorization: [`Bearer ${a}`, `Bearer ${b}`] as unknown as string } });
  t.equal(res.statusCode, 400);
  t.equal(res.json().error, 'invalid_request');
  t.match(res.headers['www-authenticate'], /error="invalid_request"/);
  const joined = await app.inject({ method: 'GET', url: '/me', headers: { authorization: `Bearer ${a}, Bearer ${b}` } });
  t.equal(joined.statusCode, 400);
});

t.test('two Authorization headers on the wire: 400, although Node keeps only the first', async (t) => {
  await app.listen({ port: 0, host: '127.0.0.1' });
  const { port } = app.server.address() as { port: number };
  const a = await issuer.mint({ sub: 'alice' });
  const b = await issuer.mint({ sub: 'bob' });
  const res = await undiciRequest(`http://127.0.0.1:${port}/me`, { headers: ['authorization', `Bearer ${a}`, 'authorization', `Bearer ${b}`] });
  t.equal(res.statusCode, 400);
  t.equal(((await res.body.json()) as { error: string }).error, 'invalid_request');
  const one = await undiciRequest(`http://127.0.0.1:${port}/me`, { headers: { authorization: `Bearer ${a}` } });
  t.equal(one.statusCode, 200);
  await one.body.dump();
});

t.test('auth: false routes read no token and leave request.identity null', async (t) => {
  const res = await app.inject({ method: 'GET', url: '/healthz', headers: { authorization: 'Bearer garbage' } });
  t.equal(res.statusCode, 200);
  t.same(res.json(), { ok: true, identity: null });
});

t.test('unknown routes are authenticated before the 404 (no route discovery without a token)', async (t) => {
  const res = await app.inject({ method: 'GET', url: '/nope' });
  t.equal(res.statusCode, 401);
});

t.test('onDecision reports outcomes by reason', async (t) => {
  t.ok(outcomes.includes('allow'));
  t.ok(outcomes.includes('credentials_missing'));
  t.ok(outcomes.includes('token_expired'));
  t.ok(outcomes.includes('token_revoked'));
  t.ok(outcomes.includes('insufficient_scope'));
  t.ok(outcomes.includes('credentials_multiple'));
});

t.test('registration without an authenticator fails at start-up', async (t) => {
  const bad = Fastify();
  await t.rejects(async () => { await bad.register(fastifyAuth, {}).ready(); }, /needs `authenticator`/);
});
