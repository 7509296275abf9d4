/**
 * The ext_authz Check server end to end over gRPC (127.0.0.1:0, plaintext: TLS has its own
 * test), with a real JWKS endpoint, real tokens, the real core, real Redis revocation and the
 * default policy.yaml. Requests are recorded-style CheckRequest fixtures.
 */
import t from 'tap';
import { generateKeyPair, SignJWT } from 'jose';
import { IDENTITY_HEADERS } from '../src/check.js';
import { AUDIENCE, GRPC, ISSUER, denied, fixture, okHeaders, startAuthz, startIssuer, type Issuer, type RunningAuthz } from './helpers/harness.js';

let issuer: Issuer;
let srv: RunningAuthz;

t.before(async () => {
  issuer = await startIssuer();
  srv = await startAuthz({ issuer });
});
t.teardown(async () => {
  await srv.close();
  await issuer.close();
});

t.test('valid token: OK with identity headers, Authorization untouched', async (t) => {
  const token = await issuer.mint({ sub: 'alice', scope: 'orders:read profile:read', roles: ['customer', 'beta'], sid: 'sess-1', jti: 'jti-valid-1', client_id: 'web' });
  const res = await srv.check(fixture('get-orders', token));
  t.equal(res.status?.code, GRPC.OK);
  t.equal(res.http_response, 'ok_response');
  const { set, actions, removed, ok } = okHeaders(res);
  t.same(set, {
    'x-jwt-mesh-sub': 'alice',
    'x-jwt-mesh-scope': 'orders:read profile:read',
    'x-jwt-mesh-sid': 'sess-1',
    'x-jwt-mesh-jti': 'jti-valid-1',
    'x-jwt-mesh-roles': 'customer,beta',
    'x-jwt-mesh-client-id': 'web',
  });
  t.ok(actions.every((a) => a === 'OVERWRITE_IF_EXISTS_OR_ADD'), 'every identity header overwrites');
  t.ok(ok.headers.every((h) => h.append === null), 'the deprecated `append` is not used');
  t.same(removed, [], 'nothing to remove: every identity header is set');
  t.notOk('authorization' in set, 'Authorization is not rewritten');
  t.notOk(ok.headers_to_remove.includes('authorization'), 'Authorization is not removed');
  t.same(ok.response_headers_to_add, []);
});

t.test('POST /api/orders needs orders:write', async (t) => {
  const writer = await issuer.mint({ scope: 'orders:write' });
  t.equal((await srv.check(fixture('post-orders', writer))).status?.code, GRPC.OK);
  const reader = await issuer.mint({ scope: 'orders:read' });
  const d = denied(await srv.check(fixture('post-orders', reader)));
  t.equal(d.grpc, GRPC.PERMISSION_DENIED);
  t.equal(d.http, 403);
  t.match(d.headers['www-authenticate'], /^Bearer error="insufficient_scope".*scope="orders:write"/);
  t.equal(d.body.error, 'insufficient_scope');
});

t.test('header_map (encode_raw_headers) with one Authorization: OK', async (t) => {
  const token = await issuer.mint();
  t.equal((await srv.check(fixture('get-orders-header-map', token))).status?.code, GRPC.OK);
});

t.test('no token: 401 with a bare Bearer challenge', async (t) => {
  for (const name of ['get-orders-no-token', 'get-orders-basic-auth']) {
    const d = denied(await srv.check(fixture(name)));
    t.equal(d.grpc, GRPC.UNAUTHENTICATED, name);
    t.equal(d.http, 401, name);
    t.equal(d.headers['www-authenticate'], 'Bearer', `${name}: no error attributes (RFC 6750 §3.1)`);
    t.equal(d.headers['content-type'], 'application/json');
    t.equal(d.headers['cache-control'], 'no-store');
    t.notOk(d.body.error_description.includes('ey'), 'no token material in the body');
  }
});

t.test('each bad-token class: 401 invalid_token', async (t) => {
  const now = Math.floor(Date.now() / 1000);
  const good = await issuer.mint();
  const [h, p, s] = good.split('.') as [string, string, string];
  const flipped = `${h}.${p}.${s.slice(0, -4)}${s.slice(-4) === 'AAAA' ? 'BBBB' : 'AAAA'}`;
  const other = await generateKeyPair('RS256');
  const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const cases: Record<string, string> = {
    expired: await issuer.mint({ iat: now - 400, exp: now - 100 }),
    'not yet valid': await issuer.mint({ iat: now + 600, exp: now + 800 }),
    'wrong issuer': await issuer.mint({ iss: 'http://evil.test' }),
    'wrong audience': await issuer.mint({ aud: 'someone-else' }),
    'lifetime too long': await issuer.mint({ exp: now + 86_400 }),
    'missing jti': await issuer.mint({ jti: undefined }),
    'bad signature': flipped,
    'signed by another key with our kid': await new SignJWT({ iss: ISSUER, aud: AUDIENCE, sub: 'x', iat: now, exp: now + 60, jti: 'j' })
      .setProtectedHeader({ alg: 'RS256', kid: issuer.kid, typ: 'at+jwt' })
      .sign(other.privateKey),
    'unknown kid': await issuer.mint({}, { kid: 'no-such-kid' }),
    'typ JWT (an ID token)': await issuer.mint({}, { typ: 'JWT' }),
    'alg none': `${b64({ alg: 'none', typ: 'at+jwt', kid: issuer.kid })}.${p}.`,
    'alg HS256': `${b64({ alg: 'HS256', typ: 'at+jwt', kid: issuer.kid })}.${p}.${s}`,
    'not a JWT': 'abc.def.ghi',
    'opaque refresh token': 'rt_0123456789abcdefABCDEF',
    'too large': await issuer.mint({ pad: 'x'.repeat(9000) }),
  };
  for (const [name, token] of Object.entries(cases)) {
    const d = denied(await srv.check(fixture('get-orders', token)));
    t.equal(d.grpc, GRPC.UNAUTHENTICATED, `${name}: UNAUTHENTICATED`);
    t.equal(d.http, 401, `${name}: 401`);
    t.match(d.headers['www-authenticate'], /^Bearer error="invalid_token", error_description="[^"]+"$/, `${name}: challenge`);
    t.equal(d.body.error, 'invalid_token', `${name}: body`);
  }
});

t.test('duplicated Authorization: 400 invalid_request', async (t) => {
  const token = await issuer.mint();
  for (const name of ['get-orders-joined-authorization', 'get-orders-header-map-duplicate-authorization']) {
    const d = denied(await srv.check(fixture(name, token)));
    t.equal(d.grpc, GRPC.INVALID_ARGUMENT, name);
    t.equal(d.http, 400, name);
    t.match(d.headers['www-authenticate'], /error="invalid_request"/, name);
    t.equal(d.body.error, 'invalid_request', name);
  }
});

t.test('a token already in the verified-token cache, sent twice: still 400 (the fast path takes only one plain Bearer value)', async (t) => {
  const token = await issuer.mint();
  t.equal((await srv.check(fixture('get-orders', token))).status?.code, GRPC.OK, 'allowed once: now cached');
  const mixed = fixture('get-orders-header-map', token);
  // One line in `value`, one in `raw_value`, names in different case: still two credentials.
  mixed.attributes!.request!.http!.header_map!.headers!.push({ key: 'AUTHORIZATION', value: `Bearer ${token}` });
  const cases = {
    'get-orders-joined-authorization': fixture('get-orders-joined-authorization', token),
    'get-orders-header-map-duplicate-authorization': fixture('get-orders-header-map-duplicate-authorization', token),
    'header_map, value and raw_value': mixed,
  };
  for (const [name, req] of Object.entries(cases)) {
    const d = denied(await srv.check(req));
    t.equal(d.http, 400, name);
    t.equal(d.body.error, 'invalid_request', name);
  }
  t.equal((await srv.check(fixture('get-orders', token))).status?.code, GRPC.OK, 'the single value is still allowed');
});

t.test('query string: ignored for matching, a token in it is never read', async (t) => {
  const token = await issuer.mint();
  const inQuery = denied(await srv.check(fixture('get-orders-query-token', token)));
  t.equal(inQuery.http, 401);
  t.equal(inQuery.headers['www-authenticate'], 'Bearer', 'treated as no token at all');
  // The path is /api/secret; "/auth/login" appears only in the query and must not match.
  const trick = denied(await srv.check(fixture('get-unknown-query-public', token)));
  t.equal(trick.grpc, GRPC.PERMISSION_DENIED);
  t.equal(trick.http, 403);
  t.equal(trick.body.error, 'access_denied');
  // get-orders carries ?limit=10&offset=0 and is allowed by the /api/orders rule.
  t.equal((await srv.check(fixture('get-orders', token))).status?.code, GRPC.OK);
});

t.test('public routes: allowed without a token, identity headers removed', async (t) => {
  for (const name of ['get-jwks', 'get-healthz', 'post-login-spoofed-identity']) {
    const res = await srv.check(fixture(name));
    t.equal(res.status?.code, GRPC.OK, name);
    const { set, removed } = okHeaders(res);
    t.same(set, {}, `${name}: nothing set`);
    t.same(removed, [...IDENTITY_HEADERS].sort(), `${name}: every identity header removed (a client-sent x-jwt-mesh-sub too)`);
  }
});

t.test('/auth/logout needs a token', async (t) => {
  t.equal(denied(await srv.check(fixture('post-logout-no-token'))).http, 401);
  t.equal((await srv.check(fixture('post-logout', await issuer.mint({ scope: '' })))).status?.code, GRPC.OK);
});

t.test('client-sent identity headers are replaced or removed', async (t) => {
  const token = await issuer.mint({ sub: 'bob', scope: 'profile:read', roles: undefined, sid: undefined, client_id: undefined });
  const res = await srv.check(fixture('get-profile-spoofed-identity', token));
  t.equal(res.status?.code, GRPC.OK);
  const { set, actions, removed } = okHeaders(res);
  t.equal(set['x-jwt-mesh-sub'], 'bob', 'x-jwt-mesh-sub: admin replaced by the verified sub');
  t.equal(set['x-jwt-mesh-scope'], 'profile:read', 'scope replaced');
  t.ok(actions.every((a) => a === 'OVERWRITE_IF_EXISTS_OR_ADD'));
  t.same(removed, ['x-jwt-mesh-client-id', 'x-jwt-mesh-roles', 'x-jwt-mesh-sid'], 'absent claims: headers removed (x-jwt-mesh-roles: admin is dropped)');
});

t.test('routes outside the policy: 403 route_denied, no challenge', async (t) => {
  const token = await issuer.mint();
  for (const name of ['get-unknown-route', 'delete-orders']) {
    const d = denied(await srv.check(fixture(name, token)));
    t.equal(d.grpc, GRPC.PERMISSION_DENIED, name);
    t.equal(d.http, 403, name);
    t.equal(d.headers['www-authenticate'], undefined, name);
  }
  const inventory = await issuer.mint({ scope: 'inventory:read' });
  t.equal((await srv.check(fixture('get-inventory', inventory))).status?.code, GRPC.OK, 'prefix matches sub-paths');
});

t.test('an empty CheckRequest is denied, not failed', async (t) => {
  const res = await srv.check({});
  t.equal(res.http_response, 'denied_response');
  t.not(res.status?.code, GRPC.OK);
});

t.test('metrics count decisions by outcome and reason', async (t) => {
  const text = await srv.metrics.registry.metrics();
  t.match(text, /jwtmesh_authz_decisions_total\{outcome="allow",reason="ok"\} \d+/);
  t.match(text, /jwtmesh_authz_decisions_total\{outcome="allow",reason="public"\} \d+/);
  t.match(text, /jwtmesh_authz_decisions_total\{outcome="deny",reason="credentials_missing"\} \d+/);
  t.match(text, /jwtmesh_authz_decisions_total\{outcome="deny",reason="token_expired"\} 1/);
  t.match(text, /jwtmesh_authz_decisions_total\{outcome="deny",reason="insufficient_scope"\} \d+/);
  t.match(text, /jwtmesh_authz_check_duration_seconds_bucket\{le="0.0005",outcome="allow"\} \d+/);
});
