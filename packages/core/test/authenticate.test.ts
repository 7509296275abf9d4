import t from 'tap';
import { createAuthenticator } from '../src/authenticate.js';
import { cacheCounterDefinitions } from '../src/cache-metrics.js';
import { AuthError } from '../src/errors.js';
import { createLocalKeySource } from '../src/jwks.js';
import { parsePolicy } from '../src/policy.js';
import { createMemoryRevocationForTests } from '../src/revocation/memory.js';
import type { AuthRequest, Decision, RevocationChecker } from '../src/types.js';
import { createVerifier, type Verifier } from '../src/verify.js';
import { AUDIENCE, ISSUER, atHeader, claims, fakeClock, makeKey, signWith } from './fixtures/tokens.js';

const key = makeKey('ES256', 'auth-1');
const policy = parsePolicy({
  rules: [
    { id: 'health', pathPrefix: '/healthz', public: true },
    { id: 'orders-read', methods: ['GET'], pathPrefix: '/api/orders', scopes: ['orders:read'] },
    { id: 'orders-write', methods: ['POST'], pathPrefix: '/api/orders', scopes: ['orders:read', 'orders:write'] },
    { id: 'admin', pathPrefix: '/admin', anyRole: ['admin', 'ops'] },
    { id: 'api', pathPrefix: '/api' },
  ],
});

function setup(over: { tolerance?: number; cache?: number; revocation?: RevocationChecker; deadlineMs?: number } = {}) {
  const clock = fakeClock();
  const inner = createVerifier({
    issuer: ISSUER,
    audience: AUDIENCE,
    algorithms: ['ES256'],
    keys: createLocalKeySource({ keys: [key.jwk] }),
    clockToleranceSec: over.tolerance ?? 30,
    now: clock.now,
  });
  let verifications = 0;
  const verifier: Verifier = {
    verify(token) {
      verifications++;
      return inner.verify(token);
    },
  };
  const revocation = createMemoryRevocationForTests();
  const auth = createAuthenticator({
    verifier,
    revocation: over.revocation ?? revocation,
    policy,
    now: clock.now,
    ...(over.cache !== undefined ? { verifiedCacheMaxEntries: over.cache } : {}),
    ...(over.deadlineMs !== undefined ? { deadlineMs: over.deadlineMs } : {}),
  });
  const token = (c: Record<string, unknown> = {}) => signWith(key, atHeader(key), claims(clock.sec, c));
  const req = (method: string, path: string, tok?: string): AuthRequest => ({
    method,
    path,
    headers: tok === undefined ? {} : { authorization: `Bearer ${tok}` },
  });
  return { clock, auth, revocation, token, req, verifications: () => verifications };
}

function codeOf(d: Decision): string {
  if (d.allow) return 'allow';
  if (!(d.error instanceof AuthError)) throw new Error('unmapped error in a Decision');
  return d.error.code;
}

t.test('allow: identity and rule', async (t) => {
  const { auth, token, req } = setup();
  const d = await auth.decide(req('GET', '/api/orders/7', token({ sub: 'alice' })));
  t.equal(d.allow, true);
  if (d.allow) {
    t.equal(d.identity?.sub, 'alice');
    t.same(d.identity?.scopes, ['orders:read', 'orders:write']);
    t.equal(d.rule, 'orders-read');
  }
  t.equal(codeOf(await auth.decide(req('GET', '/api/other', token()))), 'allow', 'authenticated-only rule');
});

t.test('route policy: default deny, public routes, requirements', async (t) => {
  const { auth, token, req } = setup();
  const d = await auth.decide(req('GET', '/nothing', token()));
  t.equal(codeOf(d), 'route_denied');
  t.equal(d.rule, undefined);
  t.equal(codeOf(await auth.decide(req('GET', '/healthz/../api', token()))), 'route_denied', 'path trick');

  const pub = await auth.decide(req('GET', '/healthz'));
  t.same(pub, { allow: true, identity: null, rule: 'health' }, 'public without a token');
  const pubBad = await auth.decide({ method: 'GET', path: '/healthz', headers: { authorization: 'Bearer garbage.token' } });
  t.same(pubBad, { allow: true, identity: null, rule: 'health' }, 'public with a bad token: not failed on it');
  const pubTwo = await auth.decide({ method: 'GET', path: '/healthz', headers: { authorization: ['Bearer a', 'Bearer b'] } });
  t.equal(pubTwo.allow, true, 'public with two credentials');

  t.equal(codeOf(await auth.decide(req('GET', '/api/orders'))), 'credentials_missing');
  t.equal(codeOf(await auth.decide({ method: 'GET', path: '/api/orders', headers: { authorization: ['Bearer a', 'Bearer b'] } })), 'credentials_multiple');
  t.equal(codeOf(await auth.decide({ method: 'GET', path: '/api/orders', headers: { authorization: 'Bearer ' } })), 'credentials_malformed');
  t.equal(codeOf(await auth.decide(req('GET', '/api/orders', 'rt_opaque_refresh_token'))), 'token_typ_invalid');

  const scoped = await auth.decide(req('POST', '/api/orders', token({ scope: 'orders:read' })));
  t.equal(codeOf(scoped), 'insufficient_scope');
  if (!scoped.allow) {
    t.same(scoped.error.requiredScopes, ['orders:read', 'orders:write'], 'requiredScopes for the challenge');
    t.equal(scoped.rule, 'orders-write');
  }
  t.equal(codeOf(await auth.decide(req('POST', '/api/orders', token()))), 'allow');
  t.equal(codeOf(await auth.decide(req('GET', '/admin/x', token({ roles: ['user'] })))), 'insufficient_scope', 'no listed role');
  t.equal(codeOf(await auth.decide(req('GET', '/admin/x', token({ roles: undefined })))), 'insufficient_scope', 'no roles at all');
  t.equal(codeOf(await auth.decide(req('GET', '/admin/x', token({ roles: ['user', 'ops'] })))), 'allow', 'any one role');
});

t.test('an explicit requirement overrides the policy', async (t) => {
  const { auth, token, req } = setup();
  t.equal(codeOf(await auth.decide(req('GET', '/nothing', token()), {})), 'allow', '{} = authenticated');
  t.equal(codeOf(await auth.decide(req('GET', '/healthz', token()), null)), 'route_denied', 'null = deny');
  t.same(await auth.decide(req('GET', '/nothing'), { public: true }), { allow: true, identity: null });
  t.equal(codeOf(await auth.decide(req('GET', '/x', token()), { scopes: ['admin:all'] })), 'insufficient_scope');
  const noPolicy = createAuthenticator({ verifier: { verify: async () => { throw new AuthError('token_expired'); } }, revocation: createMemoryRevocationForTests() });
  t.equal(codeOf(await noPolicy.decide(req('GET', '/anything', token()))), 'token_expired', 'no policy: token required');
});

t.test('verified-token cache: a hit still checks revocation on every request', async (t) => {
  const { auth, token, req, revocation, verifications } = setup();
  const tok = token({ jti: 'j-cache', sid: 's-cache', sub: 'u-cache' });
  t.equal(codeOf(await auth.decide(req('GET', '/api/orders', tok))), 'allow');
  t.equal(codeOf(await auth.decide(req('GET', '/api/orders', tok))), 'allow');
  t.equal(verifications(), 1, 'second call served from the cache');
  t.equal(revocation.checks, 2, 'revocation checked both times');
  await revocation.revoke({ kind: 'jti', id: 'j-cache' }, 0);
  const d = await auth.decide(req('GET', '/api/orders', tok));
  t.equal(codeOf(d), 'token_revoked', 'revoked after the first success: denied on the cache hit');
  t.equal(verifications(), 1);

  const bySid = token({ sid: 's-2' });
  t.equal(codeOf(await auth.decide(req('GET', '/api/orders', bySid))), 'allow');
  await revocation.revoke({ kind: 'sid', id: 's-2' }, 0);
  t.equal(codeOf(await auth.decide(req('GET', '/api/orders', bySid))), 'token_revoked', 'sid');

  const { clock } = setup();
  const bySub = token({ sub: 'u-3', iat: clock.sec });
  t.equal(codeOf(await auth.decide(req('GET', '/api/orders', bySub))), 'allow');
  await revocation.revoke({ kind: 'sub', id: 'u-3', before: clock.sec }, 0);
  t.equal(codeOf(await auth.decide(req('GET', '/api/orders', bySub))), 'allow', 'iat == before: not revoked');
  await revocation.revoke({ kind: 'sub', id: 'u-3', before: clock.sec + 1 }, 0);
  t.equal(codeOf(await auth.decide(req('GET', '/api/orders', bySub))), 'token_revoked', 'iat < before');
});

t.test('cache entries never outlive the token', async (t) => {
  const { auth, token, req, clock, verifications } = setup({ tolerance: 0 });
  const tok = token({ iat: clock.sec, exp: clock.sec + 60 });
  t.equal(codeOf(await auth.decide(req('GET', '/api/orders', tok))), 'allow');
  clock.advance(59_999);
  t.equal(codeOf(await auth.decide(req('GET', '/api/orders', tok))), 'allow', 'just before exp: cache hit');
  t.equal(verifications(), 1);
  clock.advance(1);
  t.equal(codeOf(await auth.decide(req('GET', '/api/orders', tok))), 'token_expired', 'at exp: not from the cache');
  t.equal(verifications(), 2);

  const tolerant = setup({ tolerance: 30 });
  const tok2 = tolerant.token({ iat: tolerant.clock.sec, exp: tolerant.clock.sec + 60 });
  t.equal(codeOf(await tolerant.auth.decide(tolerant.req('GET', '/api/orders', tok2))), 'allow');
  tolerant.clock.advance(61_000);
  t.equal(codeOf(await tolerant.auth.decide(tolerant.req('GET', '/api/orders', tok2))), 'allow', 'inside the tolerance: verified again');
  t.equal(codeOf(await tolerant.auth.decide(tolerant.req('GET', '/api/orders', tok2))), 'allow');
  t.equal(tolerant.verifications(), 3, 'past exp it is never cached again');

  const off = setup({ cache: 0 });
  const tok3 = off.token();
  await off.auth.decide(off.req('GET', '/api/orders', tok3));
  await off.auth.decide(off.req('GET', '/api/orders', tok3));
  t.equal(off.verifications(), 2, 'verifiedCacheMaxEntries 0 disables the cache');
});

t.test('failures become denials, never throws', async (t) => {
  const down = createMemoryRevocationForTests();
  down.failing = true;
  const a = setup({ revocation: down });
  t.equal(codeOf(await a.auth.decide(a.req('GET', '/api/orders', a.token()))), 'revocation_unavailable');

  const hang: RevocationChecker = { check: () => new Promise(() => undefined) };
  const b = setup({ revocation: hang, deadlineMs: 50 });
  t.equal(codeOf(await b.auth.decide(b.req('GET', '/api/orders', b.token()))), 'deadline_exceeded');

  const broken: RevocationChecker = {
    check: async () => {
      throw new TypeError('boom');
    },
  };
  const c = setup({ revocation: broken });
  const d = await c.auth.decide(c.req('GET', '/api/orders', c.token()));
  t.equal(codeOf(d), 'internal');
  if (!d.allow) t.type(d.error.cause, TypeError, 'cause kept for logs');

  const throwingVerifier = createAuthenticator({
    verifier: {
      verify: () => {
        throw new Error('sync throw');
      },
    },
    revocation: createMemoryRevocationForTests(),
  });
  t.equal(codeOf(await throwingVerifier.decide(c.req('GET', '/x', c.token()))), 'internal', 'a synchronous throw');

  const weird = await c.auth.decide({} as AuthRequest);
  t.equal(codeOf(weird), 'internal', 'a request without method/path/headers');
  const weird2 = await c.auth.decide({ method: 'GET', path: '/api', headers: null } as unknown as AuthRequest);
  t.equal(codeOf(weird2), 'internal');

  t.throws(() => createAuthenticator({ verifier: c as never, revocation: down, deadlineMs: 0 }), RangeError);
  t.throws(() => createAuthenticator({ verifier: c as never, revocation: down, verifiedCacheMaxEntries: -1 }), RangeError);
});

t.test('deadlines: hung decisions expire, fast ones are unaffected, repeatedly', async (t) => {
  const sometimes: RevocationChecker = { check: ({ jti }) => (jti.startsWith('hang-') ? new Promise(() => undefined) : Promise.resolve(null)) };
  const a = setup({ revocation: sometimes, deadlineMs: 30 });
  for (let round = 0; round < 3; round++) {
    const hung = Array.from({ length: 5 }, (_, i) => a.auth.decide(a.req('GET', '/api/orders', a.token({ jti: `hang-${round}-${i}` }))));
    const fast = await Promise.all(Array.from({ length: 5 }, () => a.auth.decide(a.req('GET', '/api/orders', a.token()))));
    t.same(fast.map(codeOf), ['allow', 'allow', 'allow', 'allow', 'allow'], `round ${round}: fast decisions allowed`);
    t.same((await Promise.all(hung)).map(codeOf), Array(5).fill('deadline_exceeded'), `round ${round}: hung decisions denied`);
  }
});

t.test('stats: a hit per token answered from the verified-token cache, a miss per signature verification', async (t) => {
  const { auth, token, req, verifications } = setup();
  t.same(auth.stats?.(), { verifiedCacheHits: 0, verifiedCacheMisses: 0 }, 'nothing counted before a request');
  const a = token({ sub: 'alice' });
  const b = token({ sub: 'bob' });
  for (const tok of [a, a, a, b, b]) await auth.decide(req('GET', '/api/orders/7', tok));
  t.equal(verifications(), 2, 'two tokens verified by signature');
  t.same(auth.stats?.(), { verifiedCacheHits: 3, verifiedCacheMisses: 2 });
  await auth.decide(req('GET', '/api/orders/7', 'not.a.token'));
  t.same(auth.stats?.(), { verifiedCacheHits: 3, verifiedCacheMisses: 3 }, 'a token that fails verification is a miss');
  await auth.decide(req('GET', '/healthz'));
  t.same(auth.stats?.(), { verifiedCacheHits: 3, verifiedCacheMisses: 3 }, 'a public route without a token is neither');
});

t.test('cacheCounterDefinitions: the caches\' own counters, read at collect time', async (t) => {
  const { auth, token, req } = setup();
  const revocation = { stats: () => ({ cacheHits: 7, lookups: 2 }) };
  const defs = cacheCounterDefinitions('jwtmesh_', { authenticator: auth, revocation });
  t.same(defs.map((d) => d.name), ['jwtmesh_verified_token_cache_lookups_total', 'jwtmesh_revocation_cache_lookups_total']);
  const tok = token();
  await auth.decide(req('GET', '/api/orders/7', tok));
  await auth.decide(req('GET', '/api/orders/7', tok));
  const seen: Record<string, number> = {};
  for (const d of defs) {
    d.collect.call({ reset: () => undefined, inc: (labels, v) => void (seen[`${d.name}{${labels.result}}`] = v) });
  }
  t.same(seen, {
    'jwtmesh_verified_token_cache_lookups_total{hit}': 1,
    'jwtmesh_verified_token_cache_lookups_total{miss}': 1,
    'jwtmesh_revocation_cache_lookups_total{hit}': 7,
    'jwtmesh_revocation_cache_lookups_total{miss}': 2,
  });
  t.same(cacheCounterDefinitions('x_', { authenticator: { decide: auth.decide } as never }), [], 'an authenticator without stats: no counter');
});
