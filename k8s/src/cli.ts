/**
 * `make k8s-validate` / `npm run validate -w @jwt-mesh/k8s`: checks k8s/base is current with its
 * sources, then renders and validates every overlay (k8s/src/paths.ts OVERLAYS). Prints one line
 * per problem and a summary per overlay; exits 1 when anything is wrong.
 *
 * Usage: tsx k8s/src/cli.ts [overlay ...]   (default: all)
 */
import { repoContext } from './context.js';
import { OVERLAYS, type OverlayName } from './paths.js';
import { staleRenderedFiles } from './render.js';
import { formatReport, validateOverlay } from './validate.js';

async function main(argv: string[]): Promise<number> {
  const names = (argv.length ? argv : Object.keys(OVERLAYS)) as OverlayName[];
  for (const n of names) {
    if (!(n in OVERLAYS)) {
      process.stderr.write(`k8s-validate: unknown overlay "${n}" (known: ${Object.keys(OVERLAYS).join(', ')})\n`);
      return 2;
    }
  }
  let ok = true;
  const stale = staleRenderedFiles();
  if (stale.length) {
    ok = false;
    process.stdout.write(`FAILED  k8s/ is out of date with envoy/ and authz-service/: ${stale.join(', ')} (run 'make k8s-render')\n`);
  } else {
    process.stdout.write('ok  k8s/base/envoy/*.yaml, k8s/base/authz/policy.yaml and k8s/components/tracing/envoy/*.yaml match their sources\n');
  }
  const ctx = await repoContext();
  for (const n of names) {
    const report = await validateOverlay(n, OVERLAYS[n], ctx);
    ok &&= report.ok;
    process.stdout.write(`${formatReport(report).join('\n')}\n`);
  }
  return ok ? 0 : 1;
}

main(process.argv.slice(2)).then(
  (code) => (process.exitCode = code),
  (err: unknown) => {
    process.stderr.write(`k8s-validate: ${(err as Error).message}\n`);
    process.exitCode = 1;
  },
);
