/** The steps of ext_authz: the policy file with the extra rules, and the authz-service replicas (mTLS). */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import YAML from 'yaml';
import { parsePolicy, type PolicyRule } from '@jwt-mesh/core';
import { k8sServiceHost } from '@jwt-mesh/envoy';
import { REPO_ROOT } from '@jwt-mesh/testkit';
import { grpcHealth, waitUntil } from '../probe.js';
import type { Launcher, PartDef } from './launcher.js';
import { childEnv, nodePart, type Wiring } from './node.js';

/**
 * Step: authz-service/policy.yaml with `policyRules` appended, written to `<runDir>/policy.yaml`.
 * @returns its path, or undefined without extra rules (the replicas read their own policy.yaml).
 * @throws Error naming the bad field of a rule.
 */
export function writePolicy(run: Launcher): string | undefined {
  const { policyRules } = run.options;
  if (!policyRules || policyRules.length === 0) return undefined;
  const base = YAML.parse(readFileSync(join(REPO_ROOT, 'authz-service', 'policy.yaml'), 'utf8')) as { rules: PolicyRule[] };
  const doc = { ...base, rules: [...base.rules, ...policyRules] };
  parsePolicy(doc); // throws naming the bad field
  const policyFile = join(run.paths.runDir, 'policy.yaml');
  writeFileSync(policyFile, YAML.stringify(doc));
  return policyFile;
}

/** Step: the authz-service replicas (ext_authz over mTLS), started in parallel, each ready when `grpc.health.v1` answers SERVING. */
export async function startAuthz(w: Wiring): Promise<void> {
  const grpcTls = {
    ca: readFileSync(w.certs.ca.cert),
    cert: readFileSync((w.certs.workloads['edge'] as { cert: string }).cert),
    key: readFileSync((w.certs.workloads['edge'] as { key: string }).key),
    serverName: k8sServiceHost('authz'),
  };
  if (!w.selection.authz) return;
  await w.launchAll(w.plan.authz.map((_port, i) => authzReplica(w, i, grpcTls)));
  w.say('authz', `${w.replicas} replica(s) SERVING over mTLS: ${w.plan.authz.map((port) => `127.0.0.1:${port}`).join(', ')}`);
}

/** Replica `i` (0-based) of the authz-service, `authz-<i + 1>`; its health is asked over mTLS with `grpcTls` (the edge's certificate). */
function authzReplica(w: Wiring, i: number, grpcTls: Parameters<typeof grpcHealth>[1]): PartDef {
  const { plan, certs } = w;
  const authzDir = join(REPO_ROOT, 'authz-service');
  const authzCert = certs.workloads['authz'] as { cert: string; key: string };
  const name = `authz-${i + 1}`;
  const address = () => `127.0.0.1:${plan.authz[i]}`;
  return nodePart(w, {
    name,
    entry: join(authzDir, 'src', 'main.ts'),
    cwd: authzDir,
    env: () =>
      childEnv(
        w,
        {
          AUTHZ_PORT: String(plan.authz[i]),
          AUTHZ_HOST: '127.0.0.1',
          AUTHZ_TLS_CERT: authzCert.cert,
          AUTHZ_TLS_KEY: authzCert.key,
          AUTHZ_TLS_CA: certs.ca.cert,
          JWKS_CERT_FILE: authzCert.cert,
          JWKS_KEY_FILE: authzCert.key,
          AUTHZ_METRICS_PORT: String(plan.authzMetrics[i]),
          AUTHZ_METRICS_HOST: '127.0.0.1',
          ...(w.policyFile ? { AUTHZ_POLICY_FILE: w.policyFile } : {}),
        },
        w.options.env?.authz,
      ),
    ready: (proc) =>
      waitUntil(
        `${name} gRPC health`,
        async () => {
          const s = await grpcHealth(address(), grpcTls);
          return s === 'SERVING' ? true : s;
        },
        { timeoutMs: w.readyTimeoutMs, alive: proc.running, intervalMs: 300 },
      ),
    ports: () => [plan.authz[i], plan.authzMetrics[i]],
    repick: async () => {
      plan.authz[i] = await w.reserve(name);
      plan.authzMetrics[i] = await w.reserve(`${name}.metrics`);
    },
  });
}
