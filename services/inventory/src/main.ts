/**
 * Starts inventory: `tsx src/main.ts` (`npm start -w @jwt-mesh/inventory`). Configuration from
 * the environment, read once and validated (a bad value stops start-up naming the variable):
 *
 * | variable | default | meaning |
 * |---|---|---|
 * | `PORT` | `3002` | HTTP port (0 = any free port) |
 * | `HOST` | `127.0.0.1` | bind address |
 * | `UPSTREAM_URL` | `http://127.0.0.1:3202` | profile's gRPC endpoint (h2c): the local sidecar's outbound listener, or profile's `GRPC_PORT` without Envoy; only host and port are used |
 * | `UPSTREAM_AUTHORITY` | (the target) | `:authority` sent on gRPC calls, e.g. `profile`, for a sidecar that routes by host |
 * | `UPSTREAM_TIMEOUT_MS` | `5000` | deadline of one GetProfile call, ms |
 * | `LOG_LEVEL` | `info` | pino level |
 * | `SHUTDOWN_TIMEOUT_MS` | `10000` | drain deadline after SIGTERM, ms |
 * | `DRAIN_GRACE_MS` | `1000` | after SIGTERM, keep serving this long with `/readyz` 503 before closing the listener, ms |
 * | `JWT_*`, `JWKS_URL`, `REDIS_URL`, `REVOCATION_*` | see the core | shared verifier settings (`loadVerifierConfig`) |
 * | `OTEL_*` | tracing off | OpenTelemetry tracing (`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_SERVICE_NAME`, ...): see packages/tracing/README.md |
 */
import { loadProfileProto } from '@jwt-mesh/profile/proto';
import {
  commonEnvSchema,
  createLogger,
  createMetrics,
  createServiceVerifierStack,
  httpUrl,
  installGracefulShutdown,
  millis,
  exitOnStartupError,
  parseEnv,
  port,
} from '@jwt-mesh/runtime';
import { verifierStackOptionsFromEnv } from '@jwt-mesh/runtime/verifier-env';
import { startTracing } from '@jwt-mesh/tracing';
import { z } from 'zod';
import { buildApp, createProfileClient, SERVICE } from './app.js';

// First: OpenTelemetry from the OTEL_* variables (a no-op without an OTLP endpoint).
const tracing = await startTracing({ serviceName: SERVICE });

// Configuration is read once; a bad value ends start-up with one line naming the variable.
const { env, stackOptions } = (() => {
  try {
    return {
      env: parseEnv(
        commonEnvSchema.extend({
          PORT: port(3002),
          UPSTREAM_URL: httpUrl().default('http://127.0.0.1:3202'),
          UPSTREAM_AUTHORITY: z.string().min(1).optional(),
          UPSTREAM_TIMEOUT_MS: millis(5000),
        }),
        process.env,
      ),
      stackOptions: verifierStackOptionsFromEnv(process.env),
    };
  } catch (err) {
    return exitOnStartupError(SERVICE, err);
  }
})();

const logger = createLogger({ service: SERVICE, level: env.LOG_LEVEL });
const metrics = createMetrics(SERVICE);
logger.info({ tracing: tracing.enabled, tracesUrl: tracing.tracesUrl, reason: tracing.offReason ?? undefined }, tracing.enabled ? 'tracing on (OTLP)' : 'tracing off');
const stack = createServiceVerifierStack(SERVICE, stackOptions, logger, metrics.registry);
const upstream = new URL(env.UPSTREAM_URL);
const profile = createProfileClient(loadProfileProto().jwtmesh.profile.v1.ProfileService, upstream.host, env.UPSTREAM_AUTHORITY);
const app = await buildApp({
  authenticator: stack.authenticator,
  readiness: stack.readiness,
  profile,
  profileTimeoutMs: env.UPSTREAM_TIMEOUT_MS,
  logger,
  metrics,
});

installGracefulShutdown({
  app,
  logger,
  timeoutMs: env.SHUTDOWN_TIMEOUT_MS,
  graceMs: env.DRAIN_GRACE_MS,
  closers: [async () => profile.close(), () => stack.close(), () => tracing.shutdown()],
});
try {
  await app.listen({ port: env.PORT, host: env.HOST });
} catch (err) {
  await stack.close();
  exitOnStartupError(SERVICE, err);
}
logger.info({ upstream: upstream.host, jwksUrl: stackOptions.jwksUrl }, `${SERVICE} listening`);
