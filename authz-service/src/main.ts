/**
 * authz-service entry point: reads the configuration once, wires the core (remote JWKS key
 * source, verifier, Redis revocation, route policy, authenticator) into the gRPC ext_authz
 * server, serves `/metrics` and `/healthz`, and drains gracefully on SIGTERM / SIGINT.
 *
 * Start-up fails (exit 1, one log line naming the variable, file or field) on a bad setting,
 * an unreadable TLS file or an invalid policy file. Once listening it logs
 * `{"msg":"authz-service listening","port":...,"metricsPort":...}`.
 *
 * Health (grpc.health.v1 and `/readyz`): NOT_SERVING until the Redis revocation store and the
 * JWKS are available; then SERVING while this replica's Redis connections (command and
 * subscriber) are up, re-evaluated every 500 ms; NOT_SERVING for good once draining.
 */
import type { Logger } from 'pino';
import {
  createLogger,
  createServiceVerifierStack,
  exitOnStartupError,
  logTracingState,
  readConfigFile,
  type VerifierStack,
} from '@jwt-mesh/runtime';
import { verifierStackOptionsOf } from '@jwt-mesh/runtime/verifier-env';
import { startTracing } from '@jwt-mesh/tracing';
import { loadConfig, type AuthzConfig } from './config.js';
import { startHttpServer } from './http.js';
import { createMetrics } from './metrics.js';
import { PolicyFileError, loadPolicyFile } from './policy.js';
import { buildServer, type AuthzServer, type TlsMaterial } from './server.js';

/** The service name: log lines, Redis client name, `service.name` of its spans. */
const SERVICE = 'authz-service';

/** How often health is re-evaluated (milliseconds): Envoy's checks run every 1-2 s. */
const HEALTH_MONITOR_INTERVAL_MS = 500;

/** Reads the PEM files of the mTLS listener; errors name the variable. */
function readTls(config: AuthzConfig): TlsMaterial | 'insecure-plaintext' {
  const sec = config.security;
  if (sec.mode === 'insecure-plaintext') return 'insecure-plaintext';
  return { cert: readConfigFile('AUTHZ_TLS_CERT', sec.certFile), key: readConfigFile('AUTHZ_TLS_KEY', sec.keyFile), ca: readConfigFile('AUTHZ_TLS_CA', sec.caFile) };
}

/** Everything read at start-up; a bad variable, file or policy field ends start-up naming it. */
function readSettings() {
  const config = loadConfig(process.env);
  return { config, tls: readTls(config), stackOptions: verifierStackOptionsOf(config.verifier), policy: loadPolicyFile(config.policyFile) };
}

/**
 * Health (grpc.health.v1 and `/readyz`) from the verifier stack, every
 * {@link HEALTH_MONITOR_INTERVAL_MS}: NOT_SERVING until the JWK Set was fetched and the Redis
 * revocation store is ready; then SERVING while this replica's Redis connections (command and
 * subscriber) are up: a replica that lost them answers every Check 503, so Envoy's health check
 * should move traffic to one that still has them. (When every replica loses Redis, Envoy's panic
 * routing still reaches them and they answer 503: the same fail-closed result.)
 *
 * @returns `isServing()` for `/readyz`, and `stop()` (at drain: NOT_SERVING for good)
 */
function followHealth(stack: VerifierStack, authz: AuthzServer, log: Logger) {
  let serving = false;
  let wasReady = false;
  const monitor = setInterval(() => {
    const st = stack.revocation.stats();
    const up = stack.readiness.report().ready && st.connected && st.subscribed;
    if (up === serving) return;
    serving = up;
    authz.setHealth(up ? 'SERVING' : 'NOT_SERVING');
    if (up && !wasReady) log.info('ready: revocation subscriber and JWKS available; health SERVING');
    else if (up) log.info('Redis revocation store back; health SERVING');
    else log.warn({ connected: st.connected, subscribed: st.subscribed }, 'Redis revocation store lost; health NOT_SERVING');
    wasReady ||= up;
  }, HEALTH_MONITOR_INTERVAL_MS);
  monitor.unref();
  return {
    isServing: () => serving,
    stop() {
      clearInterval(monitor);
      serving = false;
    },
  };
}

async function main(): Promise<void> {
  // First: OpenTelemetry from the OTEL_* variables (a no-op without an OTLP endpoint).
  const tracing = await startTracing({ serviceName: SERVICE });
  let settings: ReturnType<typeof readSettings>;
  try {
    settings = readSettings();
  } catch (err) {
    // A setting, file or policy field is wrong: the message names it; a stack trace would only hide it.
    return exitOnStartupError(SERVICE, err, (e) => e instanceof PolicyFileError);
  }
  const { config, tls, stackOptions, policy } = settings;
  const log = createLogger({ service: SERVICE, level: config.logLevel });
  logTracingState(log, tracing);
  if (tls === 'insecure-plaintext') {
    log.warn('AUTHZ_INSECURE_PLAINTEXT=true: the gRPC listener has no TLS and accepts any client (development only)');
  }

  const metrics = createMetrics({ defaultMetrics: true });
  const stack = createServiceVerifierStack(
    SERVICE,
    { ...stackOptions, policy, verifiedCacheMaxEntries: config.verifiedCacheMaxEntries, deadlineMs: config.deadlineMs },
    log,
    metrics.registry,
    'jwtmesh_',
  );
  const authz = buildServer({ authenticator: stack.authenticator, deadlineMs: config.deadlineMs, logger: log, metrics, tls });
  const port = await authz.start(config.port, config.host);
  const health = followHealth(stack, authz, log);
  let draining = false;
  const http = await startHttpServer({ registry: metrics.registry, isReady: () => health.isServing() && !draining, host: config.metricsHost, port: config.metricsPort });
  log.info(
    { port, host: config.host, metricsPort: http.port, tls: tls !== 'insecure-plaintext', policyFile: config.policyFile, rules: policy.rules.length },
    'authz-service listening',
  );

  const drain = async (signal: NodeJS.Signals): Promise<void> => {
    if (draining) return;
    draining = true;
    health.stop();
    log.info({ signal, timeoutMs: config.drainTimeoutMs }, 'draining: health NOT_SERVING, finishing in-flight calls');
    const how = await authz.drain(config.drainTimeoutMs);
    const httpClosed = new Promise<void>((resolve) => http.server.close(() => resolve()));
    http.server.closeAllConnections();
    await Promise.allSettled([stack.close(), httpClosed]);
    await tracing.shutdown(); // flush the last spans (bounded; never rejects)
    log.info({ how }, 'stopped');
    // Everything is closed; exit explicitly (once the log line is written) so a stray handle cannot keep the pod alive.
    log.flush(() => process.exit(0));
  };
  process.once('SIGTERM', (s) => void drain(s));
  process.once('SIGINT', (s) => void drain(s));
}

void main().catch((err: unknown) => exitOnStartupError(SERVICE, err));
