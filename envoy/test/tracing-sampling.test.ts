/**
 * The edge's sampling percentage takes effect in a real Envoy (RenderOptions.tracing
 * `edgeSamplePercent`): a traced edge at 10 % with two stand-in ext_authz replicas, in front of a
 * traced orders sidecar (0 %, mTLS) and a recording app. Envoy decides from the x-request-id (its
 * first 8 hex digits modulo 10000 below 1000 at 10 %), so every decision is checked exactly, from
 * the `traceparent` the app receives (its last field is the sampled flag, W3C Trace Context): the
 * sidecar continues the edge's decision, and a client's `traceparent` can turn sampling off, not on. Without `use_request_id_for_trace_sampling` in the
 * rendered configs, Envoy sampled every request whatever the percentage.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { startEnvoy } from '@jwt-mesh/testkit';
import t from 'tap';
import { renderConfigs } from '../src/render.js';
import { defaultTopology } from '../src/topology.js';
import { recordingUpstream, send, tempCerts, type Recorded } from './helpers.js';
import { startStandinAuthz, type StandinAuthz } from './standin-authz.js';

const topology = defaultTopology();

/** The sampled flag of a W3C traceparent (`00-<trace id>-<parent id>-<flags>`), or null when there is none. */
function sampled(traceparent: string | string[] | undefined): boolean | null {
  const m = typeof traceparent === 'string' ? /^00-[0-9a-f]{32}-[0-9a-f]{16}-([0-9a-f]{2})$/.exec(traceparent) : null;
  return m ? (Number.parseInt(m[1] as string, 16) & 1) === 1 : null;
}

/** Envoy's decision at `percent` for an x-request-id (UUID request-ID extension, `getInteger` % 10000). */
function expected(requestId: string, percent: number): boolean {
  if (!/^[0-9a-f]{8}/i.test(requestId)) return false;
  return Number.parseInt(requestId.slice(0, 8), 16) % 10000 < percent * 100;
}

t.test('the edge samples its percentage of requests, decided from the x-request-id; the sidecar follows', async (t) => {
  const certs = await tempCerts(t);
  const authzCerts = { ca: certs.ca.cert, ...(certs.workloads.authz as { cert: string; key: string }) };
  const replicas: StandinAuthz[] = [await startStandinAuthz(authzCerts), await startStandinAuthz(authzCerts)];
  t.teardown(async () => {
    for (const r of replicas) await r.stop();
  });
  // A collector that takes every export (the spans themselves are not what this test reads).
  const collector = createServer((req, res) => {
    req.resume();
    req.on('end', () => res.end());
  });
  await new Promise<void>((res) => collector.listen(0, '127.0.0.1', () => res()));
  t.teardown(() => new Promise<void>((res) => collector.close(() => res())));
  const tracing = { collector: { host: '127.0.0.1', port: (collector.address() as AddressInfo).port }, edgeSamplePercent: 10 };

  const orders = await recordingUpstream(t, 'orders');
  const sidecarFiles = renderConfigs(topology, 'local', { certDir: certs.dir, tracing, ports: { services: { orders: { app: orders.port, inbound: 0, outbound: 0, admin: 0 } } } });
  const sidecar = await startEnvoy({ config: sidecarFiles['sidecar-orders.yaml'] as string, name: 'sampling-sidecar-orders', teardown: t });
  const edgeFiles = renderConfigs(topology, 'local', {
    certDir: certs.dir,
    tracing,
    ports: {
      edge: { http: 0, https: 0, admin: 0 },
      authz: replicas.map((r) => ({ host: '127.0.0.1', port: r.port })),
      services: { orders: { inbound: (await sidecar.listenerAddress('inbound')).port } },
    },
  });
  const edge = await startEnvoy({ config: edgeFiles['edge.yaml'] as string, name: 'sampling-edge', teardown: t });
  const http = `http://127.0.0.1:${(await edge.listenerAddress('edge_http')).port}`;

  /** One request through edge -> sidecar -> app; what the app received. */
  const call = async (headers: Record<string, string> = {}): Promise<Recorded['headers']> => {
    const before = orders.seen.length;
    const res = await send({ url: `${http}/api/orders/1`, headers: { authorization: 'Bearer good', ...headers } });
    t.equal(res.status, 200);
    t.equal(orders.seen.length, before + 1, 'the app got the request');
    return (orders.seen[orders.seen.length - 1] as Recorded).headers;
  };

  t.test('client x-request-ids: sampled exactly when the first 8 hex digits mod 10000 are below 1000', async (t) => {
    for (const [id, want] of [
      ['00000000-0000-4000-8000-000000000000', true],
      ['000003e7-0000-4000-8000-000000000000', true], // 999
      ['000003e8-0000-4000-8000-000000000000', false], // 1000
      ['0000270f-0000-4000-8000-000000000000', false], // 9999
      ['00002710-0000-4000-8000-000000000000', true], // 10000 -> 0
      ['client-request-1', false], // not hex: never sampled
    ] as Array<[string, boolean]>) {
      const seen = await call({ 'x-request-id': id });
      t.equal(seen['x-request-id'], id, `${id}: kept end to end`);
      t.equal(sampled(seen.traceparent), want, `${id}: ${want ? 'sampled' : 'not sampled'}`);
    }
  });

  t.test('edge-generated x-request-ids: every decision follows the rule, and about a tenth are sampled', async (t) => {
    let n = 0;
    for (let i = 0; i < 60; i++) {
      const seen = await call();
      const id = String(seen['x-request-id']);
      const flag = sampled(seen.traceparent);
      t.not(flag, null, 'the app always gets a traceparent (the sampled flag says whether spans are recorded)');
      if (flag !== expected(id, 10)) t.fail(`x-request-id ${id}: sampled ${String(flag)}, expected ${String(expected(id, 10))}`);
      if (flag) n += 1;
    }
    t.ok(n < 60, `${n} of 60 sampled, not all of them`);
    const stats = await edge.stats('http.edge_http.tracing');
    t.equal(stats['http.edge_http.tracing.random_sampling'], n + 3, "the edge's own count of sampled requests agrees (3 from the previous test)");
  });

  t.test("a client's traceparent can turn sampling off, not on", async (t) => {
    const off = await call({ traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4737-00f067aa0ba902b7-00', 'x-request-id': '00000000-0000-4000-8000-000000000000' });
    t.equal(sampled(off.traceparent), false, 'unsampled parent, an id the edge samples: not sampled');
    t.match(String(off.traceparent), /^00-4bf92f3577b34da6a3ce929d0e0e4737-/, "the client's trace continues");
    const on = await call({ traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', 'x-request-id': '00000000-0000-4000-8000-000000000000' });
    t.equal(sampled(on.traceparent), true, 'sampled parent, an id the edge samples: sampled');
    t.match(String(on.traceparent), /^00-4bf92f3577b34da6a3ce929d0e0e4736-/, "in the client's trace");
    const forced = await call({ traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4738-00f067aa0ba902b7-01', 'x-request-id': '0000270f-0000-4000-8000-000000000000' });
    t.equal(sampled(forced.traceparent), false, 'sampled parent, an id the edge does not sample: not sampled (a client cannot force a trace)');
  });
});
