/**
 * Schema validation of rendered objects, offline:
 *
 * - built-in kinds: against the JSON schemas generated from the Kubernetes OpenAPI spec that PyPI
 *   `kubernetes-validate` ships, in their strict variant (an unknown or misspelt field is an
 *   error, as `kubectl apply --validate=strict` would report), through
 *   k8s/scripts/schema_validate.py, which reports every error of every object;
 * - cert-manager kinds (`cert-manager.io/v1`, for the optional component): against the CRD
 *   schemas in npm `@kubernetes-models/cert-manager` (`.validate()`; types, enums and required
 *   fields; that library does not reject unknown fields);
 * - anything else: an error, since nothing here could check it.
 */
import { resolve } from 'node:path';
import { Certificate } from '@kubernetes-models/cert-manager/cert-manager.io/v1/Certificate';
import { ClusterIssuer } from '@kubernetes-models/cert-manager/cert-manager.io/v1/ClusterIssuer';
import { Issuer } from '@kubernetes-models/cert-manager/cert-manager.io/v1/Issuer';
import { refOf, type K8sObject } from './manifests.js';
import { K8S_DIR } from './paths.js';
import { k8sToolPath, runTool } from './tools.js';

/** The Kubernetes minor version the manifests are validated for (the pinned kubectl's). */
export const KUBERNETES_VERSION = '1.37';

/** One schema error. */
export interface SchemaProblem {
  /** `Kind/name` of the object. */
  object: string;
  /** Dotted path inside the object (`spec.template.spec.containers.0`), '' for the object itself. */
  path: string;
  message: string;
  /** Which validator found it. */
  validator: 'kubernetes-validate' | '@kubernetes-models/cert-manager' | 'none';
}

interface PyResult {
  index: number;
  status: 'valid' | 'invalid' | 'no-schema';
  errors: Array<{ path: string; message: string }>;
}

type CrdModel = { validate(): void };
const CERT_MANAGER: Record<string, new (data: never) => CrdModel> = {
  Certificate: Certificate as unknown as new (data: never) => CrdModel,
  Issuer: Issuer as unknown as new (data: never) => CrdModel,
  ClusterIssuer: ClusterIssuer as unknown as new (data: never) => CrdModel,
};

function validateCertManager(obj: K8sObject): SchemaProblem[] {
  const Model = obj.apiVersion === 'cert-manager.io/v1' ? CERT_MANAGER[obj.kind] : undefined;
  if (!Model) {
    return [{ object: refOf(obj), path: '', message: `no schema for ${obj.apiVersion} ${obj.kind}`, validator: 'none' }];
  }
  try {
    new Model(obj as never).validate();
    return [];
  } catch (err) {
    const e = err as { errors?: Array<{ instancePath?: string; message?: string }>; message: string };
    const list = e.errors?.length ? e.errors : [{ instancePath: '', message: e.message }];
    return list.map((x) => ({
      object: refOf(obj),
      path: (x.instancePath ?? '').replace(/^\//, '').replaceAll('/', '.'),
      message: x.message ?? 'invalid',
      validator: '@kubernetes-models/cert-manager' as const,
    }));
  }
}

/**
 * Validates every object; resolves to the problems found (empty = all valid).
 * @param kubernetesVersion e.g. `1.37` (default {@link KUBERNETES_VERSION}).
 * @throws Error when the validator itself cannot run (toolchain missing).
 */
export async function validateSchemas(objects: readonly K8sObject[], kubernetesVersion: string = KUBERNETES_VERSION): Promise<SchemaProblem[]> {
  const out = await runTool(
    k8sToolPath('python'),
    [resolve(K8S_DIR, 'scripts/schema_validate.py'), '--kubernetes-version', kubernetesVersion],
    { input: JSON.stringify(objects) },
  );
  const results = JSON.parse(out) as PyResult[];
  const problems: SchemaProblem[] = [];
  for (const r of results) {
    const obj = objects[r.index] as K8sObject;
    if (r.status === 'invalid') {
      for (const e of r.errors) problems.push({ object: refOf(obj), path: e.path, message: e.message, validator: 'kubernetes-validate' });
    } else if (r.status === 'no-schema') {
      problems.push(...validateCertManager(obj));
    }
  }
  return problems;
}
