/**
 * The schema validator: the real overlays pass; broken objects (an unknown field, a wrong type, a
 * missing required field, a bad cert-manager Certificate, a kind nothing can check) fail, with
 * every error reported, not only the first.
 */
import t from 'tap';
import type { K8sObject } from '../src/manifests.js';
import { validateSchemas } from '../src/schema.js';
import { container, find, overlayObjects } from './helpers.js';

t.test('every rendered object of every overlay is valid against the strict Kubernetes 1.37 schemas', async (t) => {
  for (const overlay of ['kind', 'minikube', 'kind-cert-manager'] as const) {
    const objects = await overlayObjects(overlay);
    t.ok(objects.length > 40, `${overlay}: ${objects.length} objects`);
    t.same(await validateSchemas(objects), [], overlay);
  }
});

t.test('broken built-in objects: unknown field, wrong type, missing required field, all reported', async (t) => {
  const objects = await overlayObjects();
  const orders = find(objects, 'Deployment', 'orders');
  const app = container(orders, 'app') as unknown as Record<string, unknown>;
  app['readinesProbe'] = app['readinessProbe']; // a typo kubectl --validate=strict would reject
  (app['ports'] as Array<Record<string, unknown>>)[0]!['containerPort'] = 'eighty';
  const svc = find(objects, 'Service', 'auth');
  delete (svc['spec'] as { ports: Array<Record<string, unknown>> }).ports[0]!['port'];
  const hpa = find(objects, 'HorizontalPodAutoscaler', 'edge');
  (hpa['spec'] as Record<string, unknown>)['minReplicas'] = '2';
  const problems = await validateSchemas(objects);
  const text = problems.map((p) => `${p.object} ${p.path}: ${p.message}`);
  t.ok(text.some((m) => /^Deployment\/orders spec.template.spec.containers.0: .*'readinesProbe' was unexpected/.test(m)), 'unknown field', { text });
  t.ok(text.some((m) => /^Deployment\/orders spec.template.spec.containers.0.ports.0.containerPort: 'eighty' is not of type 'integer'/.test(m)), 'wrong type');
  t.ok(text.some((m) => /^Service\/auth spec.ports.0: 'port' is a required property/.test(m)), 'missing required field');
  t.ok(text.some((m) => /^HorizontalPodAutoscaler\/edge spec.minReplicas: '2' is not of type 'integer'/.test(m)), 'string for an integer');
  t.ok(problems.every((p) => p.validator === 'kubernetes-validate'));
});

t.test('cert-manager objects are checked against their CRD schema; unknown kinds are errors', async (t) => {
  const objects = await overlayObjects('kind-cert-manager');
  // One error per object: that library's validator stops at the first one.
  const cert = find(objects, 'Certificate', 'mesh-orders');
  (cert['spec'] as Record<string, unknown>)['duration'] = 2160;
  const noIssuer = find(objects, 'Certificate', 'mesh-profile');
  delete (noIssuer['spec'] as Record<string, unknown>)['issuerRef'];
  const unknown: K8sObject = { apiVersion: 'example.com/v1', kind: 'Widget', metadata: { name: 'w' } };
  const problems = await validateSchemas([cert, noIssuer, unknown]);
  const text = problems.map((p) => `${p.object} ${p.path}: ${p.message} (${p.validator})`);
  t.ok(text.some((m) => /^Certificate\/mesh-orders spec.duration: must be string \(@kubernetes-models\/cert-manager\)/.test(m)), 'duration type', { text });
  t.ok(text.some((m) => /^Certificate\/mesh-profile spec: must have required property '?issuerRef'?/.test(m)), 'issuerRef required');
  t.ok(text.some((m) => /^Widget\/w : no schema for example.com\/v1 Widget \(none\)/.test(m)), 'no schema = error');
});
