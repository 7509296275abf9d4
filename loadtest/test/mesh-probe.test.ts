/**
 * The 10,000-user report's Redis figure: `INFO commandstats` read as the issuer's ACL user from a
 * real redis-server that, like make up's, refuses its default user.
 */
import t from 'tap';
import { redisAclFile, redisAclRules } from '@jwt-mesh/core/redis';
import { startRedisServer } from '@jwt-mesh/testkit';
import { Redis } from 'ioredis';
import { redisCommandCalls } from '../src/mesh-probe.js';

t.test('redisCommandCalls reads INFO commandstats as the issuer ACL user; the default user is refused', async (t) => {
  const rules = redisAclRules('jwtmesh:');
  const server = await startRedisServer(t, {
    aclFile: redisAclFile([
      { name: 'jwtmesh-issuer', password: 'issuer-pw', rules: rules.issuer },
      { name: 'jwtmesh-verifier', password: 'verifier-pw', rules: rules.verifier },
    ]),
  });
  const verifier = new Redis(server.url, { username: 'jwtmesh-verifier', password: 'verifier-pw', lazyConnect: true });
  t.teardown(() => verifier.disconnect());
  await verifier.connect();
  for (let i = 0; i < 3; i++) await verifier.mget('jwtmesh:rv:jti:a', 'jwtmesh:rv:synced');

  const calls = await redisCommandCalls(server.url, { username: 'jwtmesh-issuer', password: 'issuer-pw' });
  t.equal(calls['mget'], 3, 'the three MGETs of the verifier are counted');
  await t.rejects(redisCommandCalls(server.url, {}, 2000), /NOAUTH|WRONGPASS|NOPERM|auth/i, 'no credentials: a clear error, not an empty table');
});
