import t from 'tap';
import { assertLoopbackTarget, isLoopbackAddress, TargetNotAllowedError, type Resolver } from '../src/guard.js';
import { runLoad } from '../src/runner.js';

const resolver = (table: Record<string, string[]>): Resolver => async (host) => {
  const addrs = table[host];
  if (!addrs) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' });
  return addrs.map((address) => ({ address }));
};
const names = resolver({ localhost: ['127.0.0.1', '::1'], 'mixed.test': ['127.0.0.1', '10.1.2.3'], 'far.test': ['93.184.216.34'], 'empty.test': [] });

t.test('loopback addresses', async (t) => {
  for (const a of ['127.0.0.1', '127.255.0.9', '::1', '[::1]', '::ffff:127.0.0.1']) t.ok(isLoopbackAddress(a), a);
  for (const a of ['10.0.0.1', '172.16.0.1', '192.168.1.1', '8.8.8.8', '0.0.0.0', '::', '::2', 'fe80::1', '::ffff:10.0.0.1', 'localhost', '']) {
    t.notOk(isLoopbackAddress(a), a);
  }
});

t.test('accepted targets', async (t) => {
  for (const u of ['http://127.0.0.1:10000', 'https://127.0.0.2', 'http://[::1]:8080/', 'http://localhost:10000']) {
    const url = await assertLoopbackTarget(u, names);
    t.ok(url instanceof URL, u);
  }
});

t.test('refused targets', async (t) => {
  const cases: Array<[string, RegExp]> = [
    ['http://10.0.0.1:80', /10\.0\.0\.1 is not a loopback address/],
    ['http://192.168.0.10', /not a loopback address/],
    ['http://[fe80::1]:80', /not a loopback address/],
    ['http://0.0.0.0:10000', /not a loopback address/],
    ['http://mixed.test', /resolves to 10\.1\.2\.3, which is not loopback/],
    ['http://far.test', /not loopback/],
    ['http://empty.test', /resolves to no address/],
    ['http://nowhere.test', /does not resolve \(ENOTFOUND\)/],
    ['ftp://127.0.0.1', /scheme ftp: is not http or https/],
    ['not a url', /not a URL/],
  ];
  for (const [u, why] of cases) {
    await t.rejects(assertLoopbackTarget(u, names), { name: 'TargetNotAllowedError', message: why }, u);
  }
});

t.test('runLoad refuses a non-loopback target before sending anything', async (t) => {
  let asked = 0;
  const tokens = { accessToken: () => { asked += 1; return 'x.y.z'; } };
  const err = await runLoad({ baseUrl: 'http://far.test:10000', ratePerSec: 10, durationSec: 1, tokens, resolve: names }).catch((e: unknown) => e);
  t.ok(err instanceof TargetNotAllowedError, 'TargetNotAllowedError');
  t.equal(asked, 0, 'no request was prepared');
});
