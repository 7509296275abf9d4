/**
 * What a caller can ask of the renderer and how it is checked: the targets (`local`, `k8s`), the
 * ports/hosts override merged over the target's default plan, the tracing options, and
 * {@link resolvePlan} / {@link resolveTracing}, which validate them (zod) and throw naming the bad field.
 */
import { z } from 'zod';
import { defaultPlan, type HostPort, type ServicePorts, type TargetPlan, type Topology } from '../topology.js';

export type Target = 'local' | 'k8s';
export const TARGETS: readonly Target[] = ['local', 'k8s'];

const portSchema = z.number().int().min(0).max(65535);
const hostPortSchema = z.union([
  z.object({ host: z.string().min(1), port: portSchema }).strict(),
  z
    .string()
    .regex(/^[^\s:]+:\d{1,5}$/, 'expected "host:port"')
    .transform((s) => {
      const i = s.lastIndexOf(':');
      return { host: s.slice(0, i), port: Number(s.slice(i + 1)) };
    })
    .pipe(z.object({ host: z.string().min(1), port: portSchema })),
]);

/**
 * Port and host overrides, merged over the target's default plan (see `defaultPlan`).
 * Every field is optional; `authz` replaces the whole endpoint list. Endpoints may be given as
 * `{ "host": "127.0.0.1", "port": 9001 }` or `"127.0.0.1:9001"`. Port 0 lets the OS pick a port
 * for a listener or the admin interface (tests read the bound port from the admin API).
 */
export const portsOverrideSchema = z
  .object({
    edge: z.object({ http: portSchema, https: portSchema, admin: portSchema, health: portSchema }).partial().strict(),
    authz: z.array(hostPortSchema).min(1),
    services: z.record(
      z.string(),
      z
        .object({
          app: portSchema,
          grpc: portSchema,
          inbound: portSchema,
          outbound: portSchema,
          admin: portSchema,
          health: portSchema,
          host: z.string().min(1),
        })
        .partial()
        .strict(),
    ),
  })
  .partial()
  .strict();
export type PortsOverride = z.input<typeof portsOverrideSchema>;

/** Options of {@link renderConfigs}. */
export interface RenderOptions {
  /** Ports/hosts merged over the target's defaults. Validated; a bad value throws naming the field. */
  ports?: PortsOverride;
  /**
   * Certificate directory. Default: `certs` (local, relative to Envoy's working directory) or
   * `/etc/jwt-mesh/certs` (k8s). Tests point the k8s target at a temp dir laid out by
   * `writeK8sCertLayout` so that `envoy --mode validate` can read real files.
   */
  certDir?: string;
  /** Address for listeners other workloads reach. Default `127.0.0.1` (local) or `0.0.0.0` (k8s). */
  bindAddress?: string;
  /**
   * Envoy's OpenTelemetry tracer on the edge and every sidecar (see {@link TracingOptions}).
   * Absent (the default): no tracer, no collector cluster, and the rendered configs are exactly
   * what they are without this option.
   */
  tracing?: TracingOptions;
}

/**
 * Envoy's OpenTelemetry tracer (`envoy.tracers.opentelemetry`, `config.trace.v3.OpenTelemetryConfig`,
 * https://www.envoyproxy.io/docs/envoy/v1.40.0/api-v3/config/trace/v3/opentelemetry.proto) on
 * every proxy, exporting OTLP/HTTP (protobuf, the OTLP spec's `/v1/traces`) through the
 * `opentelemetry_collector` cluster.
 *
 * Sampling is decided once per request, at the edge: a request that arrives with a W3C
 * `traceparent` keeps that header's sampled flag on every proxy (Envoy's OpenTelemetry tracer
 * follows the parent's flag); a request without one is sampled by the edge with probability
 * `edgeSamplePercent`, and never by a sidecar (their `random_sampling` is 0 %), so a sidecar never
 * starts a sampled trace of its own. `x-client-trace-id` never forces a trace (`client_sampling` 0 %).
 */
export interface TracingOptions {
  /**
   * The OTLP/HTTP collector the proxies export to, plain HTTP: `"host:port"` or `{ host, port }`.
   * An IP literal makes a STATIC cluster, a DNS name a STRICT_DNS one (Kubernetes:
   * `otel-collector.jwt-mesh.svc.cluster.local:4318`).
   */
  collector: HostPort | string;
  /** Path of the OTLP/HTTP traces endpoint on the collector. Default `/v1/traces` (OTLP/HTTP). */
  tracesPath?: string;
  /**
   * Percentage (0..100, fractions allowed) of requests that the edge samples. Default 100.
   * Sidecars always use 0 and follow the incoming `traceparent`. Envoy decides at the edge from
   * the request's `x-request-id` (UUID request-ID extension, `use_request_id_for_trace_sampling`):
   * sampled when its first 8 hex digits, as an integer, modulo 10000 are below
   * `edgeSamplePercent` × 100. The edge generates a random UUID per request, or keeps a client's
   * (`preserve_external_request_id`); an x-request-id that does not start with 8 hex digits is
   * never sampled. A client's `traceparent` can turn sampling off (`-00`), not on.
   */
  edgeSamplePercent?: number;
  /** Timeout of one OTLP export request, milliseconds. Default 1000. */
  exportTimeoutMs?: number;
  /**
   * How often each proxy sends its buffered spans, milliseconds (Envoy runtime key
   * `tracing.opentelemetry.flush_interval_ms`; Envoy's default is 5000). Default 1000.
   */
  flushIntervalMs?: number;
}

const tracingSchema = z
  .object({
    collector: hostPortSchema,
    tracesPath: z.string().regex(/^\/[^?#\s]*$/, 'must be a path starting with "/"').default('/v1/traces'),
    edgeSamplePercent: z.number().min(0).max(100).default(100),
    exportTimeoutMs: z.number().int().min(1).max(60_000).default(1000),
    flushIntervalMs: z.number().int().min(100).max(60_000).default(1000),
  })
  .strict();

/** {@link TracingOptions} validated, with defaults filled in. */
export type TracingPlan = z.output<typeof tracingSchema>;

/**
 * Validates tracing options and fills in the defaults.
 * @throws Error naming the bad field (`tracing.collector`, `tracing.edgeSamplePercent`, ...).
 */
export function resolveTracing(options: TracingOptions): TracingPlan {
  const parsed = tracingSchema.safeParse(options);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new Error(`render: bad tracing option at "tracing.${issue?.path.join('.') ?? ''}": ${issue?.message ?? 'invalid'}`);
  }
  return parsed.data;
}

/**
 * The target's default plan with `options` merged in.
 * @throws Error naming the bad field when `options.ports` does not match {@link portsOverrideSchema},
 *   or names a service the topology does not have.
 */
export function resolvePlan(topology: Topology, target: Target, options: RenderOptions = {}): TargetPlan {
  if (!TARGETS.includes(target)) throw new Error(`render: unknown target "${String(target)}" (expected local or k8s)`);
  const plan = defaultPlan(target, topology);
  const parsed = portsOverrideSchema.safeParse(options.ports ?? {});
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new Error(`render: bad ports override at "${issue?.path.join('.') || '(root)'}": ${issue?.message ?? 'invalid'}`);
  }
  const ports = parsed.data;
  if (ports.edge) plan.edge = { ...plan.edge, ...ports.edge };
  if (ports.authz) plan.authz = ports.authz;
  for (const [name, override] of Object.entries(ports.services ?? {})) {
    const current = plan.services[name];
    if (!current) throw new Error(`render: ports override names unknown service "${name}"`);
    plan.services[name] = { ...current, ...override };
  }
  if (options.certDir !== undefined) plan.certDir = options.certDir;
  if (options.bindAddress !== undefined) plan.bindAddress = options.bindAddress;
  return plan;
}

/**
 * The ports and host of service `name` in the resolved plan.
 * @throws Error when the plan has no entry for `name`.
 */
export function servicePorts(plan: TargetPlan, name: string): ServicePorts {
  const p = plan.services[name];
  if (!p) throw new Error(`render: the plan has no ports for service "${name}"`);
  return p;
}
