// Remote JWK Set: a real node:http server on 127.0.0.1 port 0 that counts requests, and a fake
// clock for the cache age and the cooldown.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import { AuthError, type AuthErrorCode } from '../src/errors.js';
import { createRemoteKeySource, type JWK } from '../src/jwks.js';
import { createVerifier } from '../src/verify.js';
import { AUDIENCE, ISSUER, atHeader, claims, fakeClock, makeKey, signWith, type TestKey } from './fixtures/tokens.js';

interface JwksServer {
  url: string;
  hits: number;
  keys: JWK[];
  mode: 'ok' | 'error500' | 'garbage' | 'hang' | 'notjwks';
  delayMs: number;
  close(): Promise<void>;
}

async function jwksServer(t: { teardown(fn: () => unknown): void }, keys: JWK[]): Promise<JwksServer> {
  const state: JwksServer = {
    url: '',
    hits: 0,
    keys,
    mode: 'ok',
    delayMs: 0,
    close: async () => undefined,
  };
  const handle = (_req: IncomingMessage, res: ServerResponse) => {
    state.hits++;
    if (state.mode === 'hang') return; // never answers
    const send = () => {
      if (state.mode === 'error500') {
        res.statusCode = 500;
        res.end('down');
      } else if (state.mode === 'garbage') {
        res.end('<html>not json');
      } else if (state.mode === 'notjwks') {
        res.setHeader('content-type', 'application/json');
        res.end('{"keys": "nope"}');
      } else {
        res.setHeader('content-type', 'application/jwk-set+json');
        res.end(JSON.stringify({ keys: state.keys }));
      }
    };
    if (state.delayMs > 0) setTimeout(send, state.delayMs);
    else send();
  };
  const server = createServer(handle);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  state.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/.well-known/jwks.json`;
  state.close = () =>
    new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    });
  t.teardown(() => state.close());
  return state;
}

const k1 = makeKey('RS256', 'k1');
const k2 = makeKey('RS256', 'k2');
const ecKey = makeKey('ES256', 'e1');

function setup(server: JwksServer, clock: ReturnType<typeof fakeClock>, over: { cooldownMs?: number; cacheMaxAgeMs?: number; timeoutMs?: number } = {}) {
  const keys = createRemoteKeySource({ url: server.url, now: clock.now, cooldownMs: 10_000, cacheMaxAgeMs: 60_000, ...over });
  const verifier = createVerifier({ issuer: ISSUER, audience: AUDIENCE, algorithms: ['RS256', 'ES256'], keys, now: clock.now });
  const token = async (key: Pick<TestKey, 'alg' | 'kid' | 'privateKey'>) => signWith(key, atHeader(key), claims(clock.sec));
  const codeOf = async (tok: string): Promise<AuthErrorCode | 'ok'> => {
    try {
      await verifier.verify(tok);
      return 'ok';
    } catch (err) {
      if (!(err instanceof AuthError)) throw err;
      return err.code;
    }
  };
  return { keys, verifier, token, codeOf };
}

const randomKid = (key: TestKey, i: number) => ({ alg: 'RS256' as const, kid: `random-${i}-${Math.random()}`, privateKey: key.privateKey });

t.test('a rotated kid verifies after exactly one refetch', async (t) => {
  const server = await jwksServer(t, [k1.jwk]);
  const clock = fakeClock();
  const { codeOf, token } = setup(server, clock);
  t.equal(await codeOf(await token(k1)), 'ok');
  t.equal(server.hits, 1, 'first lookup loads the set');
  t.equal(await codeOf(await token(k1)), 'ok');
  t.equal(server.hits, 1, 'a known kid is served from the cache');
  // The issuer rotates: k2 signs, k1 stays published for the overlap window.
  server.keys = [k2.jwk, k1.jwk];
  t.equal(await codeOf(await token(k2)), 'ok', 'new kid verifies at once, even right after start-up');
  t.equal(server.hits, 2, 'one refetch');
  t.equal(await codeOf(await token(k2)), 'ok');
  t.equal(await codeOf(await token(k1)), 'ok', 'old kid still verifies in the overlap window');
  t.equal(server.hits, 2);
});

t.test('100 concurrent unknown-kid tokens cause exactly one fetch', async (t) => {
  const server = await jwksServer(t, [k1.jwk]);
  const clock = fakeClock();
  const { codeOf, token } = setup(server, clock);
  t.equal(await codeOf(await token(k1)), 'ok');
  t.equal(server.hits, 1);
  server.delayMs = 50; // keep the refetch in flight while the 100 arrive
  const tokens = await Promise.all(Array.from({ length: 100 }, (_, i) => token(randomKid(k1, i))));
  const codes = await Promise.all(tokens.map(codeOf));
  t.same(new Set(codes), new Set(['token_key_unknown']), 'every one is token_key_unknown');
  t.equal(server.hits, 2, 'one refetch for all 100 (single-flight)');

  // Cold start: 100 concurrent unknown kids share the first load.
  const cold = await jwksServer(t, [k1.jwk]);
  cold.delayMs = 50;
  const c2 = setup(cold, clock);
  const codes2 = await Promise.all(tokens.map(c2.codeOf));
  t.same(new Set(codes2), new Set(['token_key_unknown']));
  t.equal(cold.hits, 1, 'one fetch on a cold cache');
});

t.test('the cooldown is honoured', async (t) => {
  const server = await jwksServer(t, [k1.jwk]);
  const clock = fakeClock();
  const { codeOf, token, keys } = setup(server, clock, { cooldownMs: 10_000 });
  t.equal(await codeOf(await token(k1)), 'ok');
  t.equal(await codeOf(await token(randomKid(k1, 1))), 'token_key_unknown');
  t.equal(server.hits, 2, 'the first unknown kid refetches');
  for (let i = 0; i < 50; i++) {
    clock.advance(100);
    t.equal(await codeOf(await token(randomKid(k1, i + 2))), 'token_key_unknown');
  }
  t.equal(server.hits, 2, 'no fetch inside the cooldown (5 s of random kids)');
  server.keys = [k1.jwk, k2.jwk];
  t.equal(await codeOf(await token(k2)), 'token_key_unknown', 'even a genuine new kid waits for the cooldown');
  t.equal(server.hits, 2);
  clock.advance(5_000);
  t.equal(await codeOf(await token(k2)), 'ok', 'after the cooldown the new kid is fetched');
  t.equal(server.hits, 3);
  t.equal(keys.stats().fetches, 3);
});

t.test('endpoint down: known keys keep working, unknown kids are jwks_unavailable', async (t) => {
  const server = await jwksServer(t, [k1.jwk, ecKey.jwk]);
  const clock = fakeClock();
  const { codeOf, token, keys } = setup(server, clock, { cooldownMs: 1_000, cacheMaxAgeMs: 60_000 });
  t.equal(await codeOf(await token(k1)), 'ok');
  await server.close();
  clock.advance(120_000); // the cache is stale now; the background refresh will fail
  for (let i = 0; i < 3; i++) {
    t.equal(await codeOf(await token(k1)), 'ok', 'known RSA kid still verifies');
    t.equal(await codeOf(await token(ecKey)), 'ok', 'known EC kid still verifies');
    await new Promise((r) => setTimeout(r, 20)); // let the background refresh fail
  }
  t.equal(keys.stats().lastFetchFailed, true, 'the refresh failed');
  t.equal(await codeOf(await token(k2)), 'jwks_unavailable', 'unknown kid, fetch failed: fail closed');
  clock.advance(2_000);
  t.equal(await codeOf(await token(k2)), 'jwks_unavailable', 'after the cooldown: refetch fails again');
  t.equal(await codeOf(await token(k1)), 'ok', 'known kid still fine');
});

t.test('endpoint errors, garbage, wrong shape and a hung endpoint keep the last good set', async (t) => {
  const server = await jwksServer(t, [k1.jwk]);
  const clock = fakeClock();
  const { codeOf, token } = setup(server, clock, { cooldownMs: 1_000, timeoutMs: 200 });
  t.equal(await codeOf(await token(k1)), 'ok');
  for (const mode of ['error500', 'garbage', 'notjwks', 'hang'] as const) {
    server.mode = mode;
    clock.advance(2_000);
    const before = server.hits;
    t.equal(await codeOf(await token(randomKid(k1, 0))), 'jwks_unavailable', `${mode}: unknown kid`);
    t.equal(server.hits, before + 1, `${mode}: one fetch`);
    t.equal(await codeOf(await token(k1)), 'ok', `${mode}: known kid`);
  }
  server.mode = 'ok';
  clock.advance(2_000);
  t.equal(await codeOf(await token(randomKid(k1, 1))), 'token_key_unknown', 'endpoint back: a definite answer');
});

t.test('cold start with the endpoint down: jwks_unavailable, and a fetch storm is prevented', async (t) => {
  const server = await jwksServer(t, [k1.jwk]);
  server.mode = 'error500';
  const clock = fakeClock();
  const { codeOf, token } = setup(server, clock, { cooldownMs: 1_000 });
  const tok = await token(k1);
  const codes = await Promise.all(Array.from({ length: 20 }, () => codeOf(tok)));
  t.same(new Set(codes), new Set(['jwks_unavailable']));
  t.equal(await codeOf(tok), 'jwks_unavailable');
  t.equal(server.hits, 1, 'one fetch, then the cooldown');
  server.mode = 'ok';
  clock.advance(1_000);
  t.equal(await codeOf(tok), 'ok', 'recovers after the cooldown');
  t.equal(server.hits, 2);
});

t.test('a key removed by the issuer stops verifying after a refresh', async (t) => {
  const server = await jwksServer(t, [k1.jwk, k2.jwk]);
  const clock = fakeClock();
  const { codeOf, token } = setup(server, clock, { cacheMaxAgeMs: 60_000 });
  t.equal(await codeOf(await token(k1)), 'ok');
  server.keys = [k2.jwk];
  clock.advance(61_000);
  t.equal(await codeOf(await token(k1)), 'ok', 'served from the stale set while the refresh runs');
  await new Promise((r) => setTimeout(r, 50));
  t.equal(server.hits, 2, 'background refresh');
  t.equal(await codeOf(await token(k1)), 'token_key_unknown', 'removed key no longer verifies');
  t.equal(await codeOf(await token(k2)), 'ok');
});

t.test('bad options', async (t) => {
  t.throws(() => createRemoteKeySource({ url: 'file:///etc/passwd' }), TypeError);
  t.throws(() => createRemoteKeySource({ url: 'http://127.0.0.1/', cooldownMs: -1 }), RangeError);
  t.throws(() => createRemoteKeySource({ url: 'not a url' }), TypeError);
});
