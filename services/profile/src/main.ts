/**
 * Starts profile: `tsx src/main.ts` (`npm start -w @jwt-mesh/profile`): the gRPC server
 * (`jwtmesh.profile.v1.ProfileService` + `grpc.health.v1.Health`) and the HTTP server (health,
 * readiness, metrics, `GET /api/profile/me`). Configuration from the environment, read once and
 * validated (a bad value stops start-up naming the variable):
 *
 * | variable | default | meaning |
 * |---|---|---|
 * | `PORT` | `3003` | HTTP port (0 = any free port) |
 * | `HOST` | `127.0.0.1` | bind address of both servers |
 * | `GRPC_PORT` | `3053` | gRPC port (h2c, plaintext: the sidecar in front terminates mTLS) |
 * | `LOG_LEVEL` | `info` | pino level |
 * | `SHUTDOWN_TIMEOUT_MS` | `10000` | drain deadline after SIGTERM, ms |
 * | `DRAIN_GRACE_MS` | `1000` | after SIGTERM, keep serving this long with `/readyz` 503 before closing the listener, ms |
 * | `JWT_*`, `JWKS_URL`, `REDIS_URL`, `REVOCATION_*` | see the core | shared verifier settings (`loadVerifierConfig`) |
 * | `OTEL_*` | tracing off | OpenTelemetry tracing (`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_SERVICE_NAME`, ...): see packages/tracing/README.md |
 */
import * as grpc from '@grpc/grpc-js';
import { exitOnStartupError, installGracefulShutdown, listenOrExit, port, startService } from '@jwt-mesh/runtime';
import { buildApp, buildGrpcServer, GRPC_SERVICE, SERVICE } from './app.js';

const { tracing, env, stackOptions, logger, metrics, stack } = await startService(SERVICE, { PORT: port(3003), GRPC_PORT: port(3053) });
const app = await buildApp({ authenticator: stack.authenticator, readiness: stack.readiness, logger, metrics });
const { server, health } = buildGrpcServer({ authenticator: stack.authenticator, readiness: stack.readiness, logger, metrics });

const grpcPort = await new Promise<number>((resolve, reject) =>
  server.bindAsync(`${env.HOST}:${env.GRPC_PORT}`, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
).catch(async (err: unknown) => {
  await stack.close();
  return exitOnStartupError(SERVICE, err);
});

// grpc.health.v1 follows readiness (JWKS fetched, revocation subscriber ready), then drain.
let serving = false;
const healthTimer = setInterval(() => {
  const ready = stack.readiness.report().ready && !app.draining;
  if (ready !== serving) {
    serving = ready;
    for (const name of ['', GRPC_SERVICE]) health.setStatus(name, ready ? 'SERVING' : 'NOT_SERVING');
  }
}, 500);
healthTimer.unref();

installGracefulShutdown({
  app,
  logger,
  timeoutMs: env.SHUTDOWN_TIMEOUT_MS,
  graceMs: env.DRAIN_GRACE_MS,
  closers: [
    async () => {
      clearInterval(healthTimer);
      for (const name of ['', GRPC_SERVICE]) health.setStatus(name, 'NOT_SERVING');
      // Stop accepting calls, let in-flight ones finish (the overall deadline still applies).
      await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
    },
    () => stack.close(),
    () => tracing.shutdown(),
  ],
});
await listenOrExit(SERVICE, app, { port: env.PORT, host: env.HOST }, stack, () => server.forceShutdown());
logger.info({ grpcPort, jwksUrl: stackOptions.jwksUrl }, `${SERVICE} listening (HTTP and gRPC)`);
