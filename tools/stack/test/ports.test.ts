/**
 * Free ports that parallel stacks do not steal from each other: a reserved port is held until
 * released, and a part whose port is taken at bind time is started again on new ports.
 * The stack case injects a port reserver that hands out ports this test already listens on (for
 * the auth-service and the stack's own redis-server), exactly what a parallel suite taking the
 * port between the pick and the bind looks like, and checks the stack still starts.
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { createTestDatabase } from '../../../auth-service/test/helpers.js';
import { holdPort, isPortClash, reserveFreePort, type PortReserver } from '../src/ports.js';
import { httpGet, redisPing, startStack } from '../src/index.js';

t.setTimeout(170_000);

/** A listener that accepts and never answers; `close` also ends the connections it accepted (the stack's probes). */
function listen(port: number): Promise<Server> {
  return new Promise((resolve, reject) => {
    const srv = createServer((socket) => {
      sockets.add(socket);
      socket.on('error', () => undefined);
      socket.once('close', () => sockets.delete(socket));
    });
    srv.once('error', reject);
    srv.listen({ host: '127.0.0.1', port, exclusive: true }, () => resolve(srv));
  });
}
const sockets = new Set<Socket>();
const close = (srv: Server) =>
  new Promise<void>((r) => {
    srv.close(() => r());
    for (const s of sockets) s.destroy();
  });

t.test('a reserved port is held until released; a taken port cannot be held', async (t) => {
  const r = await reserveFreePort('test');
  t.ok(r.port > 0);
  await t.rejects(listen(r.port), { code: 'EADDRINUSE' }, 'nobody else can bind it while held');
  await t.rejects(holdPort(r.port), { code: 'EADDRINUSE' });
  await r.release();
  await r.release(); // idempotent
  const srv = await listen(r.port);
  t.pass('bindable once released');
  await close(srv);
});

t.test('isPortClash: Node, Envoy and redis-server wordings; nothing else', async (t) => {
  t.ok(isPortClash(new Error('listen EADDRINUSE: address already in use 127.0.0.1:4000')));
  t.ok(isPortClash(new Error("cannot bind '127.0.0.1:10000': Address already in use")));
  t.ok(isPortClash(new Error('Could not create server TCP listening socket 127.0.0.1:6379: bind: Address already in use')));
  t.notOk(isPortClash(new Error('ECONNREFUSED')));
  t.notOk(isPortClash('timeout'));
});

t.test('startStack: ports taken at bind time (auth-service, redis-server) are replaced and the stack starts', async (t) => {
  const databaseUrl = await createTestDatabase(t);
  // Ports this test occupies; the reserver hands them out once each as if they were free.
  const squatters = await Promise.all([listen(0), listen(0)]);
  t.teardown(() => Promise.all(squatters.map(close)));
  const taken = squatters.map((s) => (s.address() as { port: number }).port) as [number, number];
  const handedOut: Record<string, number> = {};
  const reservePort: PortReserver = async (purpose) => {
    const trap = purpose === 'auth' ? taken[0] : purpose === 'redis' ? taken[1] : undefined;
    if (trap !== undefined && handedOut[purpose] === undefined) {
      handedOut[purpose] = trap;
      return { port: trap, release: async () => undefined };
    }
    return reserveFreePort(purpose);
  };
  const lines: string[] = [];
  const runDir = mkdtempSync(join(tmpdir(), 'jwtmesh-stack-ports-'));
  const stack = await startStack({
    runDir,
    stateFile: false,
    ports: 'free',
    databaseUrl,
    reservePort,
    parts: { authz: false, services: false, edge: false },
    onProgress: (line) => lines.push(line),
    readyTimeoutMs: 120_000,
  }).catch((err: unknown) => {
    t.comment(lines.join('\n'));
    throw err;
  });
  t.teardown(() => stack.stop());
  t.same(handedOut, { auth: taken[0], redis: taken[1] }, 'the taken ports were handed out first');
  const authPort = Number(new URL(stack.state.urls.auth).port);
  t.not(authPort, taken[0], 'the auth-service runs on another port');
  t.equal((await httpGet(`${stack.state.urls.auth}/readyz`)).status, 200, 'and answers there');
  t.equal(stack.state.jwt.issuer, `http://localhost:${authPort}`, 'the issuer follows the new port');
  t.not(Number(new URL(stack.state.redis.url).port), taken[1], 'redis-server runs on another port');
  const verifier = stack.state.redis.acl?.verifier;
  t.ok(verifier, 'the local redis-server has the ACL users');
  const password = readFileSync(verifier?.passwordFile ?? '', 'utf8').trim();
  const asVerifier = stack.state.redis.url.replace('redis://', `redis://${verifier?.username}:${password}@`);
  t.ok(await redisPing(asVerifier, 3000), 'and answers PING (as the verifiers\' user)');
  t.notOk(await redisPing(stack.state.redis.url, 3000), 'not without credentials (the default user is off)');
  for (const part of ['auth', 'redis']) {
    t.ok(
      lines.some((l) => l.includes(part) && /taken at bind time .*attempt 1 of 3/.test(l)),
      `${part}: the retry on new ports is reported`,
    );
  }
});
