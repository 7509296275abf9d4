import { createServer } from 'node:http';
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import t from 'tap';
import { freePort, startEnvoy, validateEnvoyConfig, waitForHttp, waitForTcp } from '../src/index.js';

/** A tiny Envoy: admin and one listener on port 0, answering every request with a direct 200. */
function directResponseConfig(body: string): object {
  return {
    admin: { address: { socket_address: { address: '127.0.0.1', port_value: 0 } } },
    static_resources: {
      listeners: [
        {
          name: 'main',
          address: { socket_address: { address: '127.0.0.1', port_value: 0 } },
          filter_chains: [
            {
              filters: [
                {
                  name: 'envoy.filters.network.http_connection_manager',
                  typed_config: {
                    '@type': 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
                    stat_prefix: 'main',
                    http_filters: [
                      { name: 'envoy.filters.http.router', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router' } },
                    ],
                    route_config: {
                      virtual_hosts: [{ name: 'all', domains: ['*'], routes: [{ match: { prefix: '/' }, direct_response: { status: 200, body: { inline_string: body } } }] }],
                    },
                  },
                },
              ],
            },
          ],
        },
      ],
    },
  };
}

t.test('freePort gives a port that can be bound on 127.0.0.1', async (t) => {
  const port = await freePort();
  t.ok(port > 0 && port < 65536);
  const srv = createNetServer();
  await new Promise<void>((res, rej) => srv.once('error', rej).listen(port, '127.0.0.1', () => res()));
  t.equal((srv.address() as AddressInfo).port, port);
  await new Promise<void>((res) => srv.close(() => res()));
});

t.test('waitForTcp and waitForHttp resolve once a server answers, and time out naming the address', async (t) => {
  const srv = createServer((req, res) => {
    res.statusCode = req.url === '/ready' ? 200 : 503;
    res.end('ready');
  });
  await new Promise<void>((res) => srv.listen(0, '127.0.0.1', () => res()));
  t.teardown(() => new Promise<void>((res) => srv.close(() => res())));
  const { port } = srv.address() as AddressInfo;
  await waitForTcp('127.0.0.1', port, { timeoutMs: 2000 });
  const r = await waitForHttp(`http://127.0.0.1:${port}/ready`, { timeoutMs: 2000 });
  t.equal(r.status, 200);
  t.equal(r.body, 'ready');
  await t.rejects(waitForHttp(`http://127.0.0.1:${port}/other`, { timeoutMs: 200 }), /not ready in time \(last: status 503\)/);
  const closed = await freePort();
  await t.rejects(waitForTcp('127.0.0.1', closed, { timeoutMs: 200 }), new RegExp(`127\\.0\\.0\\.1:${closed}`));
});

t.test('validateEnvoyConfig accepts a good config and reports a bad one', async (t) => {
  const good = await validateEnvoyConfig(directResponseConfig('hi'), { name: 'testkit-good' });
  t.ok(good.ok, good.output);
  t.same(good.deprecations, []);
  const bad = await validateEnvoyConfig('static_resources:\n  clusters:\n  - name: x\n    no_such_field: 1\n', { name: 'testkit-bad' });
  t.notOk(bad.ok);
  t.match(bad.output, /no_such_field/);
});

t.test('startEnvoy waits for /ready, reports bound listener ports, and stops the process', async (t) => {
  const envoy = await startEnvoy({ config: directResponseConfig('hello from envoy'), name: 'testkit-direct', teardown: t });
  t.match(envoy.adminUrl, /^http:\/\/127\.0\.0\.1:\d+$/);
  const { host, port } = await envoy.listenerAddress('main');
  t.equal(host, '127.0.0.1');
  const r = await waitForHttp(`http://127.0.0.1:${port}/`, { timeoutMs: 5000 });
  t.equal(r.body, 'hello from envoy');
  const stats = await envoy.stats('^http\\.main\\.downstream_rq_completed$');
  t.ok((stats['http.main.downstream_rq_completed'] ?? 0) >= 1, 'the admin stats saw the request');
  await t.rejects(envoy.listenerAddress('nope'), /no listener "nope"/);
  await envoy.stop();
  const exit = await envoy.exited;
  t.ok(exit.code !== null || exit.signal !== null, 'the process is gone');
  await t.rejects(waitForTcp('127.0.0.1', port, { timeoutMs: 200 }), /did not accept/);
});

t.test('startEnvoy rejects with the log tail when Envoy refuses the config', async (t) => {
  await t.rejects(
    startEnvoy({ config: 'static_resources: { clusters: [ { name: x, bogus: 1 } ] }\n', name: 'testkit-broken', readyTimeoutMs: 20_000 }),
    /exited .* before binding its admin interface[\s\S]*bogus/,
  );
});
