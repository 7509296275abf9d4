/**
 * Bench-only entry point of mode `chain_noauth` ("the chain without authentication"): starts one
 * of orders, inventory, profile built by the services' own `buildApp` / `buildGrpcServer`, with an
 * allow-all {@link Authenticator} that reads no token, and a readiness that is always ready.
 *
 * It is not a product switch on purpose: no service has a setting that turns verification off.
 * Only the benchmark, which imports this file by path, can start a service this way.
 *
 * `node --import tsx noauth-service.ts <orders|inventory|profile>`, environment: `PORT`,
 * `UPSTREAM_URL` (orders: inventory's sidecar outbound; inventory: profile's, host:port used),
 * `UPSTREAM_AUTHORITY` (inventory), `GRPC_PORT` (profile). Listens on 127.0.0.1; `LOG_LEVEL` as the
 * services (default `info`). Stops on SIGTERM.
 */
import * as grpc from '@grpc/grpc-js';
import type { Authenticator, Identity } from '@jwt-mesh/core';
import { createMeshClient } from '@jwt-mesh/fastify-auth';
import { buildApp as buildInventory, createProfileClient } from '@jwt-mesh/inventory';
import { buildApp as buildOrders } from '@jwt-mesh/orders';
import { buildApp as buildProfile, buildGrpcServer, GRPC_SERVICE } from '@jwt-mesh/profile';
import { loadProfileProto } from '@jwt-mesh/profile/proto';
import { createLogger, createMetrics, type Readiness } from '@jwt-mesh/runtime';

/** The identity every request gets: fixed, with every scope the chain's routes ask for. */
export const BENCH_IDENTITY: Identity = Object.freeze({
  sub: 'bench-noauth',
  jti: 'bench-noauth',
  sid: undefined,
  clientId: undefined,
  scopes: Object.freeze(['orders:read', 'inventory:read', 'profile:read']),
  roles: Object.freeze([]),
  exp: 0,
  iat: 0,
  claims: Object.freeze({}) as Identity['claims'],
});

/** An authenticator that allows everything without reading a token (bench only). */
export const allowAll: Authenticator = {
  decide: async () => ({ allow: true, identity: BENCH_IDENTITY }),
} as unknown as Authenticator;

/** A readiness that is always ready (there is no JWK Set or Redis to wait for). */
export const alwaysReady: Readiness = {
  report: () => ({ ready: true, checks: {} }),
  stop: () => undefined,
} as unknown as Readiness;

async function main(service: string): Promise<void> {
  const env = process.env;
  const port = Number(env['PORT'] ?? 0);
  const level = (env['LOG_LEVEL'] || 'info') as 'info';
  const logger = createLogger({ service, level });
  const metrics = createMetrics(service);
  const deps = { authenticator: allowAll, readiness: alwaysReady, logger, metrics };
  const closers: Array<() => Promise<void> | void> = [];
  let app;
  if (service === 'orders') {
    const inventory = createMeshClient({ baseUrl: env['UPSTREAM_URL'] ?? '', timeoutMs: 5000 });
    closers.push(() => inventory.close());
    app = await buildOrders({ ...deps, inventory });
  } else if (service === 'inventory') {
    const upstream = new URL(env['UPSTREAM_URL'] ?? '');
    const profile = createProfileClient(loadProfileProto().jwtmesh.profile.v1.ProfileService, upstream.host, env['UPSTREAM_AUTHORITY']);
    closers.push(() => profile.close());
    app = await buildInventory({ ...deps, profile });
  } else if (service === 'profile') {
    app = await buildProfile(deps);
    const { server, health } = buildGrpcServer(deps);
    await new Promise<number>((resolve, reject) =>
      server.bindAsync(`127.0.0.1:${Number(env['GRPC_PORT'] ?? 0)}`, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
    );
    for (const name of ['', GRPC_SERVICE]) health.setStatus(name, 'SERVING');
    closers.push(() => server.forceShutdown());
  } else {
    throw new Error(`unknown service "${service}" (expected orders, inventory or profile)`);
  }
  await app.listen({ port, host: '127.0.0.1' });
  process.once('SIGTERM', () => {
    void Promise.all([app.close(), ...closers.map((c) => c())]).finally(() => process.exit(0));
  });
}

if (process.argv[1] && /noauth-service\.[tj]s$/.test(process.argv[1])) {
  main(process.argv[2] ?? '').catch((err: unknown) => {
    process.stderr.write(`noauth-service: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  });
}
