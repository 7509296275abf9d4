import Fastify, { type FastifyInstance } from 'fastify';
import t from 'tap';
import { createMeshClient, DownstreamError, parseTraceparent, traceContextOf, type MeshClient } from '../src/index.js';

/** A downstream that echoes the headers it got, and answers errors on demand. */
async function startDownstream(): Promise<{ app: FastifyInstance; url: string }> {
  const app = Fastify();
  app.get('/echo', async (request) => ({ headers: request.headers }));
  app.post('/echo', async (request) => ({ headers: request.headers, body: request.body }));
  app.get('/forbidden', async (_request, reply) =>
    reply
      .code(403)
      .headers({ 'www-authenticate': 'Bearer realm="profile", error="insufficient_scope", scope="profile:read"', 'content-type': 'application/json', 'x-internal': 'secret' })
      .send({ error: 'insufficient_scope', error_description: 'the token lacks a scope or role this route requires' }),
  );
  app.get('/unavailable', async (_request, reply) => reply.code(503).header('retry-after', '1').type('text/plain').send('upstream connect error'));
  app.get('/slow', async (_request, reply) => {
    await new Promise((r) => setTimeout(r, 2_000));
    return reply.send({ late: true });
  });
  app.get('/text', async (_request, reply) => reply.type('text/plain').send('hello'));
  await app.listen({ port: 0, host: '127.0.0.1' });
  const { port } = app.server.address() as { port: number };
  return { app, url: `http://127.0.0.1:${port}` };
}

/** A front service that calls the downstream through the client, as a real hop does. */
async function startFront(client: MeshClient): Promise<{ app: FastifyInstance; url: string }> {
  const app = Fastify();
  app.get('/call/:what', async (request, reply) => {
    try {
      const res = await client.call<{ headers: Record<string, string> }>(request, { method: 'GET', path: `/${(request.params as { what: string }).what}` });
      return { downstream: res.body, trace: traceContextOf(request) };
    } catch (err) {
      if (err instanceof DownstreamError) return reply.code(err.status).headers(err.headers).send(err.body);
      throw err;
    }
  });
  await app.listen({ port: 0, host: '127.0.0.1' });
  const { port } = app.server.address() as { port: number };
  return { app, url: `http://127.0.0.1:${port}` };
}

const down = await startDownstream();
const client = createMeshClient({ baseUrl: down.url, timeoutMs: 500 });
const front = await startFront(client);
t.teardown(async () => {
  await front.app.close();
  await client.close();
  await down.app.close();
});

const incomingTrace = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';

t.test('forwards the same Authorization, continues the trace, keeps tracestate and x-request-id', async (t) => {
  const res = await fetch(`${front.url}/call/echo`, {
    headers: {
      authorization: 'Bearer aaa.bbb.ccc',
      traceparent: incomingTrace,
      tracestate: 'vendor=abc',
      'x-request-id': 'req-123',
      'x-jwt-mesh-sub': 'mallory',
      cookie: 'session=secret',
    },
  });
  t.equal(res.status, 200);
  const { downstream, trace } = (await res.json()) as { downstream: { headers: Record<string, string> }; trace: { spanId: string } };
  const h = downstream.headers;
  t.equal(h['authorization'], 'Bearer aaa.bbb.ccc');
  const tp = parseTraceparent(h['traceparent']);
  t.ok(tp);
  t.equal(tp!.traceId, '4bf92f3577b34da6a3ce929d0e0e4736', 'same trace id');
  t.not(tp!.parentId, '00f067aa0ba902b7', 'a new parent span id');
  t.equal(tp!.parentId, trace.spanId, "the parent is this hop's span");
  t.equal(tp!.flags, '01');
  t.equal(h['tracestate'], 'vendor=abc');
  t.equal(h['x-request-id'], 'req-123');
  t.notOk('x-jwt-mesh-sub' in h, 'identity headers are not forwarded');
  t.notOk('cookie' in h, 'cookies are not forwarded');
});

t.test('starts a trace when the incoming request has none (or an invalid one), and a request id', async (t) => {
  for (const traceparent of [undefined, 'garbage', '00-00000000000000000000000000000000-00f067aa0ba902b7-01']) {
    const headers: Record<string, string> = { authorization: 'Bearer x.y.z', tracestate: 'dropped=1' };
    if (traceparent) headers['traceparent'] = traceparent;
    const res = await fetch(`${front.url}/call/echo`, { headers });
    const { downstream } = (await res.json()) as { downstream: { headers: Record<string, string> } };
    const tp = parseTraceparent(downstream.headers['traceparent']);
    t.ok(tp, `valid traceparent for ${traceparent}`);
    t.equal(tp!.version, '00');
    t.notOk('tracestate' in downstream.headers, 'tracestate is dropped with an invalid traceparent');
    t.match(downstream.headers['x-request-id'], /^[0-9a-f-]{36}$/);
  }
});

t.test('a downstream 403 comes back with its status, challenge and body (and nothing else)', async (t) => {
  const res = await fetch(`${front.url}/call/forbidden`, { headers: { authorization: 'Bearer x.y.z' } });
  t.equal(res.status, 403);
  t.equal(res.headers.get('www-authenticate'), 'Bearer realm="profile", error="insufficient_scope", scope="profile:read"');
  t.equal(res.headers.get('x-internal'), null);
  t.same(await res.json(), { error: 'insufficient_scope', error_description: 'the token lacks a scope or role this route requires' });
});

t.test('a non-JSON downstream 5xx keeps its status and retry-after, with a JSON error body', async (t) => {
  const res = await fetch(`${front.url}/call/unavailable`);
  t.equal(res.status, 503);
  t.equal(res.headers.get('retry-after'), '1');
  t.equal(((await res.json()) as { error: string }).error, 'bad_gateway');
});

t.test('a slow downstream: 504 gateway_timeout after the deadline', async (t) => {
  const res = await fetch(`${front.url}/call/slow`);
  t.equal(res.status, 504);
  t.equal(((await res.json()) as { error: string }).error, 'gateway_timeout');
});

t.test('a 2xx that is not JSON is a 502', async (t) => {
  const res = await fetch(`${front.url}/call/text`);
  t.equal(res.status, 502);
});

t.test('an unreachable downstream: 502 bad_gateway', async (t) => {
  const closed = Fastify();
  await closed.listen({ port: 0, host: '127.0.0.1' });
  const { port } = closed.server.address() as { port: number };
  await closed.close();
  const dead = createMeshClient({ baseUrl: `http://127.0.0.1:${port}`, timeoutMs: 1000 });
  const err = await dead.call({ headers: {} }, { method: 'GET', path: '/x' }).catch((e: unknown) => e);
  t.ok(err instanceof DownstreamError);
  t.equal((err as DownstreamError).status, 502);
  t.equal((err as DownstreamError).body.error, 'bad_gateway');
  await dead.close();
});

t.test('POST sends a JSON body', async (t) => {
  const res = await client.call<{ body: unknown; headers: Record<string, string> }>(
    { headers: { authorization: 'Bearer x.y.z' } },
    { method: 'POST', path: '/echo', body: { sku: 'sku-1', quantity: 2 } },
  );
  t.equal(res.status, 200);
  t.same(res.body.body, { sku: 'sku-1', quantity: 2 });
  t.equal(res.body.headers['content-type'], 'application/json');
});

t.test('paths may not leave the downstream origin', async (t) => {
  await t.rejects(client.call({ headers: {} }, { method: 'GET', path: '//evil.test/x' }), TypeError);
  await t.rejects(client.call({ headers: {} }, { method: 'GET', path: 'http://evil.test/x' }), TypeError);
  t.throws(() => createMeshClient({ baseUrl: 'ftp://x' }), TypeError);
  t.throws(() => createMeshClient({ baseUrl: 'http://x', timeoutMs: 0 }), TypeError);
});

t.test('the trace context is computed once per request', async (t) => {
  const req = { headers: { traceparent: incomingTrace } };
  const a = traceContextOf(req);
  const b = traceContextOf(req);
  t.equal(a, b);
  t.equal(a.parentSpanId, '00f067aa0ba902b7');
  t.equal(parseTraceparent('ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'), null, 'version ff is invalid');
  t.equal(parseTraceparent('00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01'), null, 'upper-case hex is invalid');
  t.equal(parseTraceparent('00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01'), null, 'all-zero parent id is invalid');
  t.ok(parseTraceparent('01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra'), 'a future version is read by its first fields');
});
