import { X509Certificate, createPrivateKey } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, statSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { createDevCerts, writeK8sCertLayout } from '../src/certs.js';
import { MESH_WORKLOADS, spiffeId } from '../src/topology.js';
import { tempDir } from './helpers.js';

const cert = (path: string) => new X509Certificate(readFileSync(path));

t.test('a mesh CA and one SPIFFE X.509-SVID per workload, signed by it', async (t) => {
  const dir = tempDir(t, 'jwt-mesh-certs-');
  const certs = await createDevCerts({ dir });
  const ca = cert(certs.ca.cert);
  t.equal(ca.ca, true, 'the CA is a CA');
  t.ok(ca.verify(ca.publicKey), 'self-signed');
  t.same(Object.keys(certs.workloads).sort(), [...MESH_WORKLOADS].sort());
  for (const w of MESH_WORKLOADS) {
    const kp = certs.workloads[w] as { cert: string; key: string };
    const leaf = cert(kp.cert);
    t.equal(leaf.ca, false, `${w} is not a CA`);
    t.ok(leaf.checkIssued(ca) && leaf.verify(ca.publicKey), `${w} is signed by the mesh CA`);
    const sans = (leaf.subjectAltName ?? '').split(', ');
    t.same(sans.filter((s) => s.startsWith('URI:')), [`URI:${spiffeId(w)}`], `${w}: exactly one URI SAN, its SPIFFE ID`);
    for (const dns of ['localhost', w, `${w}.jwt-mesh`, `${w}.jwt-mesh.svc`, `${w}.jwt-mesh.svc.cluster.local`]) {
      t.ok(sans.includes(`DNS:${dns}`), `${w}: DNS SAN ${dns}`);
    }
    t.ok(sans.includes('IP Address:127.0.0.1'), `${w}: IP SAN 127.0.0.1`);
    t.ok(leaf.checkHost('localhost') && leaf.checkIP('127.0.0.1'));
    t.same(leaf.keyUsage?.sort(), ['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2'], `${w}: serverAuth and clientAuth`);
    t.ok(leaf.checkPrivateKey(createPrivateKey(readFileSync(kp.key))), `${w}: key matches`);
    t.equal(statSync(kp.key).mode & 0o777, 0o600, `${w}: key is 0600`);
  }
  const https = cert(certs.edgeHttps.cert);
  t.ok(https.verify(ca.publicKey), 'edge-https is signed by the dev CA');
  t.notMatch(https.subjectAltName ?? '', /URI:/, 'the public HTTPS certificate carries no SPIFFE ID');
  t.ok(https.checkHost('localhost') && https.checkHost('edge.jwt-mesh.svc.cluster.local'));
});

t.test('the untrusted CA is unrelated, and its certificate claims the edge SPIFFE ID', async (t) => {
  const dir = tempDir(t, 'jwt-mesh-certs-');
  const certs = await createDevCerts({ dir });
  const mesh = cert(certs.ca.cert);
  const untrustedCa = cert(certs.untrusted.ca.cert);
  const leaf = cert(certs.untrusted.leaf.cert);
  t.ok(leaf.verify(untrustedCa.publicKey), 'signed by the untrusted CA');
  t.notOk(leaf.verify(mesh.publicKey), 'not signed by the mesh CA');
  t.notOk(leaf.checkIssued(mesh));
  t.match(leaf.subjectAltName ?? '', `URI:${spiffeId('edge')}`);
  t.not(untrustedCa.fingerprint256, mesh.fingerprint256);
});

t.test('idempotent: a second call writes nothing; a missing leaf is reissued by the same CA; --force redoes all', async (t) => {
  const dir = tempDir(t, 'jwt-mesh-certs-');
  const first = await createDevCerts({ dir });
  t.equal(first.created.length, 22, 'CA, 7 workloads, edge-https, untrusted CA and leaf: 11 pairs');
  const caBefore = readFileSync(first.ca.cert, 'utf8');
  const ordersBefore = readFileSync(join(dir, 'orders.crt'), 'utf8');
  const second = await createDevCerts({ dir });
  t.same(second.created, [], 'nothing rewritten');
  t.equal(readFileSync(join(dir, 'orders.crt'), 'utf8'), ordersBefore);

  unlinkSync(join(dir, 'profile.key'));
  const third = await createDevCerts({ dir });
  t.same(third.created.sort(), ['profile.crt', 'profile.key']);
  t.equal(readFileSync(first.ca.cert, 'utf8'), caBefore, 'the CA is kept');
  t.ok(cert(join(dir, 'profile.crt')).verify(cert(first.ca.cert).publicKey));

  const forced = await createDevCerts({ dir, force: true });
  t.equal(forced.created.length, 22);
  t.not(readFileSync(first.ca.cert, 'utf8'), caBefore, 'a new CA');
  t.ok(cert(join(dir, 'orders.crt')).verify(cert(first.ca.cert).publicKey), 'leaves follow the new CA');
  t.same(readdirSync(dir).filter((n) => n.startsWith('.tmp-')), [], 'no temp files left');
});

t.test('the Kubernetes layout: one folder per Secret with tls.crt, tls.key, ca.crt', async (t) => {
  const certs = await createDevCerts({ dir: tempDir(t, 'jwt-mesh-certs-') });
  const out = writeK8sCertLayout(certs, join(tempDir(t), 'secrets'));
  for (const w of [...MESH_WORKLOADS, 'edge-https']) {
    for (const f of ['tls.crt', 'tls.key', 'ca.crt']) t.ok(existsSync(join(out, w, f)), `${w}/${f}`);
  }
  t.equal(readFileSync(join(out, 'orders', 'tls.crt'), 'utf8'), readFileSync(join(certs.dir, 'orders.crt'), 'utf8'));
  t.equal(statSync(join(out, 'orders', 'tls.key')).mode & 0o777, 0o600);
});

t.test('a missing openssl is a clear error', async (t) => {
  await t.rejects(createDevCerts({ dir: tempDir(t, 'jwt-mesh-certs-'), openssl: '/nonexistent/openssl' }), /"\/nonexistent\/openssl" not found/);
});
