/**
 * `npm run generate`: writes TypeScript types for `jwtmesh.profile.v1` into `src/generated/`
 * with `proto-loader-gen-types`, using the loader options of the runtime (`src/proto.ts`).
 * The output is gitignored.
 */
import { spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { generatorArgs } from '../src/proto.js';

const here = dirname(fileURLToPath(import.meta.url));
const outDir = join(here, '..', 'src', 'generated');
const require = createRequire(import.meta.url);
const cli = join(dirname(require.resolve('@grpc/proto-loader/package.json')), 'build', 'bin', 'proto-loader-gen-types.js');

rmSync(outDir, { recursive: true, force: true });
const result = spawnSync(process.execPath, [cli, ...generatorArgs(outDir)], { stdio: 'inherit' });
if (result.status !== 0) {
  console.error(`proto-loader-gen-types failed (exit ${result.status ?? result.signal})`);
  process.exit(1);
}
console.log(`generated jwtmesh.profile.v1 types in ${outDir}`);
