/**
 * Pre-encoded CheckResponses (check.ts EncodedResponses): over the real server, every response
 * served from the encoded caches is byte-for-byte what encoding that request's own
 * CheckResponse gives (allow per identity, public allow, each denial, insufficient_scope per
 * required scope set), and a token whose allow is cached is denied as soon as its revocation is
 * published (real Redis, pub/sub). (Revocation while the subscriber is down is the core's
 * lookup cache, tested with the core: the encoded allow is only used after the core allowed.)
 */
import t from 'tap';
import { pino } from 'pino';
import { createAuthenticator, createRemoteKeySource, createVerifier } from '@jwt-mesh/core';
import { createRedisRevocation } from '@jwt-mesh/core/redis';
import { buildCheckHandler, check, type CheckInput } from '../src/check.js';
import { loadAuthorizationProto } from '../src/proto.js';
import { decodeCheckRequest } from '../src/wire.js';
import type { CheckRequest } from '../src/generated/envoy/service/auth/v3/CheckRequest.js';
import type { CheckResponse } from '../src/generated/envoy/service/auth/v3/CheckResponse.js';
import {
  AUDIENCE,
  DEFAULT_POLICY_FILE,
  GRPC,
  ISSUER,
  REDIS_URL,
  denied,
  fixture,
  startAuthz,
  startIssuer,
  uniquePrefix,
  type Issuer,
} from './helpers/harness.js';
import { loadPolicyFile } from '../src/policy.js';

const method = loadAuthorizationProto().envoy.service.auth.v3.Authorization.service.Check;
const encode = (r: CheckResponse): Buffer => method.responseSerialize(r);

let issuer: Issuer;
t.before(async () => {
  issuer = await startIssuer();
});
t.teardown(() => issuer.close());

t.test('the handler answers with the bytes of each request own CheckResponse, served twice', async (t) => {
  const prefix = uniquePrefix();
  const revocation = createRedisRevocation({ redisUrl: REDIS_URL, prefix });
  await revocation.ready();
  await revocation.resync(async () => undefined);
  t.teardown(() => revocation.close());
  const deps = {
    authenticator: createAuthenticator({
      verifier: createVerifier({ issuer: ISSUER, audience: AUDIENCE, keys: createRemoteKeySource({ url: issuer.jwksUrl }) }),
      revocation,
      policy: loadPolicyFile(DEFAULT_POLICY_FILE),
    }),
    deadlineMs: 1_000,
    logger: pino({ level: 'silent' }),
  };
  const handler = buildCheckHandler(deps, encode);
  const answer = (req: CheckRequest) =>
    new Promise<CheckResponse | Buffer>((resolve, reject) => {
      const request = decodeCheckRequest(method.requestSerialize(req)) as CheckInput;
      handler({ request } as never, (err, res) => (err || res == null ? reject(err ?? new Error('no response')) : resolve(res)));
    });
  const alice = await issuer.mint({ sub: 'alice', scope: 'orders:read' });
  const bob = await issuer.mint({ sub: 'bob', scope: 'orders:read inventory:read', roles: ['admin'] });
  const cases: Record<string, CheckRequest> = {
    'allow alice': fixture('get-orders', alice),
    'allow bob': fixture('get-orders', bob),
    'public route': fixture('get-healthz'),
    'no token': fixture('get-orders-no-token'),
    'bad token': fixture('get-orders', `${alice.slice(0, -4)}AAAA`),
    'insufficient scope (orders:write)': fixture('post-orders', alice),
    'insufficient scope (inventory:read)': fixture('get-inventory', alice),
    'route denied': fixture('get-unknown-route', alice),
    'two credentials': fixture('get-orders-joined-authorization', alice),
  };
  const seen = new Map<string, string>();
  for (const [name, req] of Object.entries(cases)) {
    const expected = encode((await check(deps, decodeCheckRequest(method.requestSerialize(req)) as CheckInput)).response);
    for (const round of ['first', 'second (encoded cache)']) {
      const got = await answer(req);
      t.ok(Buffer.isBuffer(got), `${name}, ${round}: answered with bytes`);
      t.ok(expected.equals(got as Buffer), `${name}, ${round}: the bytes of its own CheckResponse`);
    }
    seen.set(name, expected.toString('hex'));
  }
  t.not(seen.get('allow alice'), seen.get('allow bob'), 'two identities, two responses');
  t.not(seen.get('insufficient scope (orders:write)'), seen.get('insufficient scope (inventory:read)'), 'the required scope is part of the denial');
});

t.test('a token whose allow is cached is denied once its revocation message arrives', async (t) => {
  const prefix = uniquePrefix();
  const srv = await startAuthz({ issuer, prefix });
  t.teardown(() => srv.close());
  const pub = createRedisRevocation({ redisUrl: REDIS_URL, prefix });
  await pub.ready();
  t.teardown(() => pub.close());
  const jti = `jti-${Date.now()}`;
  const token = await issuer.mint({ jti });
  for (let i = 0; i < 3; i++) t.equal((await srv.check(fixture('get-orders', token))).status?.code, GRPC.OK, `allowed (${i + 1})`);
  await pub.revoke({ kind: 'jti', id: jti }, Math.floor(Date.now() / 1000) + 300);
  const d = denied(await srv.check(fixture('get-orders', token)));
  t.equal(d.http, 401, 'revoked: 401 at once');
  t.match(await srv.metrics.registry.metrics(), /reason="token_revoked"\} 1/);

});
