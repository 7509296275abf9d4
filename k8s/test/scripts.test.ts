/**
 * The cluster scripts cannot run here (no Docker, no cluster), so these tests check what can be
 * checked: they parse, they refuse bad arguments, and `up.sh` names every missing tool with
 * where to get it before touching anything. `down.sh` with no cluster reachable does nothing.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { K8S_DIR } from '../src/paths.js';
import { k8sToolPath } from '../src/tools.js';

const run = promisify(execFile);
type Failure = { code: number; stdout: string; stderr: string };
const scripts = ['up.sh', 'down.sh', 'build-images.sh', 'tools.sh'].map((s) => resolve(K8S_DIR, 'scripts', s)).concat(resolve(K8S_DIR, 'create-secrets.sh'));

t.test('every script parses (bash -n)', async (t) => {
  for (const s of scripts) {
    await run('bash', ['-n', s]);
    t.pass(s);
  }
});

/** A PATH with only `dirname` (which the scripts need to find the repository): no docker, kind, minikube, openssl, npm. */
function barePath(): string {
  const bin = mkdtempSync(join(tmpdir(), 'jwt-mesh-k8s-bin-'));
  symlinkSync(['/usr/bin/dirname', '/bin/dirname'].find((p) => existsSync(p)) ?? 'dirname', join(bin, 'dirname'));
  t.teardown(() => rmSync(bin, { recursive: true, force: true }));
  return bin;
}

t.test('up.sh names every missing tool and where to get it, and does nothing else', async (t) => {
  const env = { PATH: barePath(), HOME: process.env.HOME ?? '/tmp', KUBECTL: k8sToolPath('kubectl') };
  for (const platform of ['kind', 'minikube']) {
    const err = (await run('/bin/bash', [resolve(K8S_DIR, 'scripts/up.sh'), platform], { env }).catch((e: unknown) => e)) as Failure;
    t.equal(err.code, 1, platform);
    t.match(err.stderr, `missing tools for ${platform}`);
    t.match(err.stderr, /docker: https:\/\/docs.docker.com/);
    t.match(err.stderr, platform === 'kind' ? /kind: https:\/\/kind.sigs.k8s.io/ : /minikube: https:\/\/minikube.sigs.k8s.io/);
    t.match(err.stderr, /openssl: /);
    t.match(err.stderr, /npm: Node.js 20/);
    t.notMatch(err.stderr, /kubectl:/, 'KUBECTL given: not missing');
    t.notMatch(err.stderr, /creating|building|apply/, 'stopped before doing anything');
  }
  const usage = (await run('/bin/bash', [resolve(K8S_DIR, 'scripts/up.sh'), 'k3d']).catch((e: unknown) => e)) as Failure;
  t.equal(usage.code, 2);
  t.match(usage.stderr, /usage: .*up.sh kind\|minikube/);
});

t.test('down.sh with no cluster reachable deletes nothing and says so', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'jwt-mesh-k8s-down-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const { stderr } = await run(resolve(K8S_DIR, 'scripts/down.sh'), [], {
    env: { ...process.env, KUBECTL: k8sToolPath('kubectl'), KUBECONFIG: join(dir, 'none'), K8S_KEEP_CLUSTER: '1' },
  });
  t.match(stderr, /no namespace jwt-mesh in kind-jwt-mesh jwt-mesh/);
});

t.test('create-secrets.sh rejects unknown options', async (t) => {
  const err = (await run(resolve(K8S_DIR, 'create-secrets.sh'), ['--bogus']).catch((e: unknown) => e)) as Failure;
  t.equal(err.code, 2);
  t.match(err.stderr, /unknown option --bogus/);
});
