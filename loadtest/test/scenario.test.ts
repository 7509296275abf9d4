import t from 'tap';
import { chainProblem, mixDraw, parseUsers, pickRoute, refreshDue, ROUTES, tokenAnswerProblem } from '../k6/lib/scenario.js';

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
