/**
 * The benchmark's Envoy configs (modes 1-3) are the generated edge config with only the
 * authentication filter changed, and Envoy itself accepts each of them (`envoy --mode validate`
 * with real certificate files); mode chain_noauth is the generated edge without ext_authz and the
 * generated sidecars unchanged; with tracing, mode 3 carries the stack edge's tracer and nothing else
 * changes.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { buildConfigs, createDevCerts, defaultTopology } from '@jwt-mesh/envoy';
import { validateEnvoyConfig } from '@jwt-mesh/testkit';
import { benchEdgeConfig, chainNoauthConfigs, ENVOY_MODES, filterNames } from '../src/bench/configs.js';

const input = (certDir: string) => ({
  ports: {
    edge: { http: 0, https: 0, admin: 0 },
    authz: ['127.0.0.1:9001', '127.0.0.1:9002'],
    services: { auth: { inbound: 4104 } },
  },
  certDir,
  upstreamPort: 3999,
  issuer: 'http://localhost:4000',
  audience: 'jwt-mesh',
});

type Obj = Record<string, any>;
const clusters = (c: Obj): string[] => c.static_resources.clusters.map((x: Obj) => x.name).sort();
const ordersRoute = (c: Obj): Obj =>
  c.static_resources.listeners[0].filter_chains[0].filters[0].typed_config.route_config.virtual_hosts[0].routes.find((r: Obj) => r.name === 'orders:/api/orders');

t.test('the modes differ only in the authentication filter', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'jwt-mesh-bench-cfg-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const [none, jwt, ext] = ENVOY_MODES.map((m) => benchEdgeConfig(m, input(dir))) as [Obj, Obj, Obj];
  t.same(filterNames(none), ['envoy.filters.http.header_mutation', 'envoy.filters.http.router']);
  t.same(filterNames(jwt), ['envoy.filters.http.header_mutation', 'envoy.filters.http.jwt_authn', 'envoy.filters.http.router']);
  t.same(filterNames(ext), ['envoy.filters.http.header_mutation', 'envoy.filters.http.ext_authz', 'envoy.filters.http.router']);
  t.same(clusters(none), ['auth', 'bench_upstream']);
  t.same(clusters(jwt), ['auth', 'bench_upstream']);
  t.same(clusters(ext), ['auth', 'authz', 'bench_upstream']);
  for (const c of [none, jwt, ext]) t.equal(ordersRoute(c).route.cluster, 'bench_upstream');
  const provider = jwt.static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters[1].typed_config.providers.jwt_mesh;
  t.equal(provider.issuer, 'http://localhost:4000');
  t.same(provider.audiences, ['jwt-mesh']);
  t.equal(provider.remote_jwks.http_uri.uri, 'https://auth.jwt-mesh.svc.cluster.local/.well-known/jwks.json');
  t.equal(provider.remote_jwks.http_uri.cluster, 'auth');
  // Everything else (connection manager settings, listeners) is the generator's, unchanged.
  const hcmOf = (c: Obj) => {
    const { http_filters: _f, route_config: _r, ...rest } = c.static_resources.listeners[0].filter_chains[0].filters[0].typed_config;
    return rest;
  };
  t.same(hcmOf(none), hcmOf(ext));
  t.same(hcmOf(jwt), hcmOf(ext));
});

t.test('Envoy accepts every bench config', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'jwt-mesh-bench-cfg-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  await createDevCerts({ dir });
  for (const mode of ENVOY_MODES) {
    const r = await validateEnvoyConfig(benchEdgeConfig(mode, input(dir)), { name: `bench-${mode}` });
    t.ok(r.ok, `${mode}: ${r.ok ? 'OK' : r.output.slice(-1500)}`);
    t.same(r.deprecations, [], `${mode}: no deprecated fields`);
  }
});

t.test('tracing: mode 3 carries the edge tracer the stack renders, sampling the given percentage; nothing else changes', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'jwt-mesh-bench-cfg-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const plain = benchEdgeConfig('ext_authz', input(dir)) as Obj;
  const traced = benchEdgeConfig('ext_authz', { ...input(dir), tracing: { collector: '127.0.0.1:4318', edgeSamplePercent: 10 } }) as Obj;
  const stackEdge = buildConfigs(defaultTopology(), 'local', { ports: input(dir).ports, certDir: dir, bindAddress: '127.0.0.1', tracing: { collector: '127.0.0.1:4318', edgeSamplePercent: 10 } })['edge.yaml'] as Obj;
  const hcm = (c: Obj, i = 0) => c.static_resources.listeners[i].filter_chains[0].filters[0].typed_config;
  t.same(hcm(traced).tracing, hcm(stackEdge).tracing, "the stack edge's tracer, unchanged");
  t.equal(hcm(traced).tracing.random_sampling.value, 10, 'samples 10 % of the requests');
  t.equal(hcm(traced).request_id_extension.typed_config.use_request_id_for_trace_sampling, true, 'decided from the x-request-id, as the stack edge, so that the percentage takes effect');
  t.equal(hcm(traced).tracing.provider.typed_config.service_name, 'edge', 'spans carry the service name edge');
  t.equal(hcm(traced).tracing.provider.typed_config.http_service.http_uri.uri, 'http://127.0.0.1:4318/v1/traces');
  t.ok(clusters(traced).includes('opentelemetry_collector'));
  t.same(traced.layered_runtime, stackEdge.layered_runtime, 'the same flush interval');
  t.equal(plain.layered_runtime, undefined, 'without tracing: no runtime layer');
  t.notOk(clusters(plain).includes('opentelemetry_collector'), 'without tracing: no collector cluster');
  t.same(filterNames(traced), filterNames(plain), 'the same filters');
  // Take the tracer's additions away again: what is left is the untraced bench config.
  const stripped = structuredClone(traced);
  for (const l of stripped.static_resources.listeners) {
    delete l.traffic_direction;
    const h = l.filter_chains[0].filters[0].typed_config;
    delete h.tracing;
    h.request_id_extension.typed_config.use_request_id_for_trace_sampling = false;
    for (const vh of h.route_config?.virtual_hosts ?? []) for (const r of vh.routes) delete r.decorator;
  }
  stripped.static_resources.clusters = stripped.static_resources.clusters.filter((c: Obj) => c.name !== 'opentelemetry_collector');
  delete stripped.layered_runtime;
  t.same(stripped, plain, 'the tracer, its cluster, span names and the sampling switch are the only differences');
  t.throws(() => benchEdgeConfig('ext_authz', { ...input(dir), tracing: { collector: '127.0.0.1:4318', edgeSamplePercent: 101 } }), /edgeSamplePercent/);
});

t.test('Envoy accepts the traced mode 3 config', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'jwt-mesh-bench-cfg-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  await createDevCerts({ dir });
  const r = await validateEnvoyConfig(benchEdgeConfig('ext_authz', { ...input(dir), tracing: { collector: '127.0.0.1:4318', edgeSamplePercent: 100 } }), { name: 'bench-ext_authz-traced' });
  t.ok(r.ok, r.ok ? 'OK' : r.output.slice(-1500));
  t.same(r.deprecations, [], 'no deprecated fields');
});

const chainPorts = {
  edge: { http: 0, https: 0, admin: 0 },
  authz: ['127.0.0.1:9001', '127.0.0.1:9002'],
  services: {
    orders: { app: 41001, inbound: 41101, outbound: 41201, admin: 41301 },
    inventory: { app: 41002, inbound: 41102, outbound: 41202, admin: 41302 },
    profile: { app: 41003, grpc: 41053, inbound: 41103, outbound: 41203, admin: 41303 },
  },
};

t.test('chain_noauth: the generated sidecars unchanged, the edge without ext_authz and the authz cluster, nothing else', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'jwt-mesh-bench-cfg-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const cfg = chainNoauthConfigs({ ports: chainPorts, certDir: dir });
  const gen = buildConfigs(defaultTopology(), 'local', { ports: chainPorts, certDir: dir, bindAddress: '127.0.0.1' }) as Record<string, Obj>;
  t.same(Object.keys(cfg).sort(), Object.keys(gen).sort());
  for (const name of Object.keys(gen).filter((n) => n !== 'edge.yaml')) t.same(cfg[name], gen[name], `${name} is the generator's`);
  const edge = cfg['edge.yaml'] as Obj;
  const genEdge = structuredClone(gen['edge.yaml']) as Obj;
  t.same(filterNames(edge), ['envoy.filters.http.header_mutation', 'envoy.filters.http.router']);
  t.same(filterNames(genEdge), ['envoy.filters.http.header_mutation', 'envoy.filters.http.ext_authz', 'envoy.filters.http.router']);
  t.notOk(clusters(edge).includes('authz'));
  t.same(clusters(edge), clusters(genEdge).filter((c) => c !== 'authz'));
  t.equal(ordersRoute(edge).route.cluster, 'orders', 'orders traffic still goes to the orders sidecar');
  // Put back exactly what the transform removed: the generator's edge again.
  for (const l of genEdge.static_resources.listeners) {
    const f = l.filter_chains[0].filters[0].typed_config.http_filters as Obj[];
    const i = f.findIndex((x) => x.name === 'envoy.filters.http.ext_authz');
    if (i >= 0) f.splice(i, 1);
  }
  genEdge.static_resources.clusters = genEdge.static_resources.clusters.filter((c: Obj) => c.name !== 'authz');
  const { node: _a, ...restEdge } = edge;
  const { node: _b, ...restGen } = genEdge;
  t.same(restEdge, restGen, 'the edge differs from the generated one only by ext_authz, the authz cluster and its node id');
});

t.test('Envoy accepts the chain_noauth configs', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'jwt-mesh-bench-cfg-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  await createDevCerts({ dir });
  const cfg = chainNoauthConfigs({ ports: chainPorts, certDir: dir });
  for (const [name, c] of Object.entries(cfg)) {
    const r = await validateEnvoyConfig(c, { name: `bench-noauth-${name.replace('.yaml', '')}` });
    t.ok(r.ok, `${name}: ${r.ok ? 'OK' : r.output.slice(-1500)}`);
  }
});
