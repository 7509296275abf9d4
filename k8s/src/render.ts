/**
 * Renders the files the kustomize base takes from elsewhere in the repository, so that the
 * cluster runs exactly what the local stack runs:
 *
 * - `k8s/base/envoy/edge.yaml` and `k8s/base/envoy/sidecar-<service>.yaml`: the Envoy bootstraps
 *   from envoy/src/render.ts `renderConfigs(defaultTopology(), 'k8s')` (Service DNS names, the
 *   same ports in every pod, certificates under /etc/jwt-mesh/certs/<workload>/);
 * - `k8s/base/authz/policy.yaml`: a byte-for-byte copy of authz-service/policy.yaml (kustomize
 *   refuses files outside its folder, so the configMapGenerator reads this copy);
 * - `k8s/components/tracing/envoy/*.yaml`: the same bootstraps with Envoy's OpenTelemetry tracer
 *   on (`tracing.collector` {@link TRACING_COLLECTOR_HOST}:4318), which the tracing component puts
 *   in place of the base's.
 *
 * The rendered files are committed; the test k8s/test/render.test.ts re-renders and compares, so
 * they cannot drift from their source.
 *
 * CLI (`make k8s-render`): `tsx k8s/src/render.ts [--check]`; `--check` writes nothing and exits 1
 * naming every file that differs.
 */
import { mkdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { defaultTopology } from '@jwt-mesh/envoy/topology';
import { renderConfigs } from '@jwt-mesh/envoy/render';
import { BASE_DIR, REPO_ROOT, TRACING_COMPONENT_DIR } from './paths.js';

/** The authz route policy the base ships (source of the copy). */
export const AUTHZ_POLICY_SOURCE = resolve(REPO_ROOT, 'authz-service/policy.yaml');

/**
 * Every rendered file, keyed by its path relative to `k8s/base/`
 * (`envoy/edge.yaml`, `envoy/sidecar-orders.yaml`, ..., `authz/policy.yaml`).
 * @throws Error from the Envoy generator (bad topology) or when the policy file cannot be read.
 */
export function renderBaseFiles(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, text] of Object.entries(renderConfigs(defaultTopology(), 'k8s'))) out[`envoy/${name}`] = text;
  out['authz/policy.yaml'] = readFileSync(AUTHZ_POLICY_SOURCE, 'utf8');
  return out;
}

/** The collector Service the tracing component's Envoy configs export to (k8s/components/tracing/otel-collector.yaml). */
export const TRACING_COLLECTOR_HOST = 'otel-collector.jwt-mesh.svc.cluster.local';

/**
 * The tracing component's rendered files, keyed by their path relative to
 * `k8s/components/tracing/` (`envoy/edge.yaml`, `envoy/sidecar-orders.yaml`, ...): the k8s
 * bootstraps with the OpenTelemetry tracer exporting to {@link TRACING_COLLECTOR_HOST}:4318.
 * @throws Error from the Envoy generator.
 */
export function renderTracingComponentFiles(): Record<string, string> {
  const out: Record<string, string> = {};
  const files = renderConfigs(defaultTopology(), 'k8s', { tracing: { collector: { host: TRACING_COLLECTOR_HOST, port: 4318 } } });
  for (const [name, text] of Object.entries(files)) out[`envoy/${name}`] = text;
  return out;
}

function stale(files: Record<string, string>, dir: string): string[] {
  return Object.entries(files)
    .filter(([rel, text]) => {
      const path = join(dir, rel);
      return !existsSync(path) || readFileSync(path, 'utf8') !== text;
    })
    .map(([rel]) => rel);
}

function write(files: Record<string, string>, dir: string): string[] {
  return Object.entries(files).map(([rel, text]) => {
    const path = join(dir, rel);
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, text);
    return path;
  });
}

/**
 * Compares {@link renderBaseFiles} with what is in `baseDir`.
 * @returns the relative paths that are missing or differ (empty when everything is current).
 */
export function staleBaseFiles(baseDir: string = BASE_DIR): string[] {
  return stale(renderBaseFiles(), baseDir);
}

/**
 * Writes {@link renderBaseFiles} into `baseDir` (default `k8s/base`).
 * @returns the absolute paths written.
 */
export function writeBaseFiles(baseDir: string = BASE_DIR): string[] {
  return write(renderBaseFiles(), baseDir);
}

/**
 * Compares {@link renderTracingComponentFiles} with what is in `dir` (default `k8s/components/tracing`).
 * @returns the relative paths that are missing or differ.
 */
export function staleTracingComponentFiles(dir: string = TRACING_COMPONENT_DIR): string[] {
  return stale(renderTracingComponentFiles(), dir);
}

/**
 * Writes {@link renderTracingComponentFiles} into `dir` (default `k8s/components/tracing`).
 * @returns the absolute paths written.
 */
export function writeTracingComponentFiles(dir: string = TRACING_COMPONENT_DIR): string[] {
  return write(renderTracingComponentFiles(), dir);
}

/** Every rendered file that is missing or out of date, as paths relative to `k8s/`. */
export function staleRenderedFiles(): string[] {
  return [...staleBaseFiles().map((f) => `base/${f}`), ...staleTracingComponentFiles().map((f) => `components/tracing/${f}`)];
}

function main(argv: string[]): number {
  if (argv.includes('--check')) {
    const stale = staleRenderedFiles();
    if (stale.length === 0) {
      process.stdout.write('k8s-render: k8s/base and k8s/components/tracing are current\n');
      return 0;
    }
    process.stderr.write(`k8s-render: out of date in k8s/: ${stale.join(', ')} (run 'make k8s-render')\n`);
    return 1;
  }
  for (const path of [...writeBaseFiles(), ...writeTracingComponentFiles()]) process.stdout.write(`${path}\n`);
  return 0;
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  try {
    process.exitCode = main(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`k8s-render: ${(err as Error).message}\n`);
    process.exitCode = 1;
  }
}
