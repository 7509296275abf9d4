/**
 * k8s/create-secrets.sh, run for real in --dry-run mode (kubectl renders the Secrets client-side,
 * no cluster involved) over certificates from envoy/src/certs.ts: it makes exactly the Secrets it
 * lists, in the layout the pods mount, with the right SPIFFE identities, valid against the
 * schemas, and together with the manifests leaves no reference unresolved.
 */
import { execFile } from 'node:child_process';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { REDIS_ACL_USERS, redisAclFile, redisAclRules } from '@jwt-mesh/core/redis';
import { createDevCerts } from '@jwt-mesh/envoy/certs';
import { scriptSecrets } from '../src/context.js';
import { checkReferences } from '../src/invariants.js';
import { parseManifests, type K8sObject } from '../src/manifests.js';
import { K8S_DIR } from '../src/paths.js';
import { validateSchemas } from '../src/schema.js';
import { k8sToolPath } from '../src/tools.js';
import { overlayObjects } from './helpers.js';

const run = promisify(execFile);
const script = resolve(K8S_DIR, 'create-secrets.sh');
const certsDir = mkdtempSync(join(tmpdir(), 'jwt-mesh-k8s-secrets-'));
await createDevCerts({ dir: certsDir });
t.teardown(() => rmSync(certsDir, { recursive: true, force: true }));
// No kubeconfig at all: nothing here may reach a cluster.
const env = { ...process.env, KUBECTL: k8sToolPath('kubectl'), KUBECONFIG: join(certsDir, 'no-kubeconfig') };

async function dryRun(...args: string[]): Promise<K8sObject[]> {
  const { stdout } = await run(script, ['--dry-run', '--certs-dir', certsDir, ...args], { env });
  return parseManifests(stdout);
}

const decode = (s: K8sObject, key: string) => Buffer.from((s['data'] as Record<string, string>)[key] as string, 'base64').toString('utf8');

t.test('makes exactly the Secrets it lists, valid, in namespace jwt-mesh', async (t) => {
  const secrets = await dryRun();
  t.same(secrets.map((s) => s.metadata.name).sort(), scriptSecrets().sort());
  t.ok(secrets.every((s) => s.kind === 'Secret' && s.metadata.namespace === 'jwt-mesh'));
  t.same(await validateSchemas(secrets), []);
});

t.test('mesh-<workload>: kubernetes.io/tls with tls.crt, tls.key, ca.crt; the SPIFFE ID of the workload; key matches', async (t) => {
  const secrets = await dryRun();
  const ca = readFileSync(join(certsDir, 'ca.crt'), 'utf8');
  for (const w of ['edge', 'authz', 'auth', 'orders', 'inventory', 'profile']) {
    const s = secrets.find((x) => x.metadata.name === `mesh-${w}`) as K8sObject;
    t.equal(s['type'], 'kubernetes.io/tls', w);
    t.same(Object.keys(s['data'] as object).sort(), ['ca.crt', 'tls.crt', 'tls.key']);
    const cert = new X509Certificate(decode(s, 'tls.crt'));
    t.match(cert.subjectAltName, `URI:spiffe://jwt-mesh.local/ns/jwt-mesh/sa/${w}`, `${w} carries its SPIFFE ID`);
    t.ok(cert.checkPrivateKey(createPrivateKey(decode(s, 'tls.key'))), `${w}: tls.key belongs to tls.crt`);
    t.equal(decode(s, 'ca.crt'), ca);
    t.ok(cert.verify(new X509Certificate(ca).publicKey), `${w}: signed by the mesh CA`);
  }
  const https = secrets.find((x) => x.metadata.name === 'mesh-edge-https') as K8sObject;
  t.match(new X509Certificate(decode(https, 'tls.crt')).subjectAltName, 'DNS:localhost');
});

t.test('credentials: random passwords, URLs pointing at the in-cluster Services', async (t) => {
  const [a, b] = [await dryRun('--credentials-only'), await dryRun('--credentials-only')];
  t.same(a.map((s) => s.metadata.name).sort(), ['postgres-credentials', 'redis-acl', 'redis-issuer-credentials', 'redis-verifier-credentials']);
  const pg = a.find((s) => s.metadata.name === 'postgres-credentials') as K8sObject;
  const password = decode(pg, 'password');
  t.match(password, /^[0-9a-f]{48}$/);
  t.equal(decode(pg, 'database-url'), `postgresql://jwt_mesh:${password}@postgres.jwt-mesh.svc.cluster.local:5432/jwt_mesh`);
  t.not(decode(b.find((s) => s.metadata.name === 'postgres-credentials') as K8sObject, 'password'), password, 'a new password per run');
});

t.test('Redis: one Secret per ACL user, and the server\'s ACL file with the core\'s least-privilege rules', async (t) => {
  const secrets = await dryRun('--credentials-only');
  const get = (name: string) => secrets.find((s) => s.metadata.name === name) as K8sObject;
  const issuer = { username: decode(get('redis-issuer-credentials'), 'username'), password: decode(get('redis-issuer-credentials'), 'password') };
  const verifier = { username: decode(get('redis-verifier-credentials'), 'username'), password: decode(get('redis-verifier-credentials'), 'password') };
  t.same([issuer.username, verifier.username], [REDIS_ACL_USERS.issuer, REDIS_ACL_USERS.verifier]);
  t.match(issuer.password, /^[0-9a-f]{48}$/);
  t.match(verifier.password, /^[0-9a-f]{48}$/);
  t.not(issuer.password, verifier.password);
  const rules = redisAclRules('jwtmesh:');
  t.equal(
    decode(get('redis-acl'), 'users.acl'),
    redisAclFile([
      { name: issuer.username, password: issuer.password, rules: rules.issuer },
      { name: verifier.username, password: verifier.password, rules: rules.verifier },
    ]).trimEnd(),
    'exactly the ACL file the core writes: default user off, the same rules, SHA-256 passwords',
  );
  t.notMatch(decode(get('redis-acl'), 'users.acl'), issuer.password, 'no password in the server\'s Secret');
});

t.test('the manifests plus these Secrets leave no Secret or ConfigMap reference unresolved', async (t) => {
  const secrets = await dryRun();
  for (const overlay of ['kind', 'minikube'] as const) {
    t.same(checkReferences([...(await overlayObjects(overlay)), ...secrets], { externalSecrets: [] }), [], overlay);
  }
  const cm = await dryRun('--credentials-only');
  t.same(checkReferences([...(await overlayObjects('kind-cert-manager')), ...cm], { externalSecrets: [] }), [], 'cert-manager + --credentials-only');
});

t.test('missing certificates: exit 1 saying to run make certs', async (t) => {
  const err = (await run(script, ['--dry-run', '--certs-dir', join(certsDir, 'nope')], { env }).catch((e: unknown) => e)) as {
    code: number;
    stderr: string;
  };
  t.equal(err.code, 1);
  t.match(err.stderr, /missing in .*nope: ca\.crt .*Run 'make certs' first/);
});
