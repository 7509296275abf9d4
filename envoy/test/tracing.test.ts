/**
 * Envoy's OpenTelemetry tracer in the rendered configs (RenderOptions.tracing): absent unless
 * asked for, and when asked for: on every proxy's HTTP listeners but the probe listener, the edge
 * sampling the configured percentage of requests (decided from the x-request-id, so that Envoy
 * applies it), the sidecars never sampling on their own (0 %), one service name per proxy, one
 * exporter cluster, and nothing else in the config changed. That the percentage takes effect in a
 * real Envoy: tracing-sampling.test.ts. `envoy --mode validate` of the traced configs is in
 * render.test.ts with every other variant.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import YAML from 'yaml';
import { buildConfigs, HTTP_URL_WITHOUT_QUERY, renderConfigs, resolveTracing, TRACING_CLUSTER } from '../src/render.js';
import { defaultTopology } from '../src/topology.js';
import { cluster, clusterNames, endpointsOf, hcmOf, listener, tempDir, type Obj } from './helpers.js';

const run = promisify(execFile);
const topology = defaultTopology();
const PROXIES = ['edge.yaml', 'sidecar-auth.yaml', 'sidecar-inventory.yaml', 'sidecar-orders.yaml', 'sidecar-profile.yaml'];

/** Every HTTP connection manager of a config, with its listener's name. */
function hcms(config: Obj): Array<{ listener: string; hcm: Obj; l: Obj }> {
  return (config.static_resources.listeners as Obj[]).flatMap((l) =>
    (l.filter_chains as Obj[]).flatMap((c) =>
      (c.filters as Obj[]).filter((f) => f.name === 'envoy.filters.network.http_connection_manager').map((f) => ({ listener: l.name as string, hcm: f.typed_config as Obj, l })),
    ),
  );
}

/** A traced config with every tracing addition taken out again. */
function untraced(config: Obj): Obj {
  const c = structuredClone(config);
  delete c.layered_runtime;
  c.static_resources.clusters = (c.static_resources.clusters as Obj[]).filter((x) => x.name !== TRACING_CLUSTER);
  for (const { hcm, l } of hcms(c)) {
    delete l.traffic_direction;
    delete hcm.tracing;
    if (hcm.request_id_extension) hcm.request_id_extension.typed_config.use_request_id_for_trace_sampling = false;
    for (const vh of hcm.route_config.virtual_hosts as Obj[]) for (const r of vh.routes as Obj[]) delete r.decorator;
  }
  return c;
}

t.test('off by default: no tracer, no exporter cluster, no runtime layer, no span names, in any config of either target', async (t) => {
  for (const target of ['local', 'k8s'] as const) {
    const configs = buildConfigs(topology, target) as Record<string, Obj>;
    t.same(Object.keys(configs).sort(), PROXIES);
    for (const [file, config] of Object.entries(configs)) {
      t.notOk(clusterNames(config).includes(TRACING_CLUSTER), `${target}/${file}: no ${TRACING_CLUSTER} cluster`);
      t.notOk(config.layered_runtime, `${target}/${file}: no runtime layer`);
      for (const { listener: name, hcm, l } of hcms(config)) {
        t.notOk(hcm.tracing, `${target}/${file} ${name}: no tracing`);
        t.notOk(l.traffic_direction, `${target}/${file} ${name}: no traffic_direction`);
        t.ok((hcm.route_config.virtual_hosts as Obj[]).every((vh) => (vh.routes as Obj[]).every((r) => r.decorator === undefined)), `${target}/${file} ${name}: no decorator`);
      }
    }
  }
});

t.test('on: the tracing additions are the only difference from the untraced configs', async (t) => {
  for (const target of ['local', 'k8s'] as const) {
    const plain = buildConfigs(topology, target) as Record<string, Obj>;
    const traced = buildConfigs(topology, target, { tracing: { collector: '127.0.0.1:4318' } }) as Record<string, Obj>;
    for (const file of PROXIES) t.same(untraced(traced[file] as Obj), plain[file], `${target}/${file}`);
  }
});

t.test('the edge samples the configured percentage; sidecars never start a sampled trace; no client-forced traces', async (t) => {
  const configs = buildConfigs(topology, 'k8s', { tracing: { collector: 'otel-collector.jwt-mesh.svc.cluster.local:4318', edgeSamplePercent: 12.5 } }) as Record<string, Obj>;
  const edge = configs['edge.yaml'] as Obj;
  for (const name of ['edge_http', 'edge_https']) {
    const tracing = hcmOf(listener(edge, name)).tracing as Obj;
    t.same(tracing.random_sampling, { value: 12.5 }, `edge ${name}: 12.5 % of requests without a traceparent`);
    t.same(tracing.client_sampling, { value: 0 }, `edge ${name}: x-client-trace-id forces nothing`);
    t.same(tracing.overall_sampling, { value: 100 });
    t.same(tracing.custom_tags, [{ tag: 'http.url', value: HTTP_URL_WITHOUT_QUERY }], `edge ${name}: http.url without the query string`);
    t.notMatch(HTTP_URL_WITHOUT_QUERY, /%REQ\(:PATH\)%|%PATH%|%PATH\(:PATH\)%/, 'built from the path without its query');
    t.equal(listener(edge, name).traffic_direction, 'INBOUND');
    t.equal(hcmOf(listener(edge, name)).request_id_extension.typed_config.use_request_id_for_trace_sampling, true, `edge ${name}: the percentage is applied (decided from the x-request-id)`);
  }
  t.equal(hcmOf(listener((buildConfigs(topology, 'k8s') as Record<string, Obj>)['edge.yaml'] as Obj, 'edge_http')).request_id_extension.typed_config.use_request_id_for_trace_sampling, false, 'untraced: as before');
  t.notOk(hcmOf(listener(edge, 'health')).tracing, 'the edge probe listener is not traced');
  for (const s of ['orders', 'inventory', 'profile', 'auth']) {
    const c = configs[`sidecar-${s}.yaml`] as Obj;
    for (const name of ['inbound', 'outbound']) {
      const tracing = hcmOf(listener(c, name)).tracing as Obj;
      t.same(tracing.random_sampling, { value: 0 }, `sidecar-${s} ${name}: follows the incoming traceparent, never samples on its own`);
      t.same(tracing.client_sampling, { value: 0 });
    }
    t.equal(listener(c, 'inbound').traffic_direction, 'INBOUND', `sidecar-${s} inbound spans are SERVER spans`);
    t.equal(listener(c, 'outbound').traffic_direction, 'OUTBOUND', `sidecar-${s} outbound spans are CLIENT spans`);
    for (const name of ['inbound', 'outbound']) {
      t.equal(hcmOf(listener(c, name)).request_id_extension.typed_config.use_request_id_for_trace_sampling, false, `sidecar-${s} ${name}: the tracer follows the incoming traceparent`);
    }
    t.notOk(hcmOf(listener(c, 'health')).tracing, `sidecar-${s}: probes are not traced`);
  }
  const defaults = buildConfigs(topology, 'local', { tracing: { collector: '127.0.0.1:4318' } }) as Record<string, Obj>;
  t.same(hcmOf(listener(defaults['edge.yaml'] as Obj, 'edge_http')).tracing.random_sampling, { value: 100 }, 'default: the edge samples every request');
});

t.test('one OpenTelemetry provider per proxy, named after it, exporting OTLP/HTTP through one cluster', async (t) => {
  const local = buildConfigs(topology, 'local', { tracing: { collector: '127.0.0.1:14318', flushIntervalMs: 250 } }) as Record<string, Obj>;
  const k8s = buildConfigs(topology, 'k8s', { tracing: { collector: { host: 'otel-collector.jwt-mesh.svc.cluster.local', port: 4318 } } }) as Record<string, Obj>;
  for (const [file, config] of Object.entries(local)) {
    const proxy = file.replace(/\.yaml$/, '');
    t.equal(config.node.id, proxy);
    for (const { listener: name, hcm } of hcms(config).filter((x) => x.listener !== 'health')) {
      const provider = hcm.tracing.provider as Obj;
      t.equal(provider.name, 'envoy.tracers.opentelemetry', `${file} ${name}`);
      t.equal(provider.typed_config['@type'], 'type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig');
      t.equal(provider.typed_config.service_name, proxy, `${file} ${name}: service_name ${proxy}`);
      t.same(provider.typed_config.http_service.http_uri, { uri: 'http://127.0.0.1:14318/v1/traces', cluster: TRACING_CLUSTER, timeout: '1.000s' });
      t.notOk(provider.typed_config.grpc_service, 'OTLP/HTTP, not gRPC');
    }
    const c = cluster(config, TRACING_CLUSTER);
    t.equal(c.type, 'STATIC', `${file}: an IP literal collector is a STATIC cluster`);
    t.same(endpointsOf(c), [{ host: '127.0.0.1', port: 14318 }]);
    t.notOk(c.transport_socket, 'plain HTTP to the collector');
    t.same(config.layered_runtime, { layers: [{ name: 'tracing', static_layer: { 'tracing.opentelemetry.flush_interval_ms': 250 } }] });
  }
  const kc = cluster(k8s['sidecar-orders.yaml'] as Obj, TRACING_CLUSTER);
  t.equal(kc.type, 'STRICT_DNS', 'k8s: the collector Service name is resolved');
  t.same(endpointsOf(kc), [{ host: 'otel-collector.jwt-mesh.svc.cluster.local', port: 4318 }]);
  t.equal(
    hcmOf(listener(k8s['edge.yaml'] as Obj, 'edge_http')).tracing.provider.typed_config.http_service.http_uri.uri,
    'http://otel-collector.jwt-mesh.svc.cluster.local:4318/v1/traces',
  );
  t.same(k8s['edge.yaml']?.layered_runtime.layers[0].static_layer, { 'tracing.opentelemetry.flush_interval_ms': 1000 }, 'default flush interval 1 s');
});

t.test('span names: one per route, never sent upstream', async (t) => {
  const configs = buildConfigs(topology, 'local', { tracing: { collector: '127.0.0.1:4318' } }) as Record<string, Obj>;
  const ops = (file: string, name: string) =>
    [...new Set((hcmOf(listener(configs[file] as Obj, name)).route_config.virtual_hosts as Obj[]).flatMap((vh) => (vh.routes as Obj[]).map((r) => r.decorator.operation as string)))];
  t.same(ops('edge.yaml', 'edge_http'), ['edge /healthz', 'edge /api/orders', 'edge /auth', 'edge /.well-known', 'edge not_found']);
  t.same(ops('sidecar-orders.yaml', 'inbound'), ['inbound orders']);
  t.same(ops('sidecar-orders.yaml', 'outbound'), ['outbound inventory', 'outbound no_route']);
  t.same(ops('sidecar-profile.yaml', 'inbound'), ['inbound profile gRPC', 'inbound profile']);
  t.same(ops('sidecar-inventory.yaml', 'outbound'), ['outbound profile', 'outbound no_route']);
  for (const config of Object.values(configs)) {
    for (const { hcm } of hcms(config)) {
      for (const vh of hcm.route_config.virtual_hosts as Obj[]) for (const r of vh.routes as Obj[]) if (r.decorator) t.equal(r.decorator.propagate, false);
    }
  }
});

t.test('bad tracing options fail naming the field', async (t) => {
  t.throws(() => resolveTracing({ collector: 'no-port' }), /tracing\.collector/);
  t.throws(() => resolveTracing({ collector: '127.0.0.1:4318', edgeSamplePercent: 101 }), /tracing\.edgeSamplePercent/);
  t.throws(() => resolveTracing({ collector: '127.0.0.1:4318', edgeSamplePercent: -1 }), /tracing\.edgeSamplePercent/);
  t.throws(() => resolveTracing({ collector: '127.0.0.1:4318', tracesPath: 'v1/traces' }), /tracing\.tracesPath/);
  t.throws(() => resolveTracing({ collector: '127.0.0.1:4318', flushIntervalMs: 0 }), /tracing\.flushIntervalMs/);
  t.throws(() => buildConfigs(topology, 'local', { tracing: { collector: { host: '', port: 4318 } } }), /tracing\.collector/);
  t.same(resolveTracing({ collector: '10.0.0.1:4318' }), {
    collector: { host: '10.0.0.1', port: 4318 },
    tracesPath: '/v1/traces',
    edgeSamplePercent: 100,
    exportTimeoutMs: 1000,
    flushIntervalMs: 1000,
  });
});

t.test('CLI: --tracing-collector and --tracing-sample-percent', async (t) => {
  const tsx = join(process.cwd(), 'node_modules', '.bin', 'tsx');
  const script = new URL('../src/render.ts', import.meta.url).pathname;
  const out = tempDir(t);
  await run(tsx, [script, '--target', 'k8s', '--out', out, '--tracing-collector', 'collector.example:4318', '--tracing-sample-percent', '5']);
  const edge = YAML.parse(readFileSync(join(out, 'edge.yaml'), 'utf8')) as Obj;
  t.same(hcmOf(listener(edge, 'edge_http')).tracing.random_sampling, { value: 5 });
  t.same(endpointsOf(cluster(edge, TRACING_CLUSTER)), [{ host: 'collector.example', port: 4318 }]);
  t.equal(
    readFileSync(join(out, 'sidecar-orders.yaml'), 'utf8'),
    renderConfigs(topology, 'k8s', { tracing: { collector: 'collector.example:4318', edgeSamplePercent: 5 } })['sidecar-orders.yaml'],
    'the CLI writes what renderConfigs returns',
  );
  await t.rejects(run(tsx, [script, '--target', 'k8s', '--out', out, '--tracing-sample-percent', '5']), /needs --tracing-collector/);
  await t.rejects(run(tsx, [script, '--target', 'k8s', '--out', out, '--tracing-collector', 'x:1', '--tracing-sample-percent', '200']), /tracing\.edgeSamplePercent/);
});
