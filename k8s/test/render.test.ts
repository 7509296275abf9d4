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
import { renderBaseFiles, staleBaseFiles, writeBaseFiles, AUTHZ_POLICY_SOURCE } from '../src/render.js';
import { BASE_DIR } from '../src/paths.js';

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
