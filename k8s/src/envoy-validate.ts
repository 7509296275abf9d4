/**
 * Runs the pinned Envoy in `--mode validate` (full config validation, no listeners bound, no
 * upstream contacted) over every Envoy bootstrap the manifests mount from a ConfigMap: exactly
 * the text the pods would load. The certificate paths (/etc/jwt-mesh/certs/<workload>/...) are
 * rewritten to a temporary directory with real certificates from envoy/src/certs.ts in the same
 * layout, because Envoy reads every certificate while validating.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createDevCerts, writeK8sCertLayout } from '@jwt-mesh/envoy/certs';
import { envoyConfigs } from './invariants.js';
import type { K8sObject } from './manifests.js';
import { envoyPath, runTool } from './tools.js';

/** Where the k8s Envoy configs expect the mounted certificate Secrets. */
export const K8S_CERT_DIR = '/etc/jwt-mesh/certs';

/** The verdict on one ConfigMap. */
export interface EnvoyValidation {
  configMap: string;
  ok: boolean;
  /** Envoy's last lines when it rejected the config. */
  output: string;
}

/**
 * Validates every mounted Envoy config (each ConfigMap once).
 * @param certRoot a directory laid out as {@link K8S_CERT_DIR} is in the pods; default: fresh dev
 *   certificates in a temporary directory, removed afterwards.
 * @throws Error when no Envoy binary or no openssl is available.
 */
export async function validateEnvoyConfigs(objects: readonly K8sObject[], certRoot?: string): Promise<EnvoyValidation[]> {
  const configs = new Map<string, string>();
  for (const m of envoyConfigs(objects)) {
    if (m.text !== undefined && !configs.has(m.configMap)) configs.set(m.configMap, m.text);
  }
  const work = mkdtempSync(join(tmpdir(), 'jwt-mesh-k8s-envoy-'));
  try {
    let certs = certRoot;
    if (!certs) {
      const dev = await createDevCerts({ dir: join(work, 'flat') });
      certs = writeK8sCertLayout(dev, join(work, 'certs'));
    }
    const envoy = envoyPath();
    return await Promise.all(
      [...configs].map(async ([configMap, text]) => {
        const file = join(work, `${configMap}.yaml`);
        writeFileSync(file, text.replaceAll(K8S_CERT_DIR, certs));
        try {
          await runTool(envoy, ['--mode', 'validate', '--config-path', file, '--log-level', 'warn']);
          return { configMap, ok: true, output: '' };
        } catch (err) {
          const lines = (err as Error).message.split('\n').filter(Boolean);
          return { configMap, ok: false, output: lines.slice(-5).join('\n') };
        }
      }),
    );
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
