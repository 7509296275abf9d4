/**
 * The rendered files in k8s/base cannot drift from their sources: re-render (envoy/src/render.ts
 * for the k8s target, authz-service/policy.yaml) and compare byte for byte; and every rendered
 * Envoy config ships in a ConfigMap of the base.
 */
import { readFileSync, readdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import YAML from 'yaml';
import { renderConfigs } from '@jwt-mesh/envoy/render';
import { defaultTopology } from '@jwt-mesh/envoy/topology';
import {
  renderBaseFiles,
  renderTracingComponentFiles,
  staleBaseFiles,
  staleRenderedFiles,
  staleTracingComponentFiles,
  writeBaseFiles,
  writeTracingComponentFiles,
  AUTHZ_POLICY_SOURCE,
  TRACING_COLLECTOR_HOST,
} from '../src/render.js';
import { BASE_DIR, TRACING_COMPONENT_DIR } from '../src/paths.js';

t.test('k8s/base/envoy and k8s/base/authz match a fresh render (run `make k8s-render` when this fails)', async (t) => {
  t.same(staleBaseFiles(), [], 'no stale or missing file');
  const rendered = renderBaseFiles();
  for (const [rel, text] of Object.entries(rendered)) {
    t.equal(readFileSync(join(BASE_DIR, rel), 'utf8'), text, rel);
  }
  t.equal(rendered['authz/policy.yaml'], readFileSync(AUTHZ_POLICY_SOURCE, 'utf8'), 'the policy is a byte-for-byte copy');
  t.same(
    Object.keys(rendered).filter((k) => k.startsWith('envoy/')).map((k) => k.slice('envoy/'.length)).sort(),
    Object.keys(renderConfigs(defaultTopology(), 'k8s')).sort(),
    'one file per proxy of the topology',
  );
  t.same(readdirSync(join(BASE_DIR, 'envoy')).sort(), Object.keys(renderConfigs(defaultTopology(), 'k8s')).sort(), 'no leftover file in k8s/base/envoy');
});

t.test('a stale file is detected and rewriting fixes it', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'jwt-mesh-k8s-render-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  t.same(staleBaseFiles(dir).sort(), Object.keys(renderBaseFiles()).sort(), 'an empty folder: everything is missing');
  writeBaseFiles(dir);
  t.same(staleBaseFiles(dir), []);
  const path = join(dir, 'envoy/sidecar-orders.yaml');
  writeFileSync(path, readFileSync(path, 'utf8').replace('port_value: 8443', 'port_value: 8444'));
  t.same(staleBaseFiles(dir), ['envoy/sidecar-orders.yaml']);
});

t.test('every rendered config is in a configMapGenerator of the base, and every generated file exists', async (t) => {
  const kustomization = YAML.parse(readFileSync(join(BASE_DIR, 'kustomization.yaml'), 'utf8')) as {
    configMapGenerator: Array<{ name: string; files?: string[] }>;
  };
  const files = kustomization.configMapGenerator.flatMap((g) => (g.files ?? []).map((f) => f.split('=').pop() as string));
  for (const rel of Object.keys(renderBaseFiles())) t.ok(files.includes(rel), `${rel} is shipped in a ConfigMap`);
  for (const name of Object.keys(renderConfigs(defaultTopology(), 'k8s'))) {
    const proxy = name.replace(/\.yaml$/, '');
    t.ok(kustomization.configMapGenerator.some((g) => g.name === `envoy-${proxy}` && g.files?.includes(`envoy.yaml=envoy/${name}`)), `ConfigMap envoy-${proxy}`);
  }
});

t.test('k8s/components/tracing/envoy matches a fresh render with the tracer on, and the component ships every file in place of the base\'s', async (t) => {
  t.same(staleTracingComponentFiles(), [], 'no stale or missing file (run `make k8s-render` when this fails)');
  t.same(staleRenderedFiles(), [], 'base and component together');
  const rendered = renderTracingComponentFiles();
  const names = Object.keys(renderConfigs(defaultTopology(), 'k8s')).sort();
  t.same(Object.keys(rendered).map((k) => k.slice('envoy/'.length)).sort(), names, 'one file per proxy');
  t.same(readdirSync(join(TRACING_COMPONENT_DIR, 'envoy')).sort(), names, 'no leftover file');
  for (const [rel, text] of Object.entries(rendered)) {
    t.equal(readFileSync(join(TRACING_COMPONENT_DIR, rel), 'utf8'), text, rel);
    t.match(text, new RegExp(`uri: http://${TRACING_COLLECTOR_HOST.replaceAll('.', '\\.')}:4318/v1/traces`), `${rel} exports to the collector Service`);
  }
  const kustomization = YAML.parse(readFileSync(join(TRACING_COMPONENT_DIR, 'kustomization.yaml'), 'utf8')) as {
    kind: string;
    configMapGenerator: Array<{ name: string; behavior?: string; files?: string[] }>;
  };
  t.equal(kustomization.kind, 'Component');
  for (const name of names) {
    const proxy = name.replace(/\.yaml$/, '');
    const g = kustomization.configMapGenerator.find((x) => x.name === `envoy-${proxy}`);
    t.equal(g?.behavior, 'replace', `envoy-${proxy} replaces the base's ConfigMap`);
    t.same(g?.files, [`envoy.yaml=envoy/${name}`]);
  }
  const dir = mkdtempSync(join(tmpdir(), 'jwt-mesh-k8s-component-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  t.same(staleTracingComponentFiles(dir).sort(), Object.keys(rendered).sort(), 'an empty folder: everything is missing');
  writeTracingComponentFiles(dir);
  t.same(staleTracingComponentFiles(dir), []);
});
