/**
 * The images, without a Docker engine: .dockerignore (with Docker's own matching rules, npm
 * `@balena/dockerignore`) keeps every workspace manifest and every image's sources in the build
 * context and keeps keys, certificates, local state and dependencies out; docker/Dockerfile
 * (BuildKit's parser) is built the way the manifests run it: the tsx loader the entrypoint names
 * is the lockfile's, every image workspace starts with `tsx src/main.ts`, the migration Job's
 * script exists.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import dockerignoreModule from '@balena/dockerignore';
import t from 'tap';
import { parseDockerfiles, parseImagesTsv } from '../src/context.js';
import { dockerfileProblems } from '../src/invariants.js';
import { IMAGES_TSV, REPO_ROOT } from '../src/paths.js';
import { container, find, overlayObjects } from './helpers.js';

const images = parseImagesTsv(readFileSync(IMAGES_TSV, 'utf8'));
// A CommonJS module (`module.exports = factory`) whose typings declare an ES default export.
const ignore = dockerignoreModule as unknown as typeof dockerignoreModule.default;
const dockerignore = ignore().add(readFileSync(resolve(REPO_ROOT, '.dockerignore'), 'utf8'));
const inContext = (path: string) => !dockerignore.ignores(path);
const tracked = execFileSync('git', ['ls-files'], { cwd: REPO_ROOT, encoding: 'utf8' }).split('\n').filter(Boolean);

/** The workspace folders of the root package.json (`packages/*` expanded). */
function workspaces(): string[] {
  const globs = (JSON.parse(readFileSync(resolve(REPO_ROOT, 'package.json'), 'utf8')) as { workspaces: string[] }).workspaces;
  return globs.flatMap((g) =>
    g.endsWith('/*')
      ? readdirSync(resolve(REPO_ROOT, g.slice(0, -2)), { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => `${g.slice(0, -2)}/${d.name}`)
      : [g],
  ).filter((w) => existsSync(resolve(REPO_ROOT, w, 'package.json')));
}

t.test('.dockerignore: the lockfile and every workspace manifest are in the build context (npm ci checks them)', async (t) => {
  for (const f of ['package.json', 'package-lock.json', 'tsconfig.base.json']) t.ok(inContext(f), f);
  const ws = workspaces();
  t.ok(ws.length >= 8, `${ws.length} workspaces`);
  for (const w of ws) t.ok(inContext(`${w}/package.json`), `${w}/package.json`);
});

t.test('.dockerignore: every image workspace and its local dependencies are in the build context', async (t) => {
  for (const { workspace } of images.values()) {
    const files = tracked.filter((f) => f.startsWith(`${workspace}/src/`) || f.startsWith(`${workspace}/prisma/`) || f.startsWith(`${workspace}/scripts/`));
    t.ok(files.length > 0, `${workspace} has sources`);
    t.same(files.filter((f) => !inContext(f)), [], `${workspace}: nothing of its sources is ignored`);
  }
  t.same(tracked.filter((f) => f.startsWith('packages/') && f.includes('/src/') && !inContext(f)), [], 'shared packages');
});

t.test('.dockerignore: keys, certificates, local state, dependencies and generated code stay out', async (t) => {
  for (const f of [
    'certs/ca.key',
    'certs/orders.key',
    'certs/edge-https.crt',
    'auth-service/.env',
    'some/where/server.pem',
    'node_modules/fastify/package.json',
    'services/orders/node_modules/x/index.js',
    '.venv/k8s/bin/kubectl',
    '.run/k8s/kind-cluster',
    '.git/config',
    'auth-service/src/generated/client.ts',
    'k8s/base/edge.yaml',
  ]) {
    t.notOk(inContext(f), `${f} is not sent to the builder`);
  }
});

t.test('docker/Dockerfile: multi-stage, numeric non-root user, the workspace as a build argument', async (t) => {
  const parsed = await parseDockerfiles(['docker/Dockerfile']);
  const info = parsed.get('docker/Dockerfile');
  t.same(dockerfileProblems(info), []);
  if (!info?.ok) return;
  const froms = info.instructions.filter((i) => i.cmd === 'FROM').map((i) => i.value.join(' '));
  t.same(froms, ['${NODE_IMAGE} AS manifests', '${NODE_IMAGE} AS build', '${NODE_IMAGE} AS prod', '${NODE_IMAGE} AS tsx', 'prod AS assemble', '${NODE_IMAGE} AS runtime']);
  t.ok(info.instructions.some((i) => i.cmd === 'ARG' && i.value[0] === 'NODE_IMAGE=node:20-slim'), 'runtime base node:20-slim');
  const runs = info.instructions.filter((i) => i.cmd === 'RUN').map((i) => i.value.join(' '));
  t.ok(runs.some((r) => /npm ci --workspace="\$\{WORKSPACE\}" --include-workspace-root/.test(r)), 'build stage: npm ci for the workspace');
  t.ok(runs.some((r) => /npm ci --omit=dev --ignore-scripts --workspace="\$\{WORKSPACE\}" --include-workspace-root/.test(r)), 'prod stage: production dependencies only');
  const last = info.instructions.slice(info.instructions.findLastIndex((i) => i.cmd === 'FROM'));
  t.notOk(last.some((i) => i.cmd === 'RUN'), 'the runtime stage runs nothing (no npm, no shell at build time there)');
  const entrypoint = last.find((i) => i.cmd === 'ENTRYPOINT')?.value;
  t.same(entrypoint, ['node', '--import', '/opt/tsx/node_modules/tsx/dist/loader.mjs']);
  t.same(last.find((i) => i.cmd === 'CMD')?.value, ['src/main.ts']);
});

t.test('what the image runs exists: tsx loader of the locked version, src/main.ts, the migrate script', async (t) => {
  const lock = JSON.parse(readFileSync(resolve(REPO_ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, { version?: string }> };
  const tsx = JSON.parse(readFileSync(resolve(REPO_ROOT, 'node_modules/tsx/package.json'), 'utf8')) as { version: string; exports: Record<string, unknown> };
  t.equal(tsx.version, lock.packages['node_modules/tsx']?.version, 'installed tsx is the locked one');
  t.ok(existsSync(resolve(REPO_ROOT, 'node_modules/tsx/dist/loader.mjs')), 'tsx/dist/loader.mjs (the entrypoint --import) exists in that version');
  for (const { workspace } of images.values()) {
    const pkg = JSON.parse(readFileSync(resolve(REPO_ROOT, workspace, 'package.json'), 'utf8')) as { scripts?: Record<string, string> };
    t.equal(pkg.scripts?.['start'], 'tsx src/main.ts', `${workspace}: npm start runs what the image's CMD runs`);
    t.ok(existsSync(resolve(REPO_ROOT, workspace, 'src/main.ts')), `${workspace}/src/main.ts`);
  }
  const job = container(find(await overlayObjects(), 'Job', 'auth-migrate'), 'migrate');
  const script = job.args?.find((a) => a.endsWith('.ts'));
  t.ok(script && existsSync(join(REPO_ROOT, 'auth-service', script)), `auth-service/${script}`);
  const migrate = (JSON.parse(readFileSync(resolve(REPO_ROOT, 'auth-service/package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts['migrate'];
  for (const arg of job.args ?? []) t.ok(migrate?.includes(arg), `the Job passes ${arg} as npm run migrate does`);
});
