/**
 * Injected faults: a revocation checker slower than the deadline, an authenticator that never
 * answers, one that throws. Every case is answered with a 503 CheckResponse, never a gRPC error.
 */
import t, { type Test } from 'tap';
import { pino } from 'pino';
import { AuthError, type Authenticator, type RevocationChecker } from '@jwt-mesh/core';
import { buildCheckHandler, check } from '../src/check.js';
import { GRPC, denied, fixture, startAuthz, startIssuer, type Issuer } from './helpers/harness.js';

let issuer: Issuer;
t.before(async () => {
  issuer = await startIssuer();
});
t.teardown(() => issuer.close());

function expect503(t: Test, res: Parameters<typeof denied>[0], reason: string): void {
  const d = denied(res);
  t.equal(d.grpc, GRPC.UNAVAILABLE, `${reason}: UNAVAILABLE`);
  t.equal(d.http, 503, `${reason}: 503`);
  t.equal(d.headers['retry-after'], '1', `${reason}: retry-after`);
  t.equal(d.headers['www-authenticate'], undefined, `${reason}: no challenge`);
  t.equal(d.body.error, 'temporarily_unavailable', `${reason}: body`);
}

t.test('a revocation check slower than the deadline: 503', async (t) => {
  const deadlineMs = 50;
  // Fault injection: the store answers "not revoked", but only after 10x the deadline.
  const slow: RevocationChecker = {
    check: () => new Promise((resolve) => setTimeout(() => resolve(null), deadlineMs * 10).unref()),
  };
  const srv = await startAuthz({ issuer, revocation: slow, deadlineMs });
  t.teardown(() => srv.close());
  expect503(t, await srv.check(fixture('get-orders', await issuer.mint())), 'slow revocation');
  t.match(await srv.metrics.registry.metrics(), /jwtmesh_authz_decisions_total\{outcome="deny",reason="deadline_exceeded"\} 1/);
});

t.test('an authenticator that never answers: the adapter deadline gives 503', async (t) => {
  const hanging: Authenticator = { decide: () => new Promise(() => undefined) };
  const srv = await startAuthz({ issuer, authenticator: hanging, deadlineMs: 30 });
  t.teardown(() => srv.close());
  expect503(t, await srv.check(fixture('get-orders', await issuer.mint())), 'hanging authenticator');
});

t.test('an authenticator that throws or rejects: 503 deny, logged', async (t) => {
  const lines: string[] = [];
  const logger = pino({ level: 'info' }, { write: (l: string) => void lines.push(l) });
  const throwing: Authenticator = {
    decide: () => {
      throw new Error('boom');
    },
  };
  const rejecting: Authenticator = { decide: () => Promise.reject(new AuthError('revocation_unavailable')) };
  const r1 = await check({ authenticator: throwing, deadlineMs: 100, logger }, fixture('get-orders', 'x.y.z') as never);
  t.equal(r1.reason, 'internal');
  t.equal(r1.response.status?.code, GRPC.UNAVAILABLE);
  const r2 = await check({ authenticator: rejecting, deadlineMs: 100, logger }, fixture('get-orders', 'x.y.z') as never);
  t.equal(r2.reason, 'revocation_unavailable');

  const srv = await startAuthz({ issuer, authenticator: throwing });
  t.teardown(() => srv.close());
  expect503(t, await srv.check(fixture('get-orders', await issuer.mint())), 'throwing authenticator');

  // The handler logs service-side denials with the cause, never the token.
  const handler = buildCheckHandler({ authenticator: throwing, deadlineMs: 100, logger });
  const token = await issuer.mint();
  await new Promise<void>((resolve) => handler({ request: fixture('get-orders', token) } as never, () => resolve()));
  await new Promise((r) => setImmediate(r));
  const entry = lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((e) => e.reason === 'internal');
  t.ok(entry, 'a warning was logged');
  t.equal(entry?.level, 40);
  t.equal(entry?.path, '/api/orders', 'path without the query string');
  t.notOk(lines.join('\n').includes(token), 'the token is never logged');
});

t.test('an identity claim that cannot be an HTTP header value: 503, not a broken response', async (t) => {
  const srv = await startAuthz({ issuer });
  t.teardown(() => srv.close());
  expect503(t, await srv.check(fixture('get-orders', await issuer.mint({ sub: 'evil\r\nx-jwt-mesh-roles: admin' }))), 'CRLF in sub');
});

t.test('one deadline timer under load: every Check answered exactly once, the slow ones denied at the deadline, the fast ones allowed', async (t) => {
  const deadlineMs = 100;
  const identity = Object.freeze({ sub: 'u', jti: 'j', sid: undefined, clientId: undefined, scopes: Object.freeze([]), roles: Object.freeze([]), exp: 0, iat: 0, claims: {} }) as never;
  // Fault injection: request ids say how long the authenticator takes (ms), then it allows.
  const delayed: Authenticator = {
    decide: (req) =>
      new Promise((resolve) => setTimeout(() => resolve({ allow: true, identity }), Number(req.headers['x-delay'])).unref()),
  };
  const handler = buildCheckHandler({ authenticator: delayed, deadlineMs, logger: pino({ level: 'silent' }) });
  const calls: Array<Promise<{ delay: number; answers: number; code: number | undefined }>> = [];
  const started = performance.now();
  for (let i = 0; i < 600; i++) {
    // Spread over ~300 ms so the queue is armed, emptied and re-armed; delays well clear of the deadline.
    const delay = i % 3 === 0 ? deadlineMs * 4 : i % 7;
    await new Promise((r) => (i % 50 === 0 ? setTimeout(r, 25) : setImmediate(r)));
    const req = { attributes: { request: { http: { method: 'GET', path: '/api/orders', headers: { 'x-delay': String(delay) } } } } };
    calls.push(
      new Promise((resolve) => {
        let answers = 0;
        let code: number | undefined;
        handler({ request: req } as never, (_err, res) => {
          answers++;
          code ??= (res as { status?: { code?: number } } | undefined)?.status?.code;
          // Wait past the slow authenticator's own answer: a second callback would show here.
          if (answers === 1) setTimeout(() => resolve({ delay, answers, code }), deadlineMs * 5);
        });
      }),
    );
    if (i === 300) {
      const until = performance.now() + deadlineMs * 1.5; // a blocked event loop, as under CPU load
      while (performance.now() < until);
    }
  }
  const results = await Promise.all(calls);
  t.comment(`600 Checks in ${Math.round(performance.now() - started)} ms`);
  t.same(results.filter((r) => r.answers !== 1), [], 'each call answered exactly once');
  t.same(results.filter((r) => r.delay > deadlineMs && r.code !== GRPC.UNAVAILABLE), [], 'slower than the deadline: denied (503)');
  t.same(results.filter((r) => r.delay < deadlineMs && r.code !== GRPC.OK), [], 'well inside the deadline: allowed');
});
