/**
 * `make envoy-validate`: renders every Envoy config for both targets, without and with the
 * OpenTelemetry tracer, and runs `envoy --mode validate` on each, with real certificate files (the dev certificates from
 * `make certs`; for the k8s target copied into the Secret layout under a scratch folder, since
 * /etc/jwt-mesh/certs exists only inside a pod).
 *
 * CLI: `tsx envoy/src/validate.ts [--cert-dir <dir>] [--out <dir>]`. Exit 0 when every config is
 * valid and uses no deprecated field, 1 otherwise.
 */
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { validateEnvoyConfig } from './binary.js';
import { createDevCerts, writeK8sCertLayout } from './certs.js';
import { renderToDir, type Target } from './render.js';
import { defaultTopology } from './topology.js';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/**
 * The collectors the traced variants export to: a loopback one for `local` (what `make up
 * TRACING=on` uses) and the tracing component's Service for `k8s` (k8s/components/tracing).
 */
export const VALIDATION_COLLECTORS: Readonly<Record<Target, string>> = {
  local: '127.0.0.1:4318',
  k8s: 'otel-collector.jwt-mesh.svc.cluster.local:4318',
};

/**
 * Renders and validates every config: both targets, each without and with the OpenTelemetry
 * tracer (`RenderOptions.tracing`).
 * @param opts.certDir the dev certificates (created when missing). Default `<repo>/certs`.
 * @param opts.outDir scratch folder for the rendered files. Default `<repo>/.run/envoy-validate`.
 * @returns one entry per file: its target, whether it is the traced variant, its path, whether
 *   Envoy accepted it, and Envoy's output when not.
 */
export async function validateAll(opts: { certDir?: string; outDir?: string } = {}): Promise<
  Array<{ target: Target; tracing: boolean; file: string; ok: boolean; deprecations: string[]; output: string }>
> {
  const certs = await createDevCerts({ dir: opts.certDir ?? join(repoRoot, 'certs') });
  const out = resolve(opts.outDir ?? join(repoRoot, '.run', 'envoy-validate'));
  const topology = defaultTopology();
  const k8sCerts = writeK8sCertLayout(certs, join(out, 'k8s-secrets'));
  const files: Array<[Target, boolean, string]> = [];
  for (const tracing of [false, true]) {
    for (const target of ['local', 'k8s'] as const) {
      const dir = join(out, tracing ? `${target}-tracing` : target);
      const written = renderToDir(topology, target, dir, {
        certDir: target === 'local' ? certs.dir : k8sCerts,
        ...(tracing ? { tracing: { collector: VALIDATION_COLLECTORS[target] } } : {}),
      });
      files.push(...written.map((f): [Target, boolean, string] => [target, tracing, f]));
    }
  }
  const results = [];
  for (const [target, tracing, file] of files) {
    const r = await validateEnvoyConfig({ file });
    results.push({ target, tracing, file, ok: r.ok, deprecations: r.deprecations, output: r.output });
  }
  return results;
}

async function main(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: { 'cert-dir': { type: 'string' }, out: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
    strict: true,
  });
  if (values.help) {
    process.stdout.write('Usage: tsx envoy/src/validate.ts [--cert-dir certs] [--out .run/envoy-validate]\n');
    return 0;
  }
  const results = await validateAll({
    ...(values['cert-dir'] ? { certDir: resolve(values['cert-dir']) } : {}),
    ...(values.out ? { outDir: resolve(values.out) } : {}),
  });
  let failed = 0;
  for (const r of results) {
    const good = r.ok && r.deprecations.length === 0;
    if (!good) failed += 1;
    process.stdout.write(`${good ? 'ok  ' : 'FAIL'} ${`${r.target}${r.tracing ? '+tracing' : ''}`.padEnd(13)} ${r.file}\n`);
    if (!r.ok) process.stdout.write(`${r.output.trim()}\n`);
    for (const d of r.deprecations) process.stdout.write(`     deprecated: ${d}\n`);
  }
  process.stdout.write(`envoy-validate: ${results.length - failed} valid, ${failed} invalid\n`);
  return failed === 0 ? 0 : 1;
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  main(process.argv.slice(2)).then(
    (code) => (process.exitCode = code),
    (err: unknown) => {
      process.stderr.write(`envoy-validate: ${(err as Error).message}\n`);
      process.exitCode = 1;
    },
  );
}
