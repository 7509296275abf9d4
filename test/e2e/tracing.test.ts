/**
 * OpenTelemetry tracing end to end (issue 14): the stack started with tracing on and its own OTLP
 * receiver, exactly as `make up TRACING=on` runs it. Real Envoy proxies with their OpenTelemetry
 * tracer (envoy/src/render.ts), the Node processes with `@jwt-mesh/tracing`'s `startTracing`
 * (turned on by the `OTEL_EXPORTER_OTLP_ENDPOINT` the stack gives them), real authz-service,
 * auth-service, PostgreSQL and Redis.
 *
 * One request through edge -> orders -> inventory -> profile (gRPC) must give one trace: the
 * edge's span at the top, the ext_authz Check under the edge, each service under its own sidecar,
 * each sidecar's inbound span under the caller's span, the verification spans with the
 * verified-token cache attribute, and no token anywhere in any span. A request whose traceparent
 * says "not sampled" must give no span at all.
 */
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { showTrace, type StoredSpan, type TraceSummary } from '@jwt-mesh/stack';
import { send, startE2e, type Answer, type E2e } from './helpers.js';

t.setTimeout(420_000);

let e2e: E2e;
let receiver: string;

/** The verified-token cache attribute of the verifiers' spans (@jwt-mesh/core `JWT_MESH_ATTR.VERIFIED_CACHE_HIT`). */
const CACHE_HIT = 'jwt_mesh.verified_cache.hit';

t.before(async () => {
  e2e = await startE2e(t, { name: 'tracing', redisDb: 14, tracing: { edgeSamplePercent: 100 } });
  receiver = e2e.stack.state.tracing?.receiver as string;
});

async function getJson<T>(path: string): Promise<{ status: number; json: T }> {
  const r = await send({ base: receiver, path });
  return { status: r.status, json: (r.json ?? {}) as T };
}

/**
 * Waits until the receiver holds trace `traceId`, structurally complete (one top span, the
 * edge's) and with no new span for 2 s (every process flushes about once a second); gives up
 * after `limitMs` and returns what it has.
 */
async function settledTrace(traceId: string, limitMs = 30_000): Promise<{ summary: TraceSummary | undefined; spans: StoredSpan[] }> {
  const deadline = Date.now() + limitMs;
  let summary: TraceSummary | undefined;
  for (;;) {
    const list = await getJson<{ traces: TraceSummary[] }>('/api/traces');
    summary = list.json.traces.find((x) => x.traceId === traceId);
    if ((summary?.complete && summary.quietMs >= 2000) || Date.now() > deadline) break;
    await sleep(250);
  }
  const one = await getJson<{ spans: StoredSpan[] }>(`/api/traces/${traceId}`);
  return { summary, spans: one.status === 200 ? one.json.spans : [] };
}

const hopsOf = (a: Answer) => (Array.isArray(a.json?.['hops']) ? (a.json['hops'] as Array<{ service: string; traceId: string }>) : []);

t.test('one request through the chain is one trace: every proxy and process, correctly parented, no token in any span', async (t) => {
  const { access, refresh } = await e2e.login(e2e.users.alice);
  // No traceparent: the edge starts the trace (it samples 100 % here) and every hop follows.
  const r = await send({ base: e2e.edge, path: '/api/orders/ord-1001', headers: { authorization: `Bearer ${access}` } });
  t.equal(r.status, 200, 'the chain answered 200');
  const traceId = hopsOf(r)[0]?.traceId ?? '';
  t.match(traceId, /^[0-9a-f]{32}$/, 'orders saw a trace id started by the edge');
  t.ok(hopsOf(r).every((h) => h.traceId === traceId), 'every hop continued it');

  const { summary, spans } = await settledTrace(traceId);
  t.ok(summary, 'the receiver holds the trace');
  t.equal(summary?.complete, true, 'complete: one top span, and it is the edge\'s');
  const byId = new Map(spans.map((s) => [s.spanId, s]));
  const parentOf = (s: StoredSpan) => (s.parentSpanId ? byId.get(s.parentSpanId) : undefined);
  const of = (service: string) => spans.filter((s) => s.serviceName === service);
  /** The first span of `service` whose parent belongs to another service: where the hop entered it. */
  const entry = (service: string) => of(service).find((s) => parentOf(s)?.serviceName !== service);
  const ancestors = (s: StoredSpan) => {
    const out: StoredSpan[] = [];
    for (let p = parentOf(s); p && out.length < 100; p = parentOf(p)) out.push(p);
    return out;
  };

  const services = new Set(spans.map((s) => s.serviceName));
  for (const s of ['edge', 'authz-service', 'sidecar-orders', 'orders', 'sidecar-inventory', 'inventory', 'sidecar-profile', 'profile']) {
    t.ok(services.has(s), `spans from ${s}`);
  }
  t.equal(spans.filter((s) => !parentOf(s)).length, 1, 'one span without a parent in the trace');
  const top = spans.find((s) => !parentOf(s));
  t.equal(top?.serviceName, 'edge', 'the top span is the edge\'s');
  t.equal(top?.name, 'edge /api/orders', 'named after its route');
  t.equal(top?.parentSpanId, null, 'the edge started the trace itself');

  // ext_authz: the edge's Check call carries the context, so the authz-service's span is under the edge's.
  const authz = entry('authz-service');
  t.equal(parentOf(authz as StoredSpan)?.serviceName, 'edge', 'the authz-service Check span is a child of an edge span (the ext_authz call)');
  t.ok(ancestors(authz as StoredSpan).includes(top as StoredSpan), '... under the edge\'s request span');

  // Each hop: the sidecar's inbound span under the caller's span, the service under its sidecar.
  const hops: Array<[string, string, string]> = [
    ['orders', 'edge', 'inbound orders'],
    ['inventory', 'sidecar-orders', 'inbound inventory'],
    ['profile', 'sidecar-inventory', 'inbound profile gRPC'],
  ];
  for (const [service, caller, inbound] of hops) {
    const sidecarEntry = entry(`sidecar-${service}`);
    t.equal(sidecarEntry?.name, inbound, `sidecar-${service}: the request entered through "${inbound}"`);
    t.equal(sidecarEntry?.kind, 'server');
    t.equal(parentOf(sidecarEntry as StoredSpan)?.serviceName, caller, `sidecar-${service} inbound is a child of ${caller}`);
    const app = entry(service);
    t.equal(parentOf(app as StoredSpan)?.spanId, sidecarEntry?.spanId, `${service}'s first span is a child of its sidecar's inbound span`);
  }
  for (const [caller, callee] of [['orders', 'inventory'], ['inventory', 'profile']] as const) {
    const outbound = of(`sidecar-${caller}`).find((s) => s.name === `outbound ${callee}`);
    t.equal(outbound?.kind, 'client', `sidecar-${caller} outbound ${callee} is a CLIENT span`);
    t.ok(outbound && ancestors(outbound).some((a) => a.serviceName === caller), `... under a span of ${caller} (the app's own call)`);
  }

  // Every verifier recorded whether the verified-token cache answered.
  for (const s of ['authz-service', 'orders', 'inventory', 'profile']) {
    const verification = of(s).filter((x) => typeof x.attributes[CACHE_HIT] === 'boolean');
    t.ok(verification.length > 0, `${s}: a verification span with ${CACHE_HIT}`);
  }

  // No credential anywhere: names, attributes, resources, status messages.
  const dump = JSON.stringify(spans);
  const [h, p, sig] = access.split('.') as [string, string, string];
  t.notOk(dump.includes(access), 'the access token is in no span');
  t.notOk(dump.includes(sig) || dump.includes(p) || dump.includes(h), 'nor any of its three parts');
  t.notOk(dump.includes(refresh), 'nor the refresh token');
  t.notOk(dump.includes(e2e.users.alice.password), 'nor the password');
  t.notOk(/bearer\s+ey/i.test(dump), 'no Authorization value');

  // What make trace prints for it.
  const shown = await showTrace({ receiver, traceId });
  for (const s of ['edge', 'authz-service', 'sidecar-orders', 'orders', 'inventory', 'profile']) t.match(shown.text, new RegExp(`^ *${s}  `, 'm'), `the waterfall has a line for ${s}`);
  t.match(shown.text, new RegExp(`^trace ${traceId}: ${spans.length} spans`, 'm'));
});

t.test('a request whose traceparent is not sampled leaves no span anywhere; the next sampled one is traced', async (t) => {
  const { access } = await e2e.login(e2e.users.alice);
  const unsampled = randomBytes(16).toString('hex');
  const a = await send({
    base: e2e.edge,
    path: '/api/orders/ord-1002',
    headers: { authorization: `Bearer ${access}`, traceparent: `00-${unsampled}-${randomBytes(8).toString('hex')}-00` },
  });
  t.equal(a.status, 200);
  t.ok(hopsOf(a).every((h) => h.traceId === unsampled), 'every hop kept the client\'s trace id');
  // Sent after it: once this trace has settled, every process has flushed what it had of the first.
  const sampled = randomBytes(16).toString('hex');
  const b = await send({
    base: e2e.edge,
    path: '/api/orders/ord-1002',
    headers: { authorization: `Bearer ${access}`, traceparent: `00-${sampled}-${randomBytes(8).toString('hex')}-01` },
  });
  t.equal(b.status, 200);
  const { summary, spans } = await settledTrace(sampled);
  t.equal(summary?.complete, true, 'the sampled request: a complete trace');
  t.ok(spans.some((s) => s.serviceName === 'profile'), '... down to profile');
  t.equal(spans.find((s) => s.serviceName === 'edge' && s.name === 'edge /api/orders')?.parentSpanId?.length, 16, 'its edge span is a child of the client\'s span');
  t.equal((await getJson(`/api/traces/${unsampled}`)).status, 404, 'the unsampled request: no span from any proxy or process');
});

t.test('a token a client puts in the query string reaches no span (Envoy\'s http.url is cut at the query)', async (t) => {
  const { access } = await e2e.login(e2e.users.alice);
  const traceId = randomBytes(16).toString('hex');
  const r = await send({
    base: e2e.edge,
    path: `/api/orders/ord-1001?access_token=${access}`,
    headers: { traceparent: `00-${traceId}-${randomBytes(8).toString('hex')}-01` },
  });
  t.equal(r.status, 401, 'a token in the query is no credential (RFC 6750 §2.3 is not supported): 401');
  const { summary, spans } = await settledTrace(traceId);
  t.equal(summary?.complete, true, 'the refused request is traced too');
  const edge = spans.find((s) => s.serviceName === 'edge' && s.name === 'edge /api/orders');
  t.match(String(edge?.attributes['http.url']), /\/api\/orders\/ord-1001$/, `the edge span's http.url ends at the path (${String(edge?.attributes['http.url'])})`);
  t.notOk(JSON.stringify(spans).includes(access.split('.')[2] as string), 'the token is in no span');
});
