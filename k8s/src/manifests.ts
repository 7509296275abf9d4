/**
 * Kubernetes objects as the checks see them: plain JSON-like data from kustomize's output, with a
 * few typed views (pod templates, containers, ports) and the helpers every check shares.
 */
import YAML from 'yaml';
import { k8sToolPath, runTool } from './tools.js';

/** Any Kubernetes object (only what every object has is typed). */
export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [field: string]: unknown;
}

/** The parts of a container the checks read (core/v1 Container). */
export interface Container {
  name: string;
  image?: string;
  imagePullPolicy?: string;
  command?: string[];
  args?: string[];
  restartPolicy?: string;
  ports?: Array<{ name?: string; containerPort: number; protocol?: string }>;
  env?: Array<{ name: string; value?: string; valueFrom?: { secretKeyRef?: { name: string; key: string }; configMapKeyRef?: { name: string; key: string } } }>;
  envFrom?: Array<{ configMapRef?: { name: string }; secretRef?: { name: string } }>;
  readinessProbe?: Probe;
  livenessProbe?: Probe;
  startupProbe?: Probe;
  resources?: { requests?: Record<string, string | number>; limits?: Record<string, string | number> };
  securityContext?: SecurityContext;
  volumeMounts?: Array<{ name: string; mountPath: string; readOnly?: boolean; subPath?: string }>;
}

/** A probe (core/v1 Probe); only the handlers that name a port are typed. */
export interface Probe {
  httpGet?: { port: number | string; path?: string };
  tcpSocket?: { port: number | string };
  grpc?: { port: number };
  exec?: { command: string[] };
}

/** core/v1 SecurityContext and the fields PodSecurityContext shares with it. */
export interface SecurityContext {
  runAsNonRoot?: boolean;
  runAsUser?: number;
  runAsGroup?: number;
  allowPrivilegeEscalation?: boolean;
  readOnlyRootFilesystem?: boolean;
  privileged?: boolean;
  capabilities?: { drop?: string[]; add?: string[] };
  seccompProfile?: { type: string };
}

/** core/v1 Volume, the sources the checks read. */
export interface Volume {
  name: string;
  configMap?: { name: string };
  secret?: { secretName: string };
  emptyDir?: Record<string, unknown>;
  projected?: { sources?: Array<{ secret?: { name: string }; configMap?: { name: string } }> };
}

/** core/v1 PodSpec, the parts the checks read. */
export interface PodSpec {
  containers?: Container[];
  initContainers?: Container[];
  volumes?: Volume[];
  securityContext?: SecurityContext & { fsGroup?: number };
  serviceAccountName?: string;
}

/** A pod template found in a workload object. */
export interface PodTemplate {
  /** The object that owns it (Deployment, StatefulSet, Job, ...). */
  owner: K8sObject;
  /** `Kind/name` of the owner, for messages. */
  ref: string;
  namespace: string;
  labels: Record<string, string>;
  spec: PodSpec;
}

/** A container with its place in the pod. */
export interface PodContainer {
  container: Container;
  /** `init` for init containers; `sidecar` for init containers with restartPolicy Always (native sidecars). */
  role: 'main' | 'init' | 'sidecar';
}

const WORKLOAD_KINDS = new Set(['Deployment', 'StatefulSet', 'DaemonSet', 'ReplicaSet', 'Job', 'ReplicationController']);

/** `Kind/name`, the way every message names an object. */
export function refOf(obj: K8sObject): string {
  return `${obj.kind}/${obj.metadata?.name ?? '?'}`;
}

/**
 * Parses a multi-document YAML stream (kustomize's output) into objects; empty documents are skipped.
 * @throws Error naming the document index when a document is not valid YAML or not an object with apiVersion, kind and metadata.name.
 */
export function parseManifests(text: string): K8sObject[] {
  const docs = YAML.parseAllDocuments(text);
  const out: K8sObject[] = [];
  docs.forEach((doc, i) => {
    if (doc.errors.length > 0) throw new Error(`manifest document ${i}: ${doc.errors[0]?.message ?? 'invalid YAML'}`);
    const value: unknown = doc.toJS();
    if (value === null || value === undefined) return;
    const o = value as Partial<K8sObject>;
    if (typeof o !== 'object' || typeof o.apiVersion !== 'string' || typeof o.kind !== 'string' || typeof o.metadata?.name !== 'string') {
      throw new Error(`manifest document ${i}: not a Kubernetes object (apiVersion, kind and metadata.name are required)`);
    }
    out.push(o as K8sObject);
  });
  return out;
}

/**
 * Renders a kustomization directory with `kubectl kustomize` (kustomize v5, built into the pinned
 * kubectl) and parses the result.
 * @throws Error with kustomize's message when the build fails.
 */
export async function kustomizeBuild(dir: string): Promise<K8sObject[]> {
  const yaml = await runTool(k8sToolPath('kubectl'), ['kustomize', dir]);
  return parseManifests(yaml);
}

/** Every pod template: workloads' `spec.template`, CronJobs' `spec.jobTemplate.spec.template`, bare Pods' `spec`. */
export function podTemplates(objects: readonly K8sObject[]): PodTemplate[] {
  const out: PodTemplate[] = [];
  for (const obj of objects) {
    const spec = obj['spec'] as Record<string, unknown> | undefined;
    let template: { metadata?: { labels?: Record<string, string> }; spec?: PodSpec } | undefined;
    if (WORKLOAD_KINDS.has(obj.kind)) template = spec?.['template'] as typeof template;
    else if (obj.kind === 'CronJob') {
      template = ((spec?.['jobTemplate'] as Record<string, unknown> | undefined)?.['spec'] as Record<string, unknown> | undefined)?.[
        'template'
      ] as typeof template;
    } else if (obj.kind === 'Pod') template = { metadata: obj.metadata, spec: spec as PodSpec };
    if (!template) continue;
    out.push({
      owner: obj,
      ref: refOf(obj),
      namespace: obj.metadata.namespace ?? 'default',
      labels: template.metadata?.labels ?? {},
      spec: template.spec ?? {},
    });
  }
  return out;
}

/** The containers of a pod, init containers included, each with its role. */
export function containersOf(pod: PodTemplate): PodContainer[] {
  return [
    ...(pod.spec.initContainers ?? []).map((container) => ({
      container,
      role: container.restartPolicy === 'Always' ? ('sidecar' as const) : ('init' as const),
    })),
    ...(pod.spec.containers ?? []).map((container) => ({ container, role: 'main' as const })),
  ];
}

/** True when the owner runs to completion (Job, CronJob): its containers need no probes. */
export function isBatch(pod: PodTemplate): boolean {
  return pod.owner.kind === 'Job' || pod.owner.kind === 'CronJob';
}

/**
 * Label selector semantics (metav1.LabelSelector): every `matchLabels` pair and every
 * `matchExpressions` requirement must hold. An empty selector matches everything.
 */
export function selectorMatches(
  selector: { matchLabels?: Record<string, string>; matchExpressions?: Array<{ key: string; operator: string; values?: string[] }> } | undefined,
  labels: Record<string, string>,
): boolean {
  if (!selector) return true;
  for (const [k, v] of Object.entries(selector.matchLabels ?? {})) if (labels[k] !== v) return false;
  for (const e of selector.matchExpressions ?? []) {
    const has = Object.prototype.hasOwnProperty.call(labels, e.key);
    const value = labels[e.key];
    const values = e.values ?? [];
    if (e.operator === 'In' && !(has && values.includes(value as string))) return false;
    if (e.operator === 'NotIn' && has && values.includes(value as string)) return false;
    if (e.operator === 'Exists' && !has) return false;
    if (e.operator === 'DoesNotExist' && has) return false;
  }
  return true;
}

/** The pod templates a Service's `spec.selector` (plain map) selects in its namespace. */
export function podsSelectedBy(service: K8sObject, pods: readonly PodTemplate[]): PodTemplate[] {
  const selector = (service['spec'] as { selector?: Record<string, string> } | undefined)?.selector;
  if (!selector || Object.keys(selector).length === 0) return [];
  const ns = service.metadata.namespace ?? 'default';
  return pods.filter((p) => p.namespace === ns && selectorMatches({ matchLabels: selector }, p.labels));
}

/** The container port a port reference (number or name) resolves to on `container`, or undefined. */
export function resolveContainerPort(container: Container, ref: number | string): number | undefined {
  if (typeof ref === 'number') return container.ports?.some((p) => p.containerPort === ref) ? ref : undefined;
  if (/^\d+$/.test(ref)) return resolveContainerPort(container, Number(ref));
  return container.ports?.find((p) => p.name === ref)?.containerPort;
}
