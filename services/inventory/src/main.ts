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
import { envText, httpUrl, installGracefulShutdown, listenOrExit, millis, port, startService } from '@jwt-mesh/runtime';
import { buildApp, createProfileClient, SERVICE } from './app.js';

const { tracing, env, stackOptions, logger, metrics, stack } = await startService(SERVICE, {
  PORT: port(3002),
  UPSTREAM_URL: httpUrl().default('http://127.0.0.1:3202'),
  UPSTREAM_AUTHORITY: envText().optional(),
  UPSTREAM_TIMEOUT_MS: millis(5000),
});
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
await listenOrExit(SERVICE, app, { port: env.PORT, host: env.HOST }, stack);
logger.info({ upstream: upstream.host, jwksUrl: stackOptions.jwksUrl }, `${SERVICE} listening`);
