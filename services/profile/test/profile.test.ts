/**
 * profile on its own: the gRPC hop verifies the token in `authorization` metadata through the
 * core and answers denials with the table's gRPC status plus RFC 6750 trailers.
 */
import * as grpc from '@grpc/grpc-js';
import { createLogger, createMetrics } from '@jwt-mesh/runtime';
import { captureLogs, readyTestStack, startTestIssuer, uniquePrefix } from '@jwt-mesh/runtime/testing';
import { service as healthService } from 'grpc-health-check';
import t from 'tap';
import { buildApp, buildGrpcServer, GRPC_SERVICE } from '../src/app.js';
import { loadProfileProto, type GetProfileResponse__Output } from '../src/proto.js';

const issuer = await startTestIssuer();
const stack = await readyTestStack(issuer, uniquePrefix('profile'));
const logger = createLogger({ service: 'profile', level: 'silent' });
const metrics = createMetrics('profile', { defaultMetrics: false });
const app = await buildApp({ authenticator: stack.authenticator, readiness: stack.readiness, logger, metrics });
const { server, health } = buildGrpcServer({ authenticator: stack.authenticator, readiness: stack.readiness, logger, metrics });
const grpcPort = await new Promise<number>((resolve, reject) =>
  server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
);
const Client = loadProfileProto().jwtmesh.profile.v1.ProfileService;
const client = new Client(`127.0.0.1:${grpcPort}`, grpc.credentials.createInsecure());
t.teardown(async () => {
  client.close();
  await new Promise<void>((r) => server.tryShutdown(() => r()));
  await app.close();
  await stack.close();
  await issuer.close();
});

function call(headers: Record<string, string>, subject = ''): Promise<{ err: grpc.ServiceError | null; res: GetProfileResponse__Output | undefined }> {
  const md = new grpc.Metadata();
  for (const [k, v] of Object.entries(headers)) md.set(k, v);
  return new Promise((resolve) => client.GetProfile({ subject }, md, { deadline: Date.now() + 5000 }, (err, res) => resolve({ err, res })));
}

t.test('GetProfile with profile:read: the caller profile and what the hop saw', async (t) => {
  const token = await issuer.mint({ sub: 'demo-alice', scope: 'profile:read', sid: 'sid-1', jti: 'jti-1' });
  const { err, res } = await call({
    authorization: `Bearer ${token}`,
    traceparent: '00-11111111111111111111111111111111-2222222222222222-01',
    'x-request-id': 'req-p-1',
  });
  t.equal(err, null);
  t.equal(res?.profile?.display_name, 'Alice Example');
  t.same(
    { ...res?.hop, scopes: [...(res?.hop?.scopes ?? [])] },
    { service: 'profile', transport: 'grpc', subject: 'demo-alice', sid: 'sid-1', jti: 'jti-1', trace_id: '11111111111111111111111111111111', request_id: 'req-p-1', scopes: ['profile:read'] },
  );
});

t.test('no token: UNAUTHENTICATED with a bare Bearer challenge trailer', async (t) => {
  const { err } = await call({});
  t.equal(err?.code, grpc.status.UNAUTHENTICATED);
  t.equal(err?.metadata.get('www-authenticate')[0], 'Bearer realm="profile"');
  t.equal(err?.metadata.get('auth-error-code')[0], 'credentials_missing');
});

t.test('a bad token: UNAUTHENTICATED invalid_token', async (t) => {
  const { err } = await call({ authorization: 'Bearer not.a.token' });
  t.equal(err?.code, grpc.status.UNAUTHENTICATED);
  t.match(String(err?.metadata.get('www-authenticate')[0]), /error="invalid_token"/);
});

t.test('missing profile:read: PERMISSION_DENIED with insufficient_scope and the scope in the challenge', async (t) => {
  const token = await issuer.mint({ scope: 'orders:read' });
  const { err } = await call({ authorization: `Bearer ${token}` });
  t.equal(err?.code, grpc.status.PERMISSION_DENIED);
  t.match(String(err?.metadata.get('www-authenticate')[0]), /^Bearer realm="profile", error="insufficient_scope", .*scope="profile:read"$/);
  t.equal(err?.metadata.get('auth-error-code')[0], 'insufficient_scope');
});

t.test("another subject's profile needs the admin role", async (t) => {
  const user = await issuer.mint({ sub: 'demo-bob', scope: 'profile:read', roles: ['user'] });
  const denied = await call({ authorization: `Bearer ${user}` }, 'demo-alice');
  t.equal(denied.err?.code, grpc.status.PERMISSION_DENIED);
  const admin = await issuer.mint({ sub: 'ops', scope: 'profile:read', roles: ['admin'] });
  const ok = await call({ authorization: `Bearer ${admin}` }, 'demo-alice');
  t.equal(ok.err, null);
  t.equal(ok.res?.profile?.subject, 'demo-alice');
  t.equal(ok.res?.hop?.subject, 'ops', 'the hop reports the caller, not the profile read');
});

t.test('HTTP GET /api/profile/me verifies the same way', async (t) => {
  const token = await issuer.mint({ sub: 'someone-new', scope: 'profile:read' });
  const res = await app.inject({ method: 'GET', url: '/api/profile/me', headers: { authorization: `Bearer ${token}` } });
  t.equal(res.statusCode, 200);
  t.equal(res.json().profile.subject, 'someone-new');
  t.equal(res.json().profile.tier, 'standard');
  const denied = await app.inject({ method: 'GET', url: '/api/profile/me', headers: { authorization: `Bearer ${await issuer.mint({ scope: '' })}` } });
  t.equal(denied.statusCode, 403);
});

t.test('grpc.health.v1 reports what the server sets', async (t) => {
  health.setStatus(GRPC_SERVICE, 'SERVING');
  const HealthClient = grpc.makeGenericClientConstructor(healthService as unknown as grpc.ServiceDefinition, 'Health');
  const hc = new HealthClient(`127.0.0.1:${grpcPort}`, grpc.credentials.createInsecure()) as unknown as {
    check(req: { service: string }, cb: (err: grpc.ServiceError | null, res: { status: string }) => void): void;
    close(): void;
  };
  const status = await new Promise<string>((resolve, reject) => hc.check({ service: GRPC_SERVICE }, (err, res) => (err ? reject(err) : resolve(res.status))));
  t.equal(status, 'SERVING');
  hc.close();
});

t.test('gRPC logs: one line for a deny (info) and one for a handler failure (error, with the error), no token', async (t) => {
  const logs = captureLogs();
  const log = createLogger({ service: 'profile', stream: logs.stream });
  const failing = new Map() as Map<string, never>;
  failing.get = () => {
    throw new Error('profile store down');
  };
  const g = buildGrpcServer({ authenticator: stack.authenticator, readiness: stack.readiness, logger: log, metrics: createMetrics('profile', { defaultMetrics: false }), profiles: failing });
  const port = await new Promise<number>((resolve, reject) => g.server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
  const c = new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  t.teardown(async () => {
    c.close();
    await new Promise<void>((r) => g.server.tryShutdown(() => r()));
  });
  const ask = (md: grpc.Metadata) => new Promise<grpc.ServiceError | null>((resolve) => c.GetProfile({ subject: '' }, md, { deadline: Date.now() + 5000 }, (err) => resolve(err)));
  const denied = new grpc.Metadata();
  denied.set('x-request-id', 'log-deny');
  t.equal((await ask(denied))?.code, grpc.status.UNAUTHENTICATED);
  const failed = new grpc.Metadata();
  failed.set('authorization', `Bearer ${await issuer.mint({ scope: 'profile:read' })}`);
  failed.set('x-request-id', 'log-fail');
  t.equal((await ask(failed))?.code, grpc.status.INTERNAL);
  log.flush();
  const lines = logs.lines();
  const d = lines.filter((l) => l['reqId'] === 'log-deny');
  t.equal(d.length, 1, 'one line for the deny');
  t.equal(d[0]?.['level'], 30, 'at info');
  const f = lines.filter((l) => l['reqId'] === 'log-fail') as Array<{ level: number; err?: { message: string } }>;
  t.equal(f.length, 1, 'one line for the failure');
  t.equal(f[0]?.level, 50, 'at error');
  t.equal(f[0]?.err?.message, 'profile store down', 'with the error');
  t.notOk(logs.text().includes('Bearer '), 'no token in the logs');
});
