/**
 * The Node processes of the mesh: what they are started with ({@link Wiring}), the environment
 * every verifier shares, and {@link nodePart}, the part every Node process is started as (tsx,
 * a log file, a readiness wait).
 */
import { JWKS_PATH, spiffeId } from '@jwt-mesh/envoy';
import { httpGet, waitUntil } from '../probe.js';
import { type ManagedProcess, spawnProcess } from '../proc.js';
import type { StackOptions } from '../stack.js';
import { guard, NODE_TSX, type PartDef } from './launcher.js';
import type { Mesh, PortPlan, ServicePorts } from './plan.js';
import { tracingEnv } from './tracing.js';
import type { StackRedis } from './databases.js';

/** The mesh plus what the Node processes are started with: the database, Redis and the authz policy file. */
export interface Wiring extends Mesh {
  readonly databaseUrl: string;
  readonly redis: StackRedis;
  readonly policyFile: string | undefined;
}

// Functions of the auth ports: the auth-service may move to another port if its own was taken.
/** The auth-service's ports (app, and its sidecar's inbound, outbound, admin). */
export function authPorts(plan: PortPlan): ServicePorts {
  return plan.services['auth'] as ServicePorts;
}
/** The auth-service's own URL on loopback. */
export function authUrl(plan: PortPlan): string {
  return `http://127.0.0.1:${authPorts(plan).app}`;
}
/** The `iss` of its tokens (`JWT_ISSUER`). */
export function issuerOf(plan: PortPlan): string {
  return `http://localhost:${authPorts(plan).app}`;
}
/** The `aud` the verifiers expect (`JWT_AUDIENCE`). */
export function audienceOf(options: StackOptions): string {
  return options.env?.all?.JWT_AUDIENCE ?? 'jwt-mesh';
}
/** Where verifiers fetch the JWK Set: the auth sidecar, mTLS, the `auth` SPIFFE ID pinned. */
function meshJwksUrl(plan: PortPlan): string {
  return `https://127.0.0.1:${authPorts(plan).inbound}${JWKS_PATH}`;
}

/** The environment shared by every verifier: issuer, audience, the JWK Set over mTLS, Redis (the verifiers' ACL user). */
function verifierEnv(w: Wiring): Record<string, string> {
  const { redis } = w;
  return {
    JWT_ISSUER: issuerOf(w.plan),
    JWT_AUDIENCE: audienceOf(w.options),
    JWKS_URL: meshJwksUrl(w.plan),
    JWKS_CA_FILE: w.certs.ca.cert,
    JWKS_SERVER_ID: spiffeId('auth'),
    REDIS_URL: redis.url,
    ...(redis.acl ? { REDIS_USERNAME: redis.acl.verifier.username, REDIS_PASSWORD_FILE: redis.acl.verifier.passwordFile } : {}),
    REDIS_PREFIX: w.prefix,
    LOG_LEVEL: 'info',
  };
}

/** The environment of a Node part: the launcher's own minus what each part must get explicitly, then the verifiers', tracing's, its `own`, `env.all` and its kind's (`kind`). */
export function childEnv(w: Wiring, own: Record<string, string>, kind?: Record<string, string>): NodeJS.ProcessEnv {
  const base: NodeJS.ProcessEnv = { ...process.env };
  // Never leak the launcher's own settings into a part by accident: every part gets what it needs explicitly.
  for (const k of ['DATABASE_URL', 'REDIS_URL', 'REDIS_USERNAME', 'REDIS_PASSWORD_FILE', 'REDIS_TLS_CA_FILE', 'PORT', 'HOST', 'GRPC_PORT', 'UPSTREAM_URL', 'UPSTREAM_AUTHORITY', 'JWKS_CERT_FILE', 'JWKS_KEY_FILE']) delete base[k];
  // Tracing is the stack's decision: the Node processes export where the proxies do, or not at all.
  for (const k of ['OTEL_EXPORTER_OTLP_ENDPOINT', 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT']) delete base[k];
  delete base['NODE_OPTIONS'];
  return { ...base, ...verifierEnv(w), ...tracingEnv(w), ...own, ...(w.options.env?.all ?? {}), ...(kind ?? {}) };
}

/** A Node process of the stack, run with tsx: what {@link nodePart} starts. */
interface NodePartSpec {
  name: string;
  /** Its entry script. */
  entry: string;
  cwd: string;
  /** Its environment, computed at each start (a start after `repick` sees the new ports). */
  env: () => NodeJS.ProcessEnv;
  /** Resolves once the started process is ready; rejects (naming what it waited for) when it is not. */
  ready: (proc: ManagedProcess) => Promise<void>;
  /** Its ports, released from their holds right before the spawn. */
  ports: () => Array<number | undefined>;
  /** Reserves new ports for it (`free` ports only). */
  repick: () => Promise<void>;
}

/** A Node part: spawned with tsx, its log `<name>.log`, waited for with `spec.ready`. */
export function nodePart(m: Mesh, spec: NodePartSpec): PartDef {
  const { name } = spec;
  return {
    name,
    ...(m.free ? { repick: spec.repick } : {}),
    start: async () => {
      const log = m.logOf(name);
      await m.release(...spec.ports());
      const proc = spawnProcess({ name, command: process.execPath, args: [...NODE_TSX, spec.entry], cwd: spec.cwd, env: spec.env(), logFile: log, markers: [spec.entry] });
      await guard(name, log, proc, () => spec.ready(proc));
      return proc;
    },
  };
}

/** Waits until `GET url()` answers 200 (while the process runs). */
export function httpReady(m: Mesh, what: string, url: () => string): (proc: ManagedProcess) => Promise<void> {
  return (proc) =>
    waitUntil(
      what,
      async () => {
        const r = await httpGet(url());
        return r.status === 200 ? true : `GET ${url()}: ${r.status || r.body}`;
      },
      { timeoutMs: m.readyTimeoutMs, alive: proc.running },
    );
}
