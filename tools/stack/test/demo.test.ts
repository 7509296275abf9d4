// `make demo` against a whole stack on free ports with the local redis-server's ACL users:
// every check of the demo passes, which needs the verifiers' read-only user for the lookups,
// the sync marker and the pub/sub invalidation, and the issuer's user for the re-sync and the
// revocations (logout); the demo's mTLS step sees the edge reach the auth-service only through
// TLS handshakes with its sidecar; and the demo's own Redis step sees NOPERM on every write.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { createTestDatabase } from '../../../auth-service/test/helpers.js';
import { runDemo } from '../src/demo.js';
import { startStack } from '../src/stack.js';

t.setTimeout(300_000);

t.test('the demo passes on a stack whose Redis has the least-privilege ACL users', async (t) => {
  const databaseUrl = await createTestDatabase(t);
  const lines: string[] = [];
  const stack = await startStack({
    runDir: mkdtempSync(join(tmpdir(), 'jwtmesh-stack-demo-')),
    stateFile: false,
    ports: 'free',
    databaseUrl,
    authzReplicas: 1,
    onProgress: (line) => lines.push(line),
    readyTimeoutMs: 120_000,
  }).catch((err: unknown) => {
    t.comment(lines.join('\n'));
    throw err;
  });
  t.teardown(() => stack.stop());
  t.ok(stack.state.redis.acl, 'the local redis-server runs with ACL users');
  const out: string[] = [];
  const failed = await runDemo(stack.state, (l) => out.push(l));
  t.comment(out.join('\n'));
  t.equal(failed, 0, 'every demo check passed');
  t.match(out.join('\n'), /SET \S+rv:synced \(forge the marker\): refused/, 'including a verifier\'s write refused by Redis');
  t.match(out.join('\n'), /PUBLISH \S+revocations: refused/);
  t.match(out.join('\n'), /ok {3}every connection of the edge's auth cluster was a TLS handshake/, 'and the edge -> auth hop over mTLS');
  t.match(out.join('\n'), /ok {3}the auth sidecar refuses a TLS client without a mesh certificate/);
});
