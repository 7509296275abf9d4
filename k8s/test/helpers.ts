/**
 * Test helpers: the kind overlay rendered once per test file, deep copies to break, and finders
 * for the objects and containers the tests edit.
 */
import YAML from 'yaml';
import { kustomizeBuild, type Container, type K8sObject, type PodSpec } from '../src/manifests.js';
import { OVERLAYS, type OverlayName } from '../src/paths.js';

const rendered = new Map<OverlayName, Promise<K8sObject[]>>();

/** A fresh deep copy of an overlay's rendered objects (rendered with kustomize once per process). */
export async function overlayObjects(name: OverlayName = 'kind'): Promise<K8sObject[]> {
  let p = rendered.get(name);
  if (!p) {
    p = kustomizeBuild(OVERLAYS[name]);
    rendered.set(name, p);
  }
  return structuredClone(await p);
}

/** The object of `kind` named `name` (the base name: a kustomize hash suffix is ignored). */
export function find(objects: K8sObject[], kind: string, name: string): K8sObject {
  const o = objects.find((x) => x.kind === kind && (x.metadata.name === name || x.metadata.name.replace(/-[a-z0-9]{10}$/, '') === name));
  if (!o) throw new Error(`test fixture: no ${kind}/${name}`);
  return o;
}

/** The pod spec of a workload object. */
export function podSpec(obj: K8sObject): PodSpec {
  return ((obj['spec'] as { template: { spec: PodSpec } }).template.spec);
}

/** A container (init containers included) of a workload by name. */
export function container(obj: K8sObject, name: string): Container {
  const spec = podSpec(obj);
  const c = [...(spec.initContainers ?? []), ...(spec.containers ?? [])].find((x) => x.name === name);
  if (!c) throw new Error(`test fixture: ${obj.kind}/${obj.metadata.name} has no container ${name}`);
  return c;
}

/** Edits the Envoy bootstrap inside a ConfigMap (key envoy.yaml) with `edit`. */
export function editEnvoyConfig(objects: K8sObject[], configMap: string, edit: (config: Record<string, any>) => void): void {
  const cm = find(objects, 'ConfigMap', configMap);
  const data = cm['data'] as Record<string, string>;
  const config = YAML.parse(data['envoy.yaml'] as string) as Record<string, any>;
  edit(config);
  data['envoy.yaml'] = YAML.stringify(config);
}

/** Every rule id of the violations, for `t.ok(rules.includes(...))`-style assertions. */
export function messages(violations: Array<{ rule: string; object: string; container?: string; message: string }>): string[] {
  return violations.map((x) => `${x.rule} ${x.object}${x.container ? ` [${x.container}]` : ''}: ${x.message}`);
}
