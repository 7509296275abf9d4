/**
 * Test certificates made with openssl in a temporary directory (never committed): a mesh CA, a
 * server certificate for 127.0.0.1/localhost, a client certificate from the mesh CA with a
 * SPIFFE URI SAN, and a client certificate from an unrelated ("rogue") CA.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface TestCerts {
  readonly dir: string;
  readonly caCert: Buffer;
  readonly serverCert: Buffer;
  readonly serverKey: Buffer;
  readonly clientCert: Buffer;
  readonly clientKey: Buffer;
  readonly rogueCert: Buffer;
  readonly rogueKey: Buffer;
  /** File paths, for AUTHZ_TLS_* variables. */
  readonly files: { readonly ca: string; readonly serverCert: string; readonly serverKey: string; readonly clientCert: string; readonly clientKey: string };
  cleanup(): void;
}

function openssl(dir: string, args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
}

function makeCa(dir: string, name: string): void {
  openssl(dir, ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1',
    '-subj', `/CN=${name}`, '-keyout', `${name}.key`, '-out', `${name}.crt`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
}

function makeLeaf(dir: string, ca: string, name: string, san: string, eku: string): void {
  writeFileSync(join(dir, `${name}.ext`), `basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=${eku}\nsubjectAltName=${san}\n`);
  openssl(dir, ['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', `/CN=${name}`,
    '-keyout', `${name}.key`, '-out', `${name}.csr`]);
  openssl(dir, ['x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.crt`, '-CAkey', `${ca}.key`, '-CAcreateserial',
    '-days', '1', '-out', `${name}.crt`, '-extfile', `${name}.ext`]);
}

/** Generates the whole set (about 100 ms). */
export function makeTestCerts(): TestCerts {
  const dir = mkdtempSync(join(tmpdir(), 'jwt-mesh-authz-certs-'));
  makeCa(dir, 'mesh-ca');
  makeCa(dir, 'rogue-ca');
  makeLeaf(dir, 'mesh-ca', 'server', 'IP:127.0.0.1,DNS:localhost,URI:spiffe://jwt-mesh.local/ns/default/sa/authz-service', 'serverAuth');
  makeLeaf(dir, 'mesh-ca', 'client', 'URI:spiffe://jwt-mesh.local/ns/default/sa/edge-envoy', 'clientAuth');
  makeLeaf(dir, 'rogue-ca', 'rogue', 'URI:spiffe://jwt-mesh.local/ns/default/sa/edge-envoy', 'clientAuth');
  const read = (f: string): Buffer => readFileSync(join(dir, f));
  return {
    dir,
    caCert: read('mesh-ca.crt'),
    serverCert: read('server.crt'),
    serverKey: read('server.key'),
    clientCert: read('client.crt'),
    clientKey: read('client.key'),
    rogueCert: read('rogue.crt'),
    rogueKey: read('rogue.key'),
    files: {
      ca: join(dir, 'mesh-ca.crt'),
      serverCert: join(dir, 'server.crt'),
      serverKey: join(dir, 'server.key'),
      clientCert: join(dir, 'client.crt'),
      clientKey: join(dir, 'client.key'),
    },
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}
