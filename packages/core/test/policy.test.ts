import t from 'tap';
import { matchRoute, normalizeRequestPath, parsePolicy } from '../src/policy.js';

const policy = parsePolicy({
  rules: [
    { id: 'health', pathPrefix: '/healthz', public: true },
    { id: 'login', methods: ['post'], pathPrefix: '/auth/login', public: true },
    { id: 'orders-read', methods: ['GET', 'head'], pathPrefix: '/api/orders', scopes: ['orders:read'] },
    { id: 'orders-write', methods: ['POST', 'PUT', 'DELETE'], pathPrefix: '/api/orders', scopes: ['orders:write'] },
    { id: 'orders-admin', pathPrefix: '/api/orders/admin', anyRole: ['admin', 'ops'] },
    { id: 'api', pathPrefix: '/api' },
    { id: 'docs', pathPrefix: '/docs/', public: true },
  ],
});

const ruleOf = (method: string, path: string) => matchRoute(policy, method, path).rule?.id ?? null;

t.test('parsePolicy: defaults, upper-cased methods, frozen', async (t) => {
  t.equal(policy.default, 'deny', 'default is deny');
  t.same(policy.rules[1]!.methods, ['POST']);
  t.same(policy.rules[2]!.methods, ['GET', 'HEAD']);
  t.ok(Object.isFrozen(policy) && Object.isFrozen(policy.rules) && Object.isFrozen(policy.rules[0]));
  t.equal(parsePolicy({ rules: [], default: 'authenticated' }).default, 'authenticated');
});

t.test('parsePolicy: errors name the bad field', async (t) => {
  const bad: Array<[unknown, RegExp]> = [
    [null, /\(policy\)/],
    [{}, /rules/],
    [{ rules: [{ id: 'a', pathPrefix: 'api' }] }, /rules\[0\]\.pathPrefix: must start with "\/"/],
    [{ rules: [{ id: 'a', pathPrefix: '/a' }, { id: 'a', pathPrefix: '/b' }] }, /rules\[1\]\.id: duplicate rule id "a"/],
    [{ rules: [{ id: '', pathPrefix: '/a' }] }, /rules\[0\]\.id/],
    [{ rules: [{ id: 'a', pathPrefix: '/a' }], default: 'allow' }, /default/],
    [{ rules: [{ id: 'a', pathPrefix: '/a', scope: ['x'] }] }, /rules\[0\]/],
    [{ rules: [{ id: 'a', pathPrefix: '/a', methods: ['GET POST'] }] }, /rules\[0\]\.methods\[0\]/],
    [{ rules: [{ id: 'a', pathPrefix: '/a', methods: [] }] }, /rules\[0\]\.methods/],
    [{ rules: [{ id: 'a', pathPrefix: '/a', public: true, scopes: ['x'] }] }, /rules\[0\]\.public: a public rule cannot require/],
    [{ rules: [{ id: 'a', pathPrefix: '/a/../b' }] }, /rules\[0\]\.pathPrefix/],
    [{ rules: [{ id: 'a', pathPrefix: '/a%2fb' }] }, /rules\[0\]\.pathPrefix/],
    [{ rules: [{ id: 'a', pathPrefix: '/a?x=1' }] }, /rules\[0\]\.pathPrefix/],
    [{ rules: [{ id: 'a', pathPrefix: '/a', scopes: ['has space'] }] }, /rules\[0\]\.scopes\[0\]/],
    [{ rules: [{ id: 'a', pathPrefix: '/a', public: 'yes' }] }, /rules\[0\]\.public/],
    [{ rules: [], extra: 1 }, /extra|\(policy\)/],
  ];
  for (const [doc, msg] of bad) t.throws(() => parsePolicy(doc), msg, JSON.stringify(doc));
});

t.test('longest prefix wins, on a segment boundary, per method', async (t) => {
  t.equal(ruleOf('GET', '/api/orders'), 'orders-read');
  t.equal(ruleOf('get', '/api/orders/1'), 'orders-read', 'method case-insensitive');
  t.equal(ruleOf('POST', '/api/orders/1'), 'orders-write');
  t.equal(ruleOf('PATCH', '/api/orders/1'), 'api', 'a method no longer rule lists falls back to a shorter prefix');
  t.equal(ruleOf('GET', '/api/ordersX'), 'api', 'no match inside a segment');
  t.equal(ruleOf('GET', '/api/orders/admin/x'), 'orders-admin');
  t.equal(ruleOf('GET', '/api/orders/administrator'), 'orders-read');
  t.equal(ruleOf('GET', '/api'), 'api');
  t.equal(ruleOf('GET', '/apix'), null);
  t.equal(ruleOf('GET', '/'), null);
  t.equal(ruleOf('GET', '/healthz'), 'health');
  t.equal(ruleOf('GET', '/healthz/'), 'health', 'trailing slash');
  t.equal(ruleOf('GET', '/auth/login'), null, 'login is POST only');
  t.equal(ruleOf('POST', '/auth/login'), 'login');
  t.equal(ruleOf('GET', '/docs/x'), 'docs', 'prefix with a trailing slash');
  t.equal(ruleOf('GET', '/docs'), null, '"/docs/" does not match "/docs"');
});

t.test('query string and fragment are stripped', async (t) => {
  t.equal(ruleOf('GET', '/api/orders?x=/admin'), 'orders-read');
  t.equal(ruleOf('GET', '/api/orders#/admin'), 'orders-read');
  t.equal(ruleOf('GET', '/healthz?../../api'), 'health');
  t.equal(ruleOf('GET', '/api/orders/admin?'), 'orders-admin');
});

t.test('requirements and the default', async (t) => {
  t.same(matchRoute(policy, 'GET', '/api/orders').requirement, { scopes: ['orders:read'] });
  t.same(matchRoute(policy, 'GET', '/api/orders/admin').requirement, { anyRole: ['admin', 'ops'] });
  t.same(matchRoute(policy, 'GET', '/healthz').requirement, { public: true });
  t.same(matchRoute(policy, 'GET', '/api').requirement, {});
  t.same(matchRoute(policy, 'GET', '/other'), { rule: null, requirement: null }, 'default deny');
  const open = parsePolicy({ rules: [], default: 'authenticated' });
  t.same(matchRoute(open, 'GET', '/other'), { rule: null, requirement: {} }, 'default authenticated');
});

t.test('path tricks are denied, whatever the rules', async (t) => {
  const open = parsePolicy({ rules: [{ id: 'pub', pathPrefix: '/', public: true }], default: 'authenticated' });
  const tricks = [
    '/healthz/../api/orders/admin',
    '/healthz/..',
    '/api/./orders',
    '/./api',
    '/api/orders/.',
    '/healthz%2f..%2fapi',
    '/healthz%2F..%2Fapi',
    '/healthz/%2e%2e/api',
    '/healthz/%2E%2E/api',
    '/healthz/.%2e/api',
    '/healthz/%2e/api',
    '/healthz\\..\\api',
    '/healthz%5c..%5capi',
    '/healthz%5C..',
    '/api/orders\u0000',
    '/api/orders%00',
    '/api/orders%0a',
    '/api//orders',
    '//api/orders',
    '/api/orders%',
    '/api/orders%zz',
    '/api/orders%2',
    'api/orders',
    '*',
    '',
    'http://evil/api',
  ];
  for (const p of tricks) {
    t.same(matchRoute(policy, 'GET', p), { rule: null, requirement: null }, JSON.stringify(p));
    t.same(matchRoute(open, 'GET', p), { rule: null, requirement: null }, `${JSON.stringify(p)} even under a public "/"`);
  }
});

t.test('percent-encoded unreserved characters are decoded before matching', async (t) => {
  t.equal(normalizeRequestPath('/api/%6frders'), '/api/orders');
  t.equal(normalizeRequestPath('/api/%4F%72ders'), '/api/Orders');
  const p2 = parsePolicy({
    rules: [
      { id: 'pub', pathPrefix: '/api', public: true },
      { id: 'orders', pathPrefix: '/api/orders', scopes: ['orders:read'] },
    ],
  });
  t.equal(matchRoute(p2, 'GET', '/api/%6frders/1').rule?.id, 'orders', 'an encoded letter cannot dodge the longer rule');
  t.equal(normalizeRequestPath('/a/caf%C3%A9'), '/a/caf%C3%A9', 'non-ASCII stays encoded');
  t.equal(normalizeRequestPath('/a/%3f'), '/a/%3F', 'reserved stays encoded');
});
