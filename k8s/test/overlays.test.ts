/**
 * The overlays end to end, the way `make k8s-validate` checks them (render, schemas, invariants,
 * `envoy --mode validate` on every ConfigMap), plus what each overlay is for: kind's image pull
 * policy and NodePorts matching the kind cluster's port mappings, minikube's NodePorts, the
 * cert-manager overlay issuing every mesh Secret.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import t from 'tap';
import YAML from 'yaml';
import { repoContext } from '../src/context.js';
import { containersOf, podTemplates } from '../src/manifests.js';
import { K8S_DIR, OVERLAYS } from '../src/paths.js';
import { formatReport, validateOverlay } from '../src/validate.js';
import { find, overlayObjects } from './helpers.js';

const ctx = await repoContext();

for (const [name, dir] of Object.entries(OVERLAYS)) {
  t.test(`overlay ${name}: schemas, invariants and every Envoy config valid`, async (t) => {
    const report = await validateOverlay(name, dir, ctx);
    t.ok(report.ok, formatReport(report).join('\n'));
    t.same(report.schema, []);
    t.same(report.violations, []);
    t.same(report.envoy.map((e) => e.configMap.replace(/-[a-z0-9]{10}$/, '')).sort(), [
      'envoy-edge',
      'envoy-sidecar-auth',
      'envoy-sidecar-inventory',
      'envoy-sidecar-orders',
      'envoy-sidecar-profile',
    ]);
    t.ok(report.envoy.every((e) => e.ok), report.envoy.map((e) => `${e.configMap}: ${e.ok ? 'ok' : e.output}`).join('\n'));
  });
}

t.test('kind: jwt-mesh images are never pulled, upstream ones may be; NodePorts match the cluster port mappings', async (t) => {
  const objects = await overlayObjects('kind');
  for (const pod of podTemplates(objects)) {
    for (const { container } of containersOf(pod)) {
      const ours = container.image?.startsWith('jwt-mesh/');
      t.equal(container.imagePullPolicy, ours ? 'Never' : 'IfNotPresent', `${pod.ref} [${container.name}] ${container.image}`);
    }
  }
  const svc = find(objects, 'Service', 'edge')['spec'] as { type: string; ports: Array<{ name: string; nodePort: number; port: number }> };
  t.equal(svc.type, 'NodePort');
  const cluster = YAML.parse(readFileSync(resolve(K8S_DIR, 'overlays/kind/kind-cluster.yaml'), 'utf8')) as {
    nodes: Array<{ extraPortMappings: Array<{ containerPort: number; hostPort: number }> }>;
  };
  const mappings = cluster.nodes.flatMap((n) => n.extraPortMappings);
  t.same(
    svc.ports.map((p) => [p.name, p.nodePort, mappings.find((m) => m.containerPort === p.nodePort)?.hostPort]),
    [
      ['http', 30080, 8080],
      ['https', 30443, 8443],
    ],
    'localhost:8080 -> 30080 -> edge http, localhost:8443 -> 30443 -> edge https',
  );
});

t.test('minikube: images IfNotPresent (loaded with minikube image load), NodePorts 30080/30443', async (t) => {
  const objects = await overlayObjects('minikube');
  for (const pod of podTemplates(objects)) {
    for (const { container } of containersOf(pod)) t.equal(container.imagePullPolicy, 'IfNotPresent', `${pod.ref} [${container.name}]`);
  }
  const svc = find(objects, 'Service', 'edge')['spec'] as { ports: Array<{ name: string; nodePort: number }> };
  t.same(svc.ports.map((p) => [p.name, p.nodePort]), [['http', 30080], ['https', 30443]]);
});

t.test('cert-manager: a CA chain and one Certificate per mesh Secret, with the SPIFFE IDs of the dev CA', async (t) => {
  const objects = await overlayObjects('kind-cert-manager');
  const certs = objects.filter((o) => o.kind === 'Certificate');
  const bySecret = new Map(certs.map((c) => [(c['spec'] as { secretName: string }).secretName, c['spec'] as { uris?: string[]; issuerRef: { name: string } }]));
  for (const w of ['edge', 'authz', 'auth', 'orders', 'inventory', 'profile']) {
    t.same(bySecret.get(`mesh-${w}`)?.uris, [`spiffe://jwt-mesh.local/ns/jwt-mesh/sa/${w}`], `mesh-${w}`);
    t.equal(bySecret.get(`mesh-${w}`)?.issuerRef.name, 'jwt-mesh-ca');
  }
  t.ok(bySecret.has('mesh-edge-https'));
  t.ok(bySecret.has('jwt-mesh-ca'));
  t.ok(objects.every((o) => o.kind === 'Namespace' || o.metadata.namespace === 'jwt-mesh'), 'everything in the jwt-mesh namespace');
});

t.test('kind-tracing: kind plus the collector and Jaeger (pinned), the traced Envoy configs and the OTLP endpoint; kind has none of it', async (t) => {
  const kind = await overlayObjects('kind');
  const traced = await overlayObjects('kind-tracing');
  const names = (objects: typeof kind, kindName: string) => objects.filter((o) => o.kind === kindName).map((o) => o.metadata.name).sort();
  t.same(names(traced, 'Deployment'), [...names(kind, 'Deployment'), 'jaeger', 'otel-collector'].sort(), 'two Deployments more');
  const image = (d: string) => podTemplates(traced).find((p) => p.labels['app.kubernetes.io/name'] === d)?.spec.containers?.[0]?.image;
  t.equal(image('otel-collector'), 'otel/opentelemetry-collector-contrib:0.120.0');
  t.equal(image('jaeger'), 'jaegertracing/all-in-one:1.66.0');
  t.notOk(kind.some((o) => /otel|jaeger/.test(o.metadata.name)), 'nothing of it in kind');
  const env = (objects: typeof kind) => find(objects, 'ConfigMap', 'jwt-mesh-env')['data'] as Record<string, string>;
  t.equal(env(traced)['OTEL_EXPORTER_OTLP_ENDPOINT'], 'http://otel-collector.jwt-mesh.svc.cluster.local:4318');
  t.equal(env(traced)['OTEL_TRACES_SAMPLER'], 'parentbased_always_off');
  t.equal(env(traced)['JWT_ISSUER'], env(kind)['JWT_ISSUER'], 'merged into jwt-mesh-env, the rest kept');
  t.notOk(env(kind)['OTEL_EXPORTER_OTLP_ENDPOINT']);
  for (const cm of ['envoy-edge', 'envoy-sidecar-orders', 'envoy-sidecar-inventory', 'envoy-sidecar-profile', 'envoy-sidecar-auth']) {
    const text = (o: typeof kind) => (find(o, 'ConfigMap', cm)['data'] as Record<string, string>)['envoy.yaml'] as string;
    t.match(text(traced), /envoy\.tracers\.opentelemetry/, `${cm}: the tracer is on`);
    t.notMatch(text(kind), /envoy\.tracers\.opentelemetry/, `${cm}: not in kind`);
    t.not(find(traced, 'ConfigMap', cm).metadata.name, find(kind, 'ConfigMap', cm).metadata.name, `${cm}: a new hash suffix rolls the pods`);
  }
  t.equal(traced.filter((o) => o.kind === 'ConfigMap' && o.metadata.name.startsWith('envoy-edge')).length, 1, 'replaced, not added');
});
