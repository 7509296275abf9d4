/**
 * Starts orders: `tsx src/main.ts` (`npm start -w @jwt-mesh/orders`). Configuration from the
 * environment, read once and validated (a bad value stops start-up naming the variable):
 *
 * | variable | default | meaning |
 * |---|---|---|
 * | `PORT` | `3001` | HTTP port (0 = any free port) |
 * | `HOST` | `127.0.0.1` | bind address |
 * | `UPSTREAM_URL` | `http://127.0.0.1:3201` | inventory: the local sidecar's outbound listener (or inventory itself without Envoy) |
 * | `UPSTREAM_TIMEOUT_MS` | `5000` | deadline of one call to inventory, ms |
 * | `LOG_LEVEL` | `info` | pino level |
 * | `SHUTDOWN_TIMEOUT_MS` | `10000` | drain deadline after SIGTERM, ms |
 * | `DRAIN_GRACE_MS` | `1000` | after SIGTERM, keep serving this long with `/readyz` 503 before closing the listener, ms |
 * | `JWT_*`, `JWKS_URL`, `REDIS_URL`, `REVOCATION_*` | see the core | shared verifier settings (`loadVerifierConfig`) |
 * | `OTEL_*` | tracing off | OpenTelemetry tracing (`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_SERVICE_NAME`, ...): see packages/tracing/README.md |
 */
import { createMeshClient } from '@jwt-mesh/fastify-auth';
import { httpUrl, installGracefulShutdown, listenOrExit, millis, port, startService } from '@jwt-mesh/runtime';
import { buildApp, SERVICE } from './app.js';

const { tracing, env, stackOptions, logger, metrics, stack } = await startService(SERVICE, {
  PORT: port(3001),
  UPSTREAM_URL: httpUrl().default('http://127.0.0.1:3201'),
  UPSTREAM_TIMEOUT_MS: millis(5000),
});
const inventory = createMeshClient({ baseUrl: env.UPSTREAM_URL, timeoutMs: env.UPSTREAM_TIMEOUT_MS });
const app = await buildApp({ authenticator: stack.authenticator, readiness: stack.readiness, inventory, logger, metrics });

installGracefulShutdown({ app, logger, timeoutMs: env.SHUTDOWN_TIMEOUT_MS, graceMs: env.DRAIN_GRACE_MS, closers: [() => inventory.close(), () => stack.close(), () => tracing.shutdown()] });
await listenOrExit(SERVICE, app, { port: env.PORT, host: env.HOST }, stack);
logger.info({ upstream: env.UPSTREAM_URL, jwksUrl: stackOptions.jwksUrl }, `${SERVICE} listening`);
