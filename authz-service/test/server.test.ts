/**
 * The gRPC server around the handler: grpc.health.v1 status and graceful drain (in-flight
 * calls complete; a call that never finishes is cut off after the bounded wait).
 */
import t from 'tap';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { protoPath as healthProtoPath } from 'grpc-health-check';
import { pino } from 'pino';
import type { Authenticator } from '@jwt-mesh/core';
import { AUTHORIZATION_SERVICE, buildServer } from '../src/server.js';
import { GRPC, callCheck, fixture, makeClient } from './helpers/harness.js';

type HealthClient = grpc.Client & {
  check(req: { service: string }, cb: (err: grpc.ServiceError | null, res?: { status: string }) => void): void;
};
const healthPkg = grpc.loadPackageDefinition(
  protoLoader.loadSync(healthProtoPath, { keepCase: true, enums: String, defaults: true }),
) as unknown as { grpc: { health: { v1: { Health: new (addr: string, creds: grpc.ChannelCredentials) => HealthClient } } } };

function healthOf(port: number, service: string): Promise<string> {
  const client = new healthPkg.grpc.health.v1.Health(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  return new Promise((resolve, reject) =>
    client.check({ service }, (err, res) => {
      client.close();
      if (err || !res) reject(err ?? new Error('no response'));
      else resolve(res.status);
    }),
  );
}

/** Allows every request after `ms` (an injected slowness); `entered` counts calls that reached it. */
const allowAfter = (ms: number): Authenticator & { entered: number } => {
  const a = {
    entered: 0,
    decide: () => {
      a.entered++;
      return new Promise<{ allow: true; identity: null }>((resolve) => setTimeout(() => resolve({ allow: true, identity: null }), ms));
    },
  };
  return a;
};

async function until(cond: () => boolean): Promise<void> {
  while (!cond()) await new Promise((r) => setTimeout(r, 5));
}

t.test('health: NOT_SERVING until ready, SERVING, NOT_SERVING while draining', async (t) => {
  const authz = buildServer({ authenticator: allowAfter(0), deadlineMs: 100, logger: pino({ level: 'silent' }), tls: 'insecure-plaintext' });
  const port = await authz.start(0);
  t.teardown(() => authz.drain(100));
  t.equal(await healthOf(port, ''), 'NOT_SERVING', 'starts NOT_SERVING');
  authz.setHealth('SERVING');
  t.equal(await healthOf(port, ''), 'SERVING');
  t.equal(await healthOf(port, AUTHORIZATION_SERVICE), 'SERVING', 'per-service status too');
  authz.setHealth('NOT_SERVING');
  t.equal(await healthOf(port, AUTHORIZATION_SERVICE), 'NOT_SERVING');
});

t.test('drain: in-flight calls complete, then the server stops', async (t) => {
  const slow = allowAfter(150);
  const authz = buildServer({ authenticator: slow, deadlineMs: 5_000, logger: pino({ level: 'silent' }), tls: 'insecure-plaintext' });
  const port = await authz.start(0);
  authz.setHealth('SERVING');
  const client = makeClient(port);
  t.teardown(() => client.close());
  t.equal((await callCheck(client, fixture('get-jwks'))).status?.code, GRPC.OK, 'warm connection');
  const inflight = Array.from({ length: 10 }, () => callCheck(client, fixture('get-jwks')));
  await until(() => slow.entered === 11); // the 10 calls are inside the handler
  const how = await authz.drain(5_000);
  const results = await Promise.allSettled(inflight);
  t.equal(how, 'graceful');
  t.equal(results.filter((r) => r.status === 'fulfilled' && r.value.status?.code === GRPC.OK).length, 10, 'all 10 in-flight calls answered OK');
  const after = await callCheck(client, fixture('get-jwks')).then(() => 'answered', (e: grpc.ServiceError) => e.code);
  t.equal(after, grpc.status.UNAVAILABLE, 'no new calls after the drain');
});

t.test('drain: a call that never finishes is cut off after the bounded wait', async (t) => {
  let entered = 0;
  const hanging: Authenticator = {
    decide: () => {
      entered++;
      return new Promise(() => undefined);
    },
  };
  const authz = buildServer({ authenticator: hanging, deadlineMs: 60_000, logger: pino({ level: 'silent' }), tls: 'insecure-plaintext' });
  const port = await authz.start(0);
  const client = makeClient(port);
  t.teardown(() => client.close());
  const stuck = callCheck(client, fixture('get-jwks')).then(() => 'answered', (e: grpc.ServiceError) => e.code);
  await until(() => entered === 1);
  t.equal(await authz.drain(100), 'forced');
  t.equal(await stuck, grpc.status.CANCELLED, 'the stuck call is cancelled, not answered');
});
