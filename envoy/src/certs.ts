/**
 * Development PKI for the jwt-mesh, made with the `openssl` command line (OpenSSL 1.1.1 or 3.x):
 *
 * - `ca.crt` / `ca.key`: the mesh CA (ECDSA P-256, CA:TRUE, pathlen 0), trust anchor of every proxy;
 * - `<workload>.crt` / `<workload>.key` for edge, authz, auth, orders, inventory, profile and the
 *   test-only `client`: X.509-SVIDs with exactly one URI SAN
 *   `spiffe://jwt-mesh.local/ns/jwt-mesh/sa/<workload>`
 *   (https://github.com/spiffe/spiffe/blob/main/standards/X509-SVID.md), DNS SANs `localhost`,
 *   `<w>`, `<w>.jwt-mesh`, `<w>.jwt-mesh.svc`, `<w>.jwt-mesh.svc.cluster.local`, IP SANs
 *   127.0.0.1 and ::1, and both serverAuth and clientAuth;
 * - `edge-https.crt` / `.key`: the edge's public HTTPS server certificate (no SPIFFE ID), for
 *   localhost and the edge's Service names, signed by the same dev CA;
 * - `untrusted-ca.crt` / `.key` and `untrusted.crt` / `.key`: a second, unrelated CA and a
 *   certificate from it that claims the *edge's* SPIFFE ID, for the wrong-certificate tests.
 *
 * Private keys are generated on this machine (mode 0600) and never leave it; `certs/` is
 * gitignored. Idempotent: files already present are kept; a missing CA regenerates everything;
 * `force` regenerates everything.
 *
 * CLI: `tsx envoy/src/certs.ts [--out certs] [--force] [--k8s-layout <dir>]`.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import { MESH_WORKLOADS, NAMESPACE, TRUST_DOMAIN, k8sServiceNames, spiffeId } from './topology.js';

const run = promisify(execFile);

/** Options of {@link createDevCerts}. */
export interface DevCertOptions {
  /** Output directory (created if missing). */
  dir: string;
  /** Regenerate every file even if present. Default false. */
  force?: boolean;
  /** Validity of every certificate, in days. Default 365 (CA 3650). */
  days?: number;
  /** Workloads that get a mesh certificate. Default: {@link MESH_WORKLOADS}. */
  workloads?: readonly string[];
  trustDomain?: string;
  namespace?: string;
  /** The openssl binary. Default `$OPENSSL` or `openssl` on PATH. */
  openssl?: string;
}

/** A certificate and its private key (PEM file paths). */
export interface KeyPair {
  cert: string;
  key: string;
}

/** What {@link createDevCerts} produced (absolute paths). */
export interface DevCerts {
  dir: string;
  ca: KeyPair;
  /** Mesh certificate of each workload, by workload name. */
  workloads: Record<string, KeyPair>;
  /** The edge's HTTPS server certificate (dev CA, DNS/IP SANs only). */
  edgeHttps: KeyPair;
  /** A second CA nobody trusts, and a certificate from it claiming the edge's SPIFFE ID. */
  untrusted: { ca: KeyPair; leaf: KeyPair };
  /** Files (base names) written by this call; empty when everything was already present. */
  created: string[];
}

/**
 * Creates (or completes) the dev PKI in `opts.dir`. Safe to call from parallel tests with
 * different directories; every file is written to a temporary name and renamed into place.
 * @returns the paths of every file, and which ones this call created.
 * @throws Error when openssl is missing or fails (the message carries openssl's stderr).
 */
export async function createDevCerts(opts: DevCertOptions): Promise<DevCerts> {
  const dir = resolve(opts.dir);
  const workloads = opts.workloads ?? MESH_WORKLOADS;
  const trustDomain = opts.trustDomain ?? TRUST_DOMAIN;
  const namespace = opts.namespace ?? NAMESPACE;
  const days = opts.days ?? 365;
  const openssl = opts.openssl ?? process.env.OPENSSL ?? 'openssl';
  mkdirSync(dir, { recursive: true });
  const p = (base: string): KeyPair => ({ cert: join(dir, `${base}.crt`), key: join(dir, `${base}.key`) });
  const result: DevCerts = {
    dir,
    ca: p('ca'),
    workloads: Object.fromEntries(workloads.map((w) => [w, p(w)])),
    edgeHttps: p('edge-https'),
    untrusted: { ca: p('untrusted-ca'), leaf: p('untrusted') },
    created: [],
  };
  const present = (kp: KeyPair) => existsSync(kp.cert) && existsSync(kp.key);
  const force = opts.force === true;
  const work = mkdtempSync(join(dir, '.tmp-'));
  try {
    const ssl = async (args: string[]) => {
      try {
        await run(openssl, args, { cwd: work });
      } catch (err) {
        const e = err as NodeJS.ErrnoException & { stderr?: string };
        if (e.code === 'ENOENT') throw new Error(`certs: "${openssl}" not found; install openssl or set OPENSSL`);
        throw new Error(`certs: openssl ${args[0]} failed: ${(e.stderr ?? e.message).trim()}`);
      }
    };
    const place = (tmpBase: string, kp: KeyPair) => {
      chmodSync(join(work, `${tmpBase}.key`), 0o600);
      renameSync(join(work, `${tmpBase}.key`), kp.key);
      renameSync(join(work, `${tmpBase}.crt`), kp.cert);
      result.created.push(kp.cert.slice(dir.length + 1), kp.key.slice(dir.length + 1));
    };
    const genKey = (base: string) =>
      ssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', `${base}.key`]);
    const makeCa = async (base: string, cn: string) => {
      await genKey(base);
      writeFileSync(
        join(work, `${base}.cnf`),
        [
          '[req]',
          'distinguished_name = dn',
          'prompt = no',
          'x509_extensions = v3_ca',
          '[dn]',
          'O = jwt-mesh development',
          `CN = ${cn}`,
          '[v3_ca]',
          'basicConstraints = critical, CA:TRUE, pathlen:0',
          'keyUsage = critical, keyCertSign, cRLSign',
          'subjectKeyIdentifier = hash',
          '',
        ].join('\n'),
      );
      await ssl(['req', '-x509', '-new', '-key', `${base}.key`, '-sha256', '-days', String(days * 10), '-config', `${base}.cnf`, '-out', `${base}.crt`]);
    };
    const makeLeaf = async (base: string, cn: string, sans: string[], caBase: { cert: string; key: string }) => {
      await genKey(base);
      await ssl(['req', '-new', '-key', `${base}.key`, '-subj', `/O=jwt-mesh development/CN=${cn}`, '-out', `${base}.csr`]);
      writeFileSync(
        join(work, `${base}.ext`),
        [
          'basicConstraints = critical, CA:FALSE',
          'keyUsage = critical, digitalSignature',
          'extendedKeyUsage = serverAuth, clientAuth',
          'subjectKeyIdentifier = hash',
          'authorityKeyIdentifier = keyid',
          `subjectAltName = ${sans.join(', ')}`,
          '',
        ].join('\n'),
      );
      const serial = randomBytes(16);
      serial[0] = (serial[0] ?? 0) & 0x7f; // positive
      await ssl([
        'x509', '-req', '-in', `${base}.csr`, '-CA', caBase.cert, '-CAkey', caBase.key,
        '-set_serial', `0x${serial.toString('hex')}`, '-sha256', '-days', String(days),
        '-extfile', `${base}.ext`, '-out', `${base}.crt`,
      ]);
    };
    const dnsSans = (w: string) => ['DNS:localhost', ...k8sServiceNames(w, namespace).map((n) => `DNS:${n}`)];
    const ipSans = ['IP:127.0.0.1', 'IP:::1'];

    // The mesh CA. Without it every leaf is (re)issued.
    const newCa = force || !present(result.ca);
    if (newCa) {
      await makeCa('ca', 'jwt-mesh development mesh CA');
      place('ca', result.ca);
    }
    for (const w of workloads) {
      const kp = result.workloads[w] as KeyPair;
      if (!newCa && present(kp)) continue;
      await makeLeaf(w, w, [`URI:${spiffeId(w, namespace, trustDomain)}`, ...dnsSans(w), ...ipSans], result.ca);
      place(w, kp);
    }
    if (newCa || !present(result.edgeHttps)) {
      await makeLeaf('edge-https', 'localhost', [...dnsSans('edge'), ...ipSans], result.ca);
      place('edge-https', result.edgeHttps);
    }
    // The untrusted CA is independent of the mesh CA.
    const newUntrusted = force || !present(result.untrusted.ca);
    if (newUntrusted) {
      await makeCa('untrusted-ca', 'jwt-mesh UNTRUSTED test CA');
      place('untrusted-ca', result.untrusted.ca);
    }
    if (newUntrusted || !present(result.untrusted.leaf)) {
      await makeLeaf('untrusted', 'edge', [`URI:${spiffeId('edge', namespace, trustDomain)}`, ...dnsSans('edge'), ...ipSans], result.untrusted.ca);
      place('untrusted', result.untrusted.leaf);
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  return result;
}

/**
 * Copies flat dev certificates into the Kubernetes Secret layout the `k8s` Envoy configs read:
 * `<outDir>/<workload>/{tls.crt,tls.key,ca.crt}` for every mesh workload and
 * `<outDir>/edge-https/{tls.crt,tls.key,ca.crt}`. Each folder is what one Secret holds
 * (`kubectl create secret generic mesh-<workload> --from-file=<outDir>/<workload>/`).
 * @returns `outDir` (absolute).
 */
export function writeK8sCertLayout(certs: DevCerts, outDir: string): string {
  const out = resolve(outDir);
  const pairs: Array<[string, KeyPair]> = [...Object.entries(certs.workloads), ['edge-https', certs.edgeHttps]];
  for (const [name, kp] of pairs) {
    const d = join(out, name);
    mkdirSync(d, { recursive: true });
    copyFileSync(kp.cert, join(d, 'tls.crt'));
    copyFileSync(kp.key, join(d, 'tls.key'));
    chmodSync(join(d, 'tls.key'), 0o600);
    copyFileSync(certs.ca.cert, join(d, 'ca.crt'));
  }
  return out;
}

const HELP = `Create the jwt-mesh development certificates (mesh CA, per-workload SPIFFE certificates,
the edge HTTPS certificate, and an untrusted CA for tests). Idempotent.

Usage: tsx envoy/src/certs.ts [--out <dir>] [--force] [--k8s-layout <dir>]

  --out <dir>          where to write them (default: <repo>/certs)
  --force              regenerate everything, even files that exist
  --k8s-layout <dir>   also copy them into <dir>/<workload>/{tls.crt,tls.key,ca.crt} (one folder per Secret)
  -h, --help           this text
`;

async function main(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      out: { type: 'string' },
      force: { type: 'boolean' },
      'k8s-layout': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
  const dir = resolve(values.out ?? join(repoRoot, 'certs'));
  const certs = await createDevCerts({ dir, force: values.force === true });
  process.stdout.write(
    certs.created.length === 0
      ? `certs: ${dir} already complete (use --force to regenerate)\n`
      : `certs: wrote ${certs.created.length} files to ${dir}\n`,
  );
  if (values['k8s-layout']) process.stdout.write(`certs: Kubernetes layout in ${writeK8sCertLayout(certs, values['k8s-layout'])}\n`);
  return 0;
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  main(process.argv.slice(2)).then(
    (code) => (process.exitCode = code),
    (err: unknown) => {
      process.stderr.write(`${(err as Error).message}\n`);
      process.exitCode = 1;
    },
  );
}
