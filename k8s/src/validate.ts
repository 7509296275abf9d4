/**
 * `make k8s-validate`: renders every overlay with kustomize and checks it offline, the way the
 * tests do: schemas (./schema.ts), invariants (./invariants.ts), Envoy configs
 * (./envoy-validate.ts). Also checks that the rendered Envoy/authz files in k8s/base are current
 * (./render.ts).
 */
import { checkInvariants, type CheckContext, type Violation } from './invariants.js';
import { kustomizeBuild, type K8sObject } from './manifests.js';
import { validateSchemas, type SchemaProblem } from './schema.js';
import { validateEnvoyConfigs, type EnvoyValidation } from './envoy-validate.js';

/** Everything found wrong in one overlay. */
export interface OverlayReport {
  overlay: string;
  objects: K8sObject[];
  schema: SchemaProblem[];
  violations: Violation[];
  envoy: EnvoyValidation[];
  /** True when nothing is wrong. */
  ok: boolean;
}

/**
 * Renders `dir` with kustomize and runs every check.
 * @param certRoot passed to {@link validateEnvoyConfigs}.
 * @throws Error when kustomize fails or a tool is missing (a broken overlay that renders is a report, not a throw).
 */
export async function validateOverlay(name: string, dir: string, ctx: CheckContext, certRoot?: string): Promise<OverlayReport> {
  const objects = await kustomizeBuild(dir);
  const [schema, envoy] = await Promise.all([validateSchemas(objects), validateEnvoyConfigs(objects, certRoot)]);
  const violations = checkInvariants(objects, ctx);
  return { overlay: name, objects, schema, violations, envoy, ok: schema.length === 0 && violations.length === 0 && envoy.every((e) => e.ok) };
}

/** Human-readable lines for a report (one per problem, plus a summary line). */
export function formatReport(r: OverlayReport): string[] {
  const lines = [
    ...r.schema.map((p) => `  schema  ${p.object}${p.path ? ` ${p.path}` : ''}: ${p.message} (${p.validator})`),
    ...r.violations.map((x) => `  ${x.rule}  ${x.object}${x.container ? ` [${x.container}]` : ''}: ${x.message}`),
    ...r.envoy.filter((e) => !e.ok).map((e) => `  envoy  ConfigMap/${e.configMap}: envoy --mode validate failed:\n    ${e.output.replaceAll('\n', '\n    ')}`),
  ];
  const kinds = new Map<string, number>();
  for (const o of r.objects) kinds.set(o.kind, (kinds.get(o.kind) ?? 0) + 1);
  const summary = `${r.ok ? 'ok' : 'FAILED'}  ${r.overlay}: ${r.objects.length} objects (${[...kinds].map(([k, n]) => `${n} ${k}`).join(', ')}); ` +
    `schema errors ${r.schema.length}, invariant violations ${r.violations.length}, Envoy configs ${r.envoy.filter((e) => e.ok).length}/${r.envoy.length} valid`;
  return [summary, ...lines];
}
