/**
 * OpenTelemetry spans of the ext_authz Check, over real gRPC, with the real core, a real JWKS
 * endpoint and real Redis revocation; spans go to the SDK's InMemorySpanExporter registered
 * in-process (installTestTracing), i.e. the same instrumented path as with the OTLP exporter.
 */
import t, { type Test } from 'tap';
import * as grpc from '@grpc/grpc-js';
import { SpanKind } from '@opentelemetry/api';
import { installTestTracing, type ReadableSpan, type TestTracing } from '@jwt-mesh/tracing/testing';
import type { CheckRequest } from '../src/generated/envoy/service/auth/v3/CheckRequest.js';
import type { CheckResponse__Output } from '../src/generated/envoy/service/auth/v3/CheckResponse.js';
import { GRPC, fixture, startAuthz, startIssuer, syncedPrefix, type Issuer, type RunningAuthz } from './helpers/harness.js';

const TRACE_ID = '0af7651916cd43dd8448eb211c80319c';
const ENVOY_SPAN = 'b7ad6b7169203331';
/** The traceparent in the get-orders fixture's request headers (the client's). */
const FIXTURE_TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const FIXTURE_PARENT = '00f067aa0ba902b7';

let tracing: TestTracing;
let issuer: Issuer;
let srv: RunningAuthz;

t.before(async () => {
  tracing = installTestTracing('authz-service');
  issuer = await startIssuer();
  // A long revocation-cache lifetime: the second lookup of a token is answered from the cache.
  srv = await startAuthz({ issuer, prefix: await syncedPrefix(), cacheTtlMs: 60_000 });
});
t.teardown(async () => {
  await srv.close();
  await issuer.close();
  await tracing.uninstall();
});
t.beforeEach(() => tracing.reset());

/** One Check with the given gRPC metadata (what Envoy's tracer injects). */
function checkWith(req: CheckRequest, metadata: Record<string, string>): Promise<CheckResponse__Output> {
  const md = new grpc.Metadata();
  for (const [k, v] of Object.entries(metadata)) md.set(k, v);
  return new Promise((resolve, reject) => {
    srv.client.Check(req, md, { deadline: Date.now() + 5_000 }, (err, res) => (err || !res ? reject(err ?? new Error('no response')) : resolve(res)));
  });
}

/** The one span named `name` whose parent is `parent` (fails the test otherwise). */
function childOf(t: Test, parent: ReadableSpan, name: string): ReadableSpan {
  const found = tracing.named(name).filter((s) => s.parentSpanContext?.spanId === parent.spanContext().spanId);
  t.equal(found.length, 1, `one ${name} span under ${parent.name}`);
  return found[0]!;
}

/** The spans of one trace, keyed by the Check span. */
function checkSpans(): ReadableSpan[] {
  return tracing.named('authz.Check').sort((a, b) => a.startTime[0] - b.startTime[0] || a.startTime[1] - b.startTime[1]);
}

t.test('Check with a traceparent in the gRPC metadata: span tree, cache miss then hit, kid, outcome', async (t) => {
  const token = await issuer.mint({ scope: 'orders:read' });
  const req = fixture('get-orders', token);
  t.equal((await checkWith(req, { traceparent: `00-${TRACE_ID}-${ENVOY_SPAN}-01` })).status?.code, GRPC.OK);
  t.equal((await checkWith(req, { traceparent: `00-${TRACE_ID}-${ENVOY_SPAN}-01` })).status?.code, GRPC.OK);

  const checks = checkSpans();
  t.equal(checks.length, 2, 'one authz.Check span per Check');
  const hits: unknown[] = [];
  const sources: unknown[] = [];
  for (const check of checks) {
    t.equal(check.kind, SpanKind.SERVER);
    t.equal(check.spanContext().traceId, TRACE_ID, 'the trace continues from the metadata traceparent');
    t.equal(check.parentSpanContext?.spanId, ENVOY_SPAN, "the Check's parent is Envoy's span");
    t.equal(check.parentSpanContext?.isRemote, true);
    t.match(check.attributes, {
      'rpc.system.name': 'grpc',
      'rpc.system': 'grpc',
      'rpc.service': 'envoy.service.auth.v3.Authorization',
      'rpc.method': 'envoy.service.auth.v3.Authorization/Check',
      'rpc.status_code': 'OK',
      'http.request.method': 'GET',
      'url.path': '/api/orders',
      'jwt_mesh.policy.decision': 'allow',
      'jwt_mesh.outcome': 'ok',
    });
    t.type(check.attributes['jwt_mesh.policy.rule'], 'string', 'the matched rule id');

    const authn = childOf(t, check, 'authenticate');
    t.equal(authn.attributes['jwt_mesh.outcome'], 'ok');
    const verify = childOf(t, authn, 'jwt.verify');
    t.equal(verify.attributes['jwt_mesh.kid'], issuer.kid);
    t.equal(verify.attributes['jwt_mesh.outcome'], 'ok');
    hits.push(verify.attributes['jwt_mesh.verified_cache.hit']);
    const revocation = childOf(t, authn, 'revocation.check');
    t.equal(revocation.attributes['jwt_mesh.revocation.result'], 'none');
    sources.push(revocation.attributes['jwt_mesh.revocation.source']);
    const policy = childOf(t, authn, 'policy.authorize');
    t.equal(policy.attributes['jwt_mesh.policy.decision'], 'allow');
    t.equal(policy.attributes['jwt_mesh.policy.rule'], check.attributes['jwt_mesh.policy.rule']);
  }
  t.same(hits, [false, true], 'verified-token cache: miss, then hit on the repeated token');
  t.same(sources, ['redis', 'cache'], 'revocation: Redis first, then the in-process cache');
});

t.test('no traceparent in the metadata: the checked request\'s traceparent is the parent', async (t) => {
  const token = await issuer.mint();
  t.equal((await checkWith(fixture('get-orders', token), {})).status?.code, GRPC.OK);
  const [check] = checkSpans();
  t.equal(check?.spanContext().traceId, FIXTURE_TRACE_ID);
  t.equal(check?.parentSpanContext?.spanId, FIXTURE_PARENT);
});

t.test('an invalid metadata traceparent falls back to the request headers', async (t) => {
  const token = await issuer.mint();
  await checkWith(fixture('get-orders', token), { traceparent: '00-zz-not-a-traceparent' });
  t.equal(checkSpans()[0]?.parentSpanContext?.spanId, FIXTURE_PARENT);
});

t.test('an unsampled parent (flags 00): parent-based sampling records nothing', async (t) => {
  const token = await issuer.mint();
  t.equal((await checkWith(fixture('get-orders', token), { traceparent: `00-${TRACE_ID}-${ENVOY_SPAN}-00` })).status?.code, GRPC.OK);
  t.same(tracing.spans(), [], 'no span exported');
});

t.test('a bad token: deny outcome and reason on the spans, kid from the header', async (t) => {
  const token = await issuer.mint({ exp: Math.floor(Date.now() / 1000) - 3600, iat: Math.floor(Date.now() / 1000) - 3700 });
  const res = await checkWith(fixture('get-orders', token), { traceparent: `00-${TRACE_ID}-${ENVOY_SPAN}-01` });
  t.equal(res.status?.code, GRPC.UNAUTHENTICATED);
  const [check] = checkSpans();
  t.match(check?.attributes, { 'jwt_mesh.policy.decision': 'deny', 'jwt_mesh.outcome': 'invalid_token', 'jwt_mesh.reason': 'token_expired', 'error.type': 'token_expired' });
  const verify = childOf(t, childOf(t, check!, 'authenticate'), 'jwt.verify');
  t.match(verify.attributes, { 'jwt_mesh.verified_cache.hit': false, 'jwt_mesh.kid': issuer.kid, 'jwt_mesh.outcome': 'invalid_token' });
  t.equal(tracing.named('revocation.check').length, 0, 'no revocation lookup for a token that failed verification');
});

t.test('no token: outcome unauthenticated, policy span absent until a token is examined', async (t) => {
  const res = await checkWith(fixture('get-orders-no-token'), {});
  t.equal(res.status?.code, GRPC.UNAUTHENTICATED);
  t.equal(checkSpans()[0]?.attributes['jwt_mesh.outcome'], 'unauthenticated');
  t.equal(tracing.named('jwt.verify').length, 0);
});

t.test('a revoked token: revocation.check says what revoked it', async (t) => {
  const token = await issuer.mint({ jti: `revoked-${Date.now()}` });
  const jti = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()).jti as string;
  await srv.redis!.revoke({ kind: 'jti', id: jti }, Math.floor(Date.now() / 1000) + 600);
  const res = await checkWith(fixture('get-orders', token), {});
  t.equal(res.status?.code, GRPC.UNAUTHENTICATED);
  const [revocation] = tracing.named('revocation.check');
  t.match(revocation?.attributes, { 'jwt_mesh.revocation.result': 'jti', 'jwt_mesh.outcome': 'invalid_token', 'jwt_mesh.revocation.source': 'redis' });
});

t.test('no span holds the token or the Authorization header, whatever the outcome', async (t) => {
  const good = await issuer.mint();
  const expired = await issuer.mint({ exp: Math.floor(Date.now() / 1000) - 3600, iat: Math.floor(Date.now() / 1000) - 3700 });
  const garbage = 'not.a.jwt-secret-garbage-value';
  for (const token of [good, good, expired, garbage]) await checkWith(fixture('get-orders', token), { traceparent: `00-${TRACE_ID}-${ENVOY_SPAN}-01` });
  const dump = tracing.dump();
  t.ok(tracing.spans().length >= 12, 'spans were recorded');
  for (const token of [good, expired, garbage]) {
    t.notOk(dump.includes(token), 'the token is in no span');
    t.notOk(dump.includes(token.split('.').at(-1)!), 'nor its signature part');
  }
  t.notOk(dump.includes('Bearer'), 'no Authorization value');
  t.notOk(/http\.request\.header|"authorization"/i.test(dump), 'no request header attribute at all (the gRPC service is named Authorization, a header is not)');
});
