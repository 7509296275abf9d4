/**
 * The chain orders -> inventory -> profile in one process, wired directly (no Envoy):
 * orders' UPSTREAM_URL is inventory's own port, inventory's gRPC target is profile's own gRPC
 * port. Every service has its own verifier stack (own JWK Set cache, own Redis connections)
 * sharing one unique Redis prefix, like separate processes sharing one Redis.
 */
import * as grpc from '@grpc/grpc-js';
import { createRedisRevocation } from '@jwt-mesh/core/redis';
import { createMeshClient } from '@jwt-mesh/fastify-auth';
import { buildApp as buildInventory, createProfileClient } from '@jwt-mesh/inventory';
import { buildApp as buildProfile, buildGrpcServer } from '@jwt-mesh/profile';
import { loadProfileProto, type ProfileServiceClient } from '@jwt-mesh/profile/proto';
import { createLogger, createMetrics, type ServiceMetrics } from '@jwt-mesh/runtime';
import { captureLogs, readyTestStack, startTestIssuer, TEST_REDIS_URL, uniquePrefix, type LogCapture, type TestIssuer } from '@jwt-mesh/runtime/testing';
import type { FastifyInstance } from 'fastify';
import { buildApp as buildOrders } from '../../src/app.js';

export interface RunningService {
  readonly app: FastifyInstance;
  readonly url: string;
  readonly logs: LogCapture;
  readonly metrics: ServiceMetrics;
}

export interface Chain {
  readonly issuer: TestIssuer;
  readonly orders: RunningService;
  readonly inventory: RunningService;
  readonly profile: RunningService & { readonly grpcTarget: string };
  /** A gRPC client straight to profile (for calling it directly). */
  readonly profileClient: ProfileServiceClient;
  /** The revocation publisher on the chain's Redis prefix. */
  readonly revocation: ReturnType<typeof createRedisRevocation>;
  close(): Promise<void>;
}

async function listen(app: FastifyInstance): Promise<string> {
  await app.listen({ port: 0, host: '127.0.0.1' });
  const { port } = app.server.address() as { port: number };
  return `http://127.0.0.1:${port}`;
}

export async function startChain(name: string): Promise<Chain> {
  const issuer = await startTestIssuer();
  const prefix = uniquePrefix(name);
  const closers: Array<() => Promise<void>> = [];

  // profile: HTTP + gRPC
  const pStack = await readyTestStack(issuer, prefix);
  const pLogs = captureLogs();
  const pLogger = createLogger({ service: 'profile', stream: pLogs.stream, level: 'debug' });
  const pMetrics = createMetrics('profile', { defaultMetrics: false });
  const pApp = await buildProfile({ authenticator: pStack.authenticator, readiness: pStack.readiness, logger: pLogger, metrics: pMetrics });
  const { server } = buildGrpcServer({ authenticator: pStack.authenticator, readiness: pStack.readiness, logger: pLogger, metrics: pMetrics });
  const grpcPort = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  const pUrl = await listen(pApp);
  const grpcTarget = `127.0.0.1:${grpcPort}`;

  // inventory -> profile over gRPC
  const iStack = await readyTestStack(issuer, prefix);
  const iLogs = captureLogs();
  const iMetrics = createMetrics('inventory', { defaultMetrics: false });
  const ctor = loadProfileProto().jwtmesh.profile.v1.ProfileService;
  const iProfile = createProfileClient(ctor, grpcTarget);
  const iApp = await buildInventory({
    authenticator: iStack.authenticator,
    readiness: iStack.readiness,
    profile: iProfile,
    logger: createLogger({ service: 'inventory', stream: iLogs.stream, level: 'debug' }),
    metrics: iMetrics,
  });
  const iUrl = await listen(iApp);

  // orders -> inventory over HTTP
  const oStack = await readyTestStack(issuer, prefix);
  const oLogs = captureLogs();
  const oMetrics = createMetrics('orders', { defaultMetrics: false });
  const oClient = createMeshClient({ baseUrl: iUrl, timeoutMs: 5000 });
  const oApp = await buildOrders({
    authenticator: oStack.authenticator,
    readiness: oStack.readiness,
    inventory: oClient,
    logger: createLogger({ service: 'orders', stream: oLogs.stream, level: 'debug' }),
    metrics: oMetrics,
  });
  const oUrl = await listen(oApp);

  const profileClient = createProfileClient(ctor, grpcTarget);
  const revocation = createRedisRevocation({ redisUrl: TEST_REDIS_URL, prefix });
  await revocation.ready();

  closers.push(
    () => oApp.close(),
    () => oClient.close(),
    () => oStack.close(),
    () => iApp.close(),
    async () => iProfile.close(),
    () => iStack.close(),
    () => pApp.close(),
    () => new Promise<void>((resolve) => server.tryShutdown(() => resolve())),
    () => pStack.close(),
    async () => profileClient.close(),
    () => revocation.close(),
    () => issuer.close(),
  );

  return {
    issuer,
    orders: { app: oApp, url: oUrl, logs: oLogs, metrics: oMetrics },
    inventory: { app: iApp, url: iUrl, logs: iLogs, metrics: iMetrics },
    profile: { app: pApp, url: pUrl, logs: pLogs, metrics: pMetrics, grpcTarget },
    profileClient,
    revocation,
    async close() {
      for (const c of closers) await c();
    },
  };
}

/** Calls GetProfile directly with the given metadata; resolves the status code and trailers. */
export function callProfile(
  client: ProfileServiceClient,
  headers: Record<string, string>,
  subject = '',
): Promise<{ code: grpc.status; trailers: grpc.Metadata | undefined; response: unknown }> {
  const md = new grpc.Metadata();
  for (const [k, v] of Object.entries(headers)) md.add(k, v);
  return new Promise((resolve) => {
    client.GetProfile({ subject }, md, { deadline: Date.now() + 5000 }, (err, res) => {
      if (err) resolve({ code: err.code, trailers: err.metadata, response: undefined });
      else resolve({ code: grpc.status.OK, trailers: undefined, response: res });
    });
  });
}

/** All scopes the read chain needs. */
export const READ_SCOPES = 'orders:read inventory:read profile:read';
