import t from 'tap';
import { chainProblem, mixDraw, parseUsers, pickRoute, refreshDue, retryAfterSec, ROUTES, targetProblem, tokenAnswerProblem } from '../k6/lib/scenario.js';

t.test('the route mix follows the weights', async (t) => {
  const n = 10_000;
  const counts: Record<string, number> = {};
  for (let i = 0; i < n; i++) {
    const r = pickRoute(mixDraw(i));
    counts[r.name] = (counts[r.name] ?? 0) + 1;
  }
  const total = ROUTES.reduce((s, r) => s + r.weight, 0);
  for (const r of ROUTES) {
    const share = (counts[r.name] ?? 0) / n;
    t.ok(Math.abs(share - r.weight / total) < 0.005, `${r.name}: ${share} vs ${r.weight / total}`);
  }
  t.equal(pickRoute(0).name, ROUTES[0]?.name);
  t.equal(pickRoute(0.9999999).name, ROUTES[ROUTES.length - 1]?.name);
  t.ok(ROUTES.every((r) => r.path.startsWith('/') && !r.path.includes('?')), 'no query strings');
});

t.test('users', async (t) => {
  t.same(parseUsers('alice:a:b, bob:pw'), [{ username: 'alice', password: 'a:b' }, { username: 'bob', password: 'pw' }]);
  t.throws(() => parseUsers('alice'), /alice" must be name:password/);
  t.throws(() => parseUsers(':pw'), /must be name:password/);
  t.throws(() => parseUsers(' , '), /no user given/);
});

t.test('refresh timing and answer shapes', async (t) => {
  t.equal(refreshDue(1000, 1100, 60), false);
  t.equal(refreshDue(1041, 1100, 60), true);
  t.equal(tokenAnswerProblem({ access_token: 'a.b.c', refresh_token: 'r'.repeat(32), expires_in: 300 }), null);
  t.match(tokenAnswerProblem({ access_token: 'nope', refresh_token: 'r'.repeat(32), expires_in: 300 }), /access_token/);
  t.match(tokenAnswerProblem({ access_token: 'a.b.c', expires_in: 300 }), /refresh_token/);
  t.match(tokenAnswerProblem({ access_token: 'a.b.c', refresh_token: 'r'.repeat(32), expires_in: 0 }), /expires_in/);
  t.match(tokenAnswerProblem('x'), /not a JSON object/);
});

t.test('chain consistency', async (t) => {
  const hop = (service: string, extra: Record<string, string> = {}) => ({ service, subject: 'u', sid: 's', jti: 'j', traceId: 't', ...extra });
  t.equal(chainProblem({ hops: [hop('orders'), hop('inventory'), hop('profile')] }), null);
  t.match(chainProblem({ hops: [hop('orders'), hop('profile')] }), /hops orders,profile/);
  t.match(chainProblem({ hops: [hop('orders'), hop('inventory', { jti: 'other' }), hop('profile')] }), /different jti/);
  t.match(chainProblem({ hops: [hop('orders'), hop('inventory'), hop('profile', { traceId: 'x' })] }), /different traceId/);
  t.match(chainProblem({}), /no hops/);
});

t.test('load targets: loopback only, unless ALLOW_HOST names the host', async (t) => {
  t.equal(targetProblem('http://127.0.0.1:8080'), null);
  t.equal(targetProblem('http://127.9.9.9'), null);
  t.equal(targetProblem('https://[::1]:8443'), null);
  t.equal(targetProblem('http://localhost:8080'), null);
  t.match(targetProblem('http://10.0.0.5:8080'), /^BASE_URL: refusing http:\/\/10\.0\.0\.5:8080: 10\.0\.0\.5 is not loopback/);
  t.match(targetProblem('http://example.com'), /example\.com is not loopback/);
  t.match(targetProblem('http://127.0.0.1.example.com'), /is not loopback/, 'a name that starts like a loopback address is a name');
  t.equal(targetProblem('http://edge.jwt-mesh.svc:8080', 'edge.jwt-mesh.svc'), null, 'the named host is allowed');
  t.match(targetProblem('http://other.svc:8080', 'edge.jwt-mesh.svc'), /other\.svc is not loopback/);
  t.match(targetProblem('http://127.0.0.1:8080/api'), /must be http\(s\):\/\/host\[:port\] with no path/);
  t.match(targetProblem('ftp://127.0.0.1'), /must be http\(s\)/);
});

t.test('Retry-After: delay-seconds honoured within 1..60 s, plus the jitter', async (t) => {
  t.equal(retryAfterSec('3', 0), 3);
  t.equal(retryAfterSec(' 7 ', 0.5), 7.5);
  t.equal(retryAfterSec('0', 0), 1, 'at least 1 s');
  t.equal(retryAfterSec('3600', 0), 60, 'at most 60 s');
  t.equal(retryAfterSec(undefined, 0.25), 1.25, 'no header: 1 s');
  t.equal(retryAfterSec('Wed, 21 Oct 2015 07:28:00 GMT', 0), 1, 'an HTTP-date counts as 1 s');
  t.equal(retryAfterSec('2', 5), 2.999, 'the jitter stays under a second');
});
