/**
 * The real entry point (`src/main.ts`) as a child process: start-up errors name the variable,
 * file and field; a full start over mTLS becomes SERVING (gRPC health and /healthz) and exposes
 * /metrics; SIGTERM drains (health NOT_SERVING, in-flight calls complete, exit 0).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { protoPath as healthProtoPath } from 'grpc-health-check';
import { makeTestCerts, type TestCerts } from './helpers/certs.js';
import { spawnMain } from './helpers/child.js';
import { startDelayProxy } from './helpers/delay-proxy.js';
import { AUDIENCE, GRPC, ISSUER, REDIS_URL, callCheck, fixture, makeClient, startIssuer, syncedPrefix, uniquePrefix, type Issuer } from './helpers/harness.js';

let certs: TestCerts;
let issuer: Issuer;
let dir: string;

t.before(async () => {
  certs = makeTestCerts();
  issuer = await startIssuer();
  dir = mkdtempSync(join(tmpdir(), 'jwt-mesh-authz-main-'));
});
t.teardown(async () => {
  await issuer.close();
  certs.cleanup();
  rmSync(dir, { recursive: true, force: true });
});

function baseEnv(over: Record<string, string> = {}): Record<string, string> {
  return {
    AUTHZ_PORT: '0',
    AUTHZ_METRICS_PORT: '0',
    AUTHZ_TLS_CERT: certs.files.serverCert,
    AUTHZ_TLS_KEY: certs.files.serverKey,
    AUTHZ_TLS_CA: certs.files.ca,
    JWT_ISSUER: ISSUER,
    JWT_AUDIENCE: AUDIENCE,
    JWKS_URL: issuer.jwksUrl,
    REDIS_URL,
    REDIS_PREFIX: uniquePrefix(),
    ...over,
  };
}

t.test('start-up errors name the variable, the file and the field', async (t) => {
  const badField = join(dir, 'bad-field.yaml');
  writeFileSync(badField, 'default: deny\nrules:\n  - id: orders\n    pathPrefix: api/orders\n    scopes: [orders:read]\n');
  const typo = join(dir, 'typo.yaml');
  writeFileSync(typo, 'rules:\n  - id: orders\n    pathPrefix: /api/orders\n    scope: [orders:read]\n');
  const broken = join(dir, 'broken.yaml');
  writeFileSync(broken, 'rules:\n  - id: a\n    pathPrefix: /a\n  - id: [unclosed\n');
  const cases: Array<[string, Record<string, string>, RegExp]> = [
    ['bad AUTHZ_PORT', { AUTHZ_PORT: 'nine' }, /AUTHZ_PORT: must be a whole number/],
    ['TLS without a certificate', { AUTHZ_TLS_CERT: '' }, /AUTHZ_TLS_CERT/],
    ['unreadable key file', { AUTHZ_TLS_KEY: join(dir, 'nope.key') }, /AUTHZ_TLS_KEY.*nope\.key/],
    ['bad shared verifier setting', { JWT_CLOCK_TOLERANCE_SEC: 'soon' }, /JWT_CLOCK_TOLERANCE_SEC/],
    ['invalid policy field', { AUTHZ_POLICY_FILE: badField }, /bad-field\.yaml.*rules\[0\]\.pathPrefix/],
    ['unknown policy key (a typo that would drop a requirement)', { AUTHZ_POLICY_FILE: typo }, /typo\.yaml.*rules\[0\]/],
    ['YAML syntax error', { AUTHZ_POLICY_FILE: broken }, /broken\.yaml.*not valid YAML at line \d+/],
    ['missing policy file', { AUTHZ_POLICY_FILE: join(dir, 'absent.yaml') }, /absent\.yaml.*cannot be read \(ENOENT\)/],
  ];
  // Two at a time (2 cores): each start pays the tsx start-up.
  for (let i = 0; i < cases.length; i += 2) {
    const batch = cases.slice(i, i + 2).map(([name, env, named]) => ({ name, named, run: spawnMain(baseEnv(env)) }));
    for (const { name, named, run } of batch) {
      t.equal(await run.exited, 1, `${name}: exit 1`);
      t.match(run.output(), named, `${name}: named in the message`);
      t.notMatch(run.output(), /"stack"/, `${name}: a message, not a stack trace`);
    }
  }
});

type HealthClient = grpc.Client & {
  check(req: { service: string }, cb: (err: grpc.ServiceError | null, res?: { status: string }) => void): void;
};
const healthPkg = grpc.loadPackageDefinition(
  protoLoader.loadSync(healthProtoPath, { keepCase: true, enums: String, defaults: true }),
) as unknown as { grpc: { health: { v1: { Health: new (a: string, c: grpc.ChannelCredentials, o?: grpc.ChannelOptions) => HealthClient } } } };

/**
 * The real entry point over mTLS with Redis behind a TCP proxy (injected latency or a partition),
 * started and ready, with a Check client and a grpc.health.v1 client.
 */
async function startBehindProxy(t: Test, env: Record<string, string> = {}) {
  const proxy = await startDelayProxy(Number(new URL(REDIS_URL).port || 6379), new URL(REDIS_URL).hostname);
  t.teardown(() => proxy.close());
  const db = new URL(REDIS_URL).pathname || '/0';
  const main = spawnMain(baseEnv({ REDIS_URL: `redis://127.0.0.1:${proxy.port}${db}`, REDIS_PREFIX: await syncedPrefix(), ...env }));
  t.teardown(() => main.kill('SIGKILL'));
  const listening = await main.waitForLog((l) => l.msg === 'authz-service listening');
  const port = Number(listening.port);
  const metricsPort = Number(listening.metricsPort);
  await main.waitForLog((l) => typeof l.msg === 'string' && l.msg.startsWith('ready'));

  const creds = grpc.credentials.createSsl(certs.caCert, certs.clientKey, certs.clientCert);
  const opts = { 'grpc.ssl_target_name_override': 'localhost' };
  const health = new healthPkg.grpc.health.v1.Health(`127.0.0.1:${port}`, creds, opts);
  t.teardown(() => health.close());
  const client = makeClient(port, creds, opts);
  t.teardown(() => client.close());
  const healthStatus = () =>
    new Promise<string>((resolve, reject) =>
      health.check({ service: 'envoy.service.auth.v3.Authorization' }, (err, res) => (err || !res ? reject(err) : resolve(res.status))),
    );
  return { proxy, main, metricsPort, client, healthStatus };
}

t.test('a full start over mTLS: SERVING, /healthz, /metrics, Check, then SIGTERM drains', async (t) => {
  // Redis behind a proxy that can add latency (an injected fault) to hold calls in flight.
  const { proxy, main, metricsPort, client, healthStatus } = await startBehindProxy(t, { AUTHZ_DEADLINE_MS: '2000', AUTHZ_DRAIN_TIMEOUT_MS: '5000' });
  t.equal(await healthStatus(), 'SERVING', 'grpc.health.v1: SERVING once Redis and the JWKS are ready');

  const healthz = await fetch(`http://127.0.0.1:${metricsPort}/healthz`);
  t.equal(healthz.status, 200);
  t.same(await healthz.json(), { status: 'SERVING' });

  t.equal((await callCheck(client, fixture('get-orders', await issuer.mint()))).status?.code, GRPC.OK, 'Check allowed');
  t.equal((await callCheck(client, fixture('get-orders-no-token'))).denied_response?.status?.code, 'Unauthorized', 'Check denied');

  const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  t.match(metrics, /jwtmesh_authz_decisions_total\{outcome="allow",reason="ok"\} 1/);
  t.match(metrics, /jwtmesh_authz_decisions_total\{outcome="deny",reason="credentials_missing"\} 1/);
  t.match(metrics, /jwtmesh_verified_token_cache_lookups_total\{result="miss"\} 1\n/, 'the one token was verified by signature once');
  t.match(metrics, /jwtmesh_verified_token_cache_lookups_total\{result="hit"\} 0\n/);
  t.match(metrics, /jwtmesh_revocation_cache_lookups_total\{result="miss"\} 1\n/, 'its revocation lookup made one Redis round trip');
  t.match(metrics, /jwtmesh_jwks_fetch_failures_total\{reason="tls"\} 0\n/, 'the failed JWK Set fetches on the same registry, every reason from the start');
  t.match(metrics, /jwtmesh_authz_check_duration_seconds_bucket/);
  t.match(metrics, /process_cpu_user_seconds_total/, 'default process metrics');

  // Hold 10 calls in flight: their revocation lookups wait 150 ms in the proxy (below the
  // core's 250 ms lookup timeout), and SIGTERM arrives while they wait.
  const tokens = await Promise.all(Array.from({ length: 10 }, () => issuer.mint()));
  proxy.delayMs = 150;
  const before = proxy.delayed;
  const inflight = tokens.map((tok) => callCheck(client, fixture('get-orders', tok)));
  while (proxy.delayed === before) await new Promise((r) => setTimeout(r, 2));
  main.kill('SIGTERM');
  const results = await Promise.allSettled(inflight);
  t.equal(
    results.filter((r) => r.status === 'fulfilled' && r.value.status?.code === GRPC.OK).length,
    10,
    'every in-flight call completed with its real decision',
  );
  t.equal(await main.exited, 0, 'exit 0 after the drain');
  const stopped = main.logs.find((l) => l.msg === 'stopped');
  t.equal(stopped?.how, 'graceful');
  t.ok(main.logs.some((l) => typeof l.msg === 'string' && l.msg.startsWith('draining')), 'logged the drain');
  t.notOk(main.output().includes(tokens[0]!), 'no token in the logs');
});

t.test('after start, health follows the Redis connections: NOT_SERVING while cut off, SERVING again once back', async (t) => {
  const { proxy, main, metricsPort, client, healthStatus: status } = await startBehindProxy(t);
  const waitForStatus = async (want: string) => {
    for (let i = 0; i < 200; i++) {
      if ((await status()) === want) return true;
      await new Promise((r) => setTimeout(r, 50));
    }
    return false;
  };
  t.equal(await status(), 'SERVING');

  proxy.partitioned = true; // this replica alone loses Redis
  t.ok(await waitForStatus('NOT_SERVING'), 'NOT_SERVING once its Redis connections are gone');
  t.equal((await fetch(`http://127.0.0.1:${metricsPort}/healthz`)).status, 503, '/healthz follows');
  const denied = await callCheck(client, fixture('get-orders', await issuer.mint()));
  t.equal(denied.denied_response?.status?.code, 'ServiceUnavailable', 'a Check meanwhile is still answered, 503 (fail closed)');
  t.ok(main.logs.some((l) => l.msg === 'Redis revocation store lost; health NOT_SERVING'), 'logged');

  proxy.partitioned = false;
  t.ok(await waitForStatus('SERVING'), 'SERVING again once it reconnected');
  t.equal((await callCheck(client, fixture('get-orders', await issuer.mint()))).status?.code, GRPC.OK, 'and Checks are allowed again');
  t.ok(main.logs.some((l) => l.msg === 'Redis revocation store back; health SERVING'), 'logged');
});
