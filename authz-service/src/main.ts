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
import { readFileSync } from 'node:fs';
import { pino, type Logger } from 'pino';
import { Counter } from 'prom-client';
import {
  JWKS_FETCH_FAILURE_REASONS,
  createAuthenticator,
  createRemoteKeySource,
  createVerifier,
  readJwksTlsFiles,
  type JwksTlsOptions,
} from '@jwt-mesh/core';
import { createRedisRevocation } from '@jwt-mesh/core/redis';
import { startTracing, type TracingHandle } from '@jwt-mesh/tracing';
import { ConfigError, loadConfig, type AuthzConfig } from './config.js';
import { startHttpServer } from './http.js';
import { createMetrics } from './metrics.js';
import { PolicyFileError, loadPolicyFile } from './policy.js';
import { buildServer, type TlsMaterial } from './server.js';

/** Fields never written to logs (pino redaction paths). */
export const REDACT_PATHS = [
  'authorization',
  'cookie',
  'token',
  '*.authorization',
  '*.cookie',
  '*.token',
  '*.headers.authorization',
  '*.headers.cookie',
  'headers.authorization',
  'headers.cookie',
];

/** Reads the PEM files of the mTLS listener; errors name the variable. */
function readTls(config: AuthzConfig): TlsMaterial | 'insecure-plaintext' {
  const sec = config.security;
  if (sec.mode === 'insecure-plaintext') return 'insecure-plaintext';
  const read = (variable: string, file: string): Buffer => {
    try {
      return readFileSync(file);
    } catch (err) {
      throw new ConfigError(variable, `cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`, { cause: err });
    }
  };
  return { cert: read('AUTHZ_TLS_CERT', sec.certFile), key: read('AUTHZ_TLS_KEY', sec.keyFile), ca: read('AUTHZ_TLS_CA', sec.caFile) };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms).unref());

/**
 * Resolves once the JWK Set has been fetched successfully once (the core's key source
 * `stats().lastSuccessAt`). A lookup of a `kid` no issuer uses makes the key source fetch; its
 * own cooldown bounds the fetch rate. Retries every second until `signal` aborts.
 */
async function waitForJwks(keys: ReturnType<typeof createRemoteKeySource>, signal: AbortSignal, log: Logger): Promise<void> {
  for (let attempt = 1; !signal.aborted; attempt++) {
    await keys.getKey({ kid: 'jwt-mesh-readiness-probe', alg: 'RS256' }).catch((err: unknown) => err);
    if (keys.stats().lastSuccessAt !== null) return;
    if (attempt === 1 || attempt % 30 === 0) log.warn({ attempt }, 'JWKS not available yet; health stays NOT_SERVING');
    await sleep(1_000);
  }
}

/** How often health is re-evaluated after start (milliseconds): Envoy's checks run every 1-2 s. */
const HEALTH_MONITOR_INTERVAL_MS = 500;

/** Resolves once the Redis command connection and the revocation subscriber are ready; retries. */
async function waitForRevocation(revocation: { ready(timeoutMs?: number): Promise<void> }, signal: AbortSignal, log: Logger): Promise<void> {
  for (let attempt = 1; !signal.aborted; attempt++) {
    try {
      await revocation.ready(5_000);
      return;
    } catch (err) {
      if (signal.aborted) return;
      if (attempt === 1 || attempt % 6 === 0) log.warn({ err, attempt }, 'Redis revocation store not ready yet; health stays NOT_SERVING');
    }
  }
}

async function main(): Promise<void> {
  // First: OpenTelemetry from the OTEL_* variables (a no-op without an OTLP endpoint).
  const tracing: TracingHandle = await startTracing({ serviceName: 'authz-service' });
  const bootLog = pino({ name: 'authz-service' });
  let config: AuthzConfig;
  let tls: TlsMaterial | 'insecure-plaintext';
  let policy;
  let jwksTls: JwksTlsOptions | undefined;
  try {
    config = loadConfig(process.env);
    tls = readTls(config);
    jwksTls = readJwksTlsFiles(config.verifier.jwksTls);
    policy = loadPolicyFile(config.policyFile);
  } catch (err) {
    // A setting, file or field is wrong: the message names it; a stack trace would only hide it.
    const named =
      err instanceof ConfigError ||
      err instanceof PolicyFileError ||
      (err instanceof Error && err.message.startsWith('invalid configuration')); // the core's loadVerifierConfig
    if (named) bootLog.fatal({ error: err.name }, err.message);
    else bootLog.fatal({ err }, 'start-up failed');
    process.exitCode = 1;
    return;
  }
  const log = pino({ name: 'authz-service', level: config.logLevel, redact: { paths: REDACT_PATHS, censor: '[redacted]' } });
  log.info({ tracing: tracing.enabled, tracesUrl: tracing.tracesUrl, reason: tracing.offReason ?? undefined }, tracing.enabled ? 'tracing on (OTLP)' : 'tracing off');
  if (tls === 'insecure-plaintext') {
    log.warn('AUTHZ_INSECURE_PLAINTEXT=true: the gRPC listener has no TLS and accepts any client (development only)');
  }

  const v = config.verifier;
  // Registered on the server's registry once that exists: it needs the authenticator built below.
  const jwksFailures = new Counter({
    name: 'jwtmesh_jwks_fetch_failures_total',
    help: 'Failed fetches of the JWK Set, by reason (tls, identity, network, timeout, http_status, invalid); the last good set stays in use.',
    labelNames: ['reason'],
    registers: [],
  });
  for (const reason of JWKS_FETCH_FAILURE_REASONS) jwksFailures.inc({ reason }, 0);
  const lastJwksWarn = new Map<string, number>();
  const keys = createRemoteKeySource({
    url: v.jwksUrl,
    ...(jwksTls ? { tls: jwksTls } : {}),
    onFetchFailure: (err) => {
      jwksFailures.inc({ reason: err.reason });
      // A refused or impersonated issuer repeats on every attempt: one line per reason per 10 s.
      const now = Date.now();
      if (now - (lastJwksWarn.get(err.reason) ?? 0) < 10_000) return;
      lastJwksWarn.set(err.reason, now);
      log.warn({ reason: err.reason, err: err.message, jwksUrl: v.jwksUrl }, 'JWK Set fetch failed; the keys already known stay in use');
    },
  });
  const verifier = createVerifier({
    issuer: v.issuer,
    audience: v.audience,
    algorithms: [...v.algorithms],
    clockToleranceSec: v.clockToleranceSec,
    maxLifetimeSec: v.accessTokenTtlSec,
    maxTokenBytes: v.maxTokenBytes,
    keys,
  });
  const revocation = createRedisRevocation({
    redisUrl: v.redisUrl,
    connection: v.redisConnection,
    prefix: config.revocationKeyPrefix,
    onUnavailable: v.revocationFailMode === 'open' ? 'allow' : 'deny',
    cacheTtlMs: v.revocationCacheTtlMs,
    onError: (() => {
      // Connection errors repeat on every reconnect attempt: one line per context per 5 s.
      const last = new Map<string, number>();
      return (err: Error, context: string) => {
        if (context === 'lookup') return; // counted per decision (reason revocation_unavailable)
        const now = Date.now();
        if (now - (last.get(context) ?? 0) < 5_000) return;
        last.set(context, now);
        log.warn({ err, context }, 'Redis revocation store error');
      };
    })(),
  });
  const authenticator = createAuthenticator({
    verifier,
    revocation,
    policy,
    verifiedCacheMaxEntries: config.verifiedCacheMaxEntries,
    deadlineMs: config.deadlineMs,
  });
  const metrics = createMetrics({ defaultMetrics: true, caches: { authenticator, revocation } });
  metrics.registry.registerMetric(jwksFailures);
  const authz = buildServer({ authenticator, deadlineMs: config.deadlineMs, logger: log, metrics, tls });

  let serving = false;
  let draining = false;
  const port = await authz.start(config.port, config.host);
  const http = await startHttpServer({
    registry: metrics.registry,
    isReady: () => serving && !draining,
    host: config.metricsHost,
    port: config.metricsPort,
  });
  log.info(
    { port, host: config.host, metricsPort: http.port, tls: tls !== 'insecure-plaintext', policyFile: config.policyFile, rules: policy.rules.length },
    'authz-service listening',
  );

  const readiness = new AbortController();
  void Promise.all([
    waitForRevocation(revocation, readiness.signal, log),
    waitForJwks(keys, readiness.signal, log),
  ]).then(
    () => {
      if (draining || readiness.signal.aborted) return;
      serving = true;
      authz.setHealth('SERVING');
      log.info('ready: revocation subscriber and JWKS available; health SERVING');
      // After start, health follows this replica's own Redis connections: a replica that lost
      // them (a partition, a wedged client) answers every Check 503, so Envoy's health check
      // should move traffic to a replica that still has them. (When every replica loses Redis,
      // Envoy's panic routing still reaches them and they answer 503: the same fail-closed result.)
      const monitor = setInterval(() => {
        if (draining) return clearInterval(monitor);
        const st = revocation.stats();
        const up = st.connected && st.subscribed;
        if (up === serving) return;
        serving = up;
        authz.setHealth(up ? 'SERVING' : 'NOT_SERVING');
        if (up) log.info('Redis revocation store back; health SERVING');
        else log.warn({ connected: st.connected, subscribed: st.subscribed }, 'Redis revocation store lost; health NOT_SERVING');
      }, HEALTH_MONITOR_INTERVAL_MS);
      monitor.unref();
    },
    (err: unknown) => log.error({ err }, 'readiness failed; health stays NOT_SERVING'),
  );

  const drain = async (signal: NodeJS.Signals): Promise<void> => {
    if (draining) return;
    draining = true;
    readiness.abort();
    log.info({ signal, timeoutMs: config.drainTimeoutMs }, 'draining: health NOT_SERVING, finishing in-flight calls');
    const how = await authz.drain(config.drainTimeoutMs);
    const httpClosed = new Promise<void>((resolve) => http.server.close(() => resolve()));
    http.server.closeAllConnections();
    await Promise.allSettled([revocation.close(), httpClosed]);
    await tracing.shutdown(); // flush the last spans (bounded; never rejects)
    log.info({ how }, 'stopped');
    // Everything is closed; exit explicitly so a stray handle cannot keep the pod alive.
    process.exit(0);
  };
  process.once('SIGTERM', (s) => void drain(s));
  process.once('SIGINT', (s) => void drain(s));
}

void main().catch((err: unknown) => {
  pino({ name: 'authz-service' }).fatal({ err }, 'start-up failed');
  process.exit(1);
});
