/**
 * `make envoy-validate`: renders every Envoy config for both targets and runs
 * `envoy --mode validate` on each, with real certificate files (the dev certificates from
 * `make certs`; for the k8s target copied into the Secret layout under a scratch folder, since
 * /etc/jwt-mesh/certs exists only inside a pod).
 *
 * CLI: `tsx envoy/src/validate.ts [--cert-dir <dir>] [--out <dir>]`. Exit 0 when every config is
 * valid and uses no deprecated field, 1 otherwise.
 */
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { validateEnvoyConfig } from '@jwt-mesh/testkit';
import { createDevCerts, writeK8sCertLayout } from './certs.js';
import { renderToDir, type Target } from './render.js';
import { defaultTopology } from './topology.js';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/**
 * Renders and validates every config.
 * @param opts.certDir the dev certificates (created when missing). Default `<repo>/certs`.
 * @param opts.outDir scratch folder for the rendered files. Default `<repo>/.run/envoy-validate`.
 * @returns one entry per file: its path, whether Envoy accepted it, and Envoy's output when not.
 */
export async function validateAll(opts: { certDir?: string; outDir?: string } = {}): Promise<
  Array<{ target: Target; file: string; ok: boolean; deprecations: string[]; output: string }>
> {
  const certs = await createDevCerts({ dir: opts.certDir ?? join(repoRoot, 'certs') });
  const out = resolve(opts.outDir ?? join(repoRoot, '.run', 'envoy-validate'));
  const topology = defaultTopology();
  const files: Array<[Target, string]> = [
    ...renderToDir(topology, 'local', join(out, 'local'), { certDir: certs.dir }).map((f) => ['local', f] as [Target, string]),
    ...renderToDir(topology, 'k8s', join(out, 'k8s'), { certDir: writeK8sCertLayout(certs, join(out, 'k8s-secrets')) }).map(
      (f) => ['k8s', f] as [Target, string],
    ),
  ];
  const results = [];
  for (const [target, file] of files) {
    const r = await validateEnvoyConfig({ file });
    results.push({ target, file, ok: r.ok, deprecations: r.deprecations, output: r.output });
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
    process.stdout.write(`${good ? 'ok  ' : 'FAIL'} ${r.target.padEnd(5)} ${r.file}\n`);
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
