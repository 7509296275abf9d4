/**
 * The mesh identities on the wire: where each workload's certificate, key and the mesh CA live for
 * the target ({@link certFilesFor}), and the TLS transport sockets built from them: upstream mTLS
 * that accepts one peer SPIFFE ID, downstream mTLS that requires one of the allowed callers'. TLS 1.3
 * only. https://www.envoyproxy.io/docs/envoy/latest/api-v3/extensions/transport_sockets/tls/v3/tls.proto
 */
import { posix } from 'node:path';
import { k8sServiceHost, spiffeId, type TargetPlan, type Topology } from '../topology.js';
import { T, type Obj } from './v3.js';

/** Files of one workload's mesh identity: its certificate chain, its private key, the mesh CA. */
export interface CertFiles {
  cert: string;
  key: string;
  ca: string;
}

/**
 * Where a workload's mesh certificate lives for the plan's target.
 * `local`: `<certDir>/<workload>.crt|.key` and `<certDir>/ca.crt`;
 * `k8s`: `<certDir>/<workload>/tls.crt|tls.key|ca.crt`.
 * `edge-https` (the public HTTPS listener's pair) follows the same rule.
 */
export function certFilesFor(plan: Pick<TargetPlan, 'target' | 'certDir'>, workload: string): CertFiles {
  const d = plan.certDir;
  if (plan.target === 'local') {
    return { cert: posix.join(d, `${workload}.crt`), key: posix.join(d, `${workload}.key`), ca: posix.join(d, 'ca.crt') };
  }
  return {
    cert: posix.join(d, workload, 'tls.crt'),
    key: posix.join(d, workload, 'tls.key'),
    ca: posix.join(d, workload, 'ca.crt'),
  };
}

/**
 * Mesh TLS: 1.3 only. Both bounds are explicit because Envoy's default maximum for upstream
 * (client) connections is TLS 1.2, which would leave no common version.
 */
const MESH_TLS_PARAMS = { tls_minimum_protocol_version: 'TLSv1_3', tls_maximum_protocol_version: 'TLSv1_3' } as const;

/** Upstream mTLS: present `own`'s certificate, trust only the mesh CA, accept only `peer`'s SPIFFE ID. */
export function upstreamTls(topology: Topology, plan: TargetPlan, own: string, peer: string, alpn?: string[]): Obj {
  const files = certFilesFor(plan, own);
  return {
    name: 'envoy.transport_sockets.tls',
    typed_config: {
      '@type': T.upstreamTls,
      sni: k8sServiceHost(peer, topology.namespace),
      common_tls_context: {
        tls_params: MESH_TLS_PARAMS,
        tls_certificates: [{ certificate_chain: { filename: files.cert }, private_key: { filename: files.key } }],
        validation_context: {
          trusted_ca: { filename: files.ca },
          match_typed_subject_alt_names: [
            { san_type: 'URI', matcher: { exact: spiffeId(peer, topology.namespace, topology.trustDomain) } },
          ],
        },
        ...(alpn ? { alpn_protocols: alpn } : {}),
      },
    },
  };
}

/** Downstream mTLS for a sidecar inbound listener: a client certificate from the mesh CA with one of `callers`' SPIFFE IDs is required. */
export function inboundTls(topology: Topology, plan: TargetPlan, own: string, callers: string[]): Obj {
  const files = certFilesFor(plan, own);
  return {
    name: 'envoy.transport_sockets.tls',
    typed_config: {
      '@type': T.downstreamTls,
      require_client_certificate: true,
      common_tls_context: {
        tls_params: MESH_TLS_PARAMS,
        tls_certificates: [{ certificate_chain: { filename: files.cert }, private_key: { filename: files.key } }],
        validation_context: {
          trusted_ca: { filename: files.ca },
          match_typed_subject_alt_names: callers.map((w) => ({
            san_type: 'URI',
            matcher: { exact: spiffeId(w, topology.namespace, topology.trustDomain) },
          })),
        },
        alpn_protocols: ['h2', 'http/1.1'],
      },
    },
  };
}
