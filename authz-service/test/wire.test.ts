/**
 * The lean CheckRequest decoder (src/wire.ts) against protobufjs's full decoder (the one
 * proto-loader builds from Envoy's protos, `defaults: true`): the same bytes must give the same
 * id, method, path, headers and header_map, and the same AuthRequest, for every recorded
 * request, with unknown fields at every level, repeated headers and raw_value bytes. Bytes that
 * are not a valid encoding decode to MalformedCheckRequest (never a throw), and the server
 * answers them with a 503 deny CheckResponse, not a gRPC error.
 */
import { readdirSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import protobuf from 'protobufjs/minimal.js';
import t, { type Test } from 'tap';
import { toAuthRequest } from '../src/check.js';
import { loadAuthorizationProto } from '../src/proto.js';
import { MalformedCheckRequest, decodeCheckRequest, type CheckRequestView } from '../src/wire.js';
import type { CheckRequest, CheckRequest__Output } from '../src/generated/envoy/service/auth/v3/CheckRequest.js';
import type { CheckResponse__Output } from '../src/generated/envoy/service/auth/v3/CheckResponse.js';
import { FIXTURES, GRPC, denied, fixture, startAuthz, startIssuer } from './helpers/harness.js';

const { Writer } = protobuf;
const method = loadAuthorizationProto().envoy.service.auth.v3.Authorization.service.Check;
const encode = (req: CheckRequest): Buffer => method.requestSerialize(req);
const fullDecode = (bytes: Buffer): CheckRequest__Output => method.requestDeserialize(bytes);

/** What the handler reads, with the full decoder's proto3 defaults for absent fields. */
function projection(req: CheckRequestView) {
  const http = req.attributes?.request?.http;
  return {
    id: http?.id ?? '',
    method: http?.method ?? '',
    path: http?.path ?? '',
    headers: { ...(http?.headers ?? {}) },
    header_map: (http?.header_map?.headers ?? []).map((h) => ({ key: h.key, value: h.value, raw_value: Buffer.from(h.raw_value).toString('hex') })),
  };
}

function lean(bytes: Buffer): CheckRequestView {
  const v = decodeCheckRequest(bytes);
  if (v instanceof MalformedCheckRequest) throw new Error(`unexpected malformed: ${v.cause.message}`);
  return v;
}

function sameAsFull(t: Test, bytes: Buffer, name: string): void {
  const full = fullDecode(bytes);
  const mine = lean(bytes);
  t.same(projection(mine), projection(full), `${name}: the same fields`);
  t.same({ ...toAuthRequest(mine), headers: { ...toAuthRequest(mine).headers } }, { ...toAuthRequest(full), headers: { ...toAuthRequest(full).headers } }, `${name}: the same AuthRequest`);
}

const token = 'eyJhbGciOiJSUzI1NiIsImtpZCI6ImsiLCJ0eXAiOiJhdCtqd3QifQ.eyJzdWIiOiJ1In0.c2ln';

t.test('every recorded CheckRequest decodes as the full decoder does', async (t) => {
  const names = readdirSync(FIXTURES).filter((f) => f.endsWith('.json')).map((f) => f.slice(0, -5));
  t.ok(names.length >= 15, `${names.length} fixtures`);
  for (const name of names) sameAsFull(t, encode(fixture(name, token)), name);
});

t.test('header_map: raw_value bytes (non-UTF-8 too), value-only entries, repeated keys in order', async (t) => {
  const req: CheckRequest = {
    attributes: {
      request: {
        http: {
          method: 'GET',
          path: '/api/orders?x=1',
          header_map: {
            headers: [
              { key: 'authorization', raw_value: Buffer.from(`Bearer ${token}`) },
              { key: 'Authorization', raw_value: Buffer.from(`Bearer ${token}`) },
              { key: 'x-bin', raw_value: Buffer.from([0xff, 0xfe, 0x41]) },
              { key: 'x-value-only', value: 'v' },
              { key: 'x-empty' },
              { key: '__proto__', raw_value: Buffer.from('not a prototype') },
            ],
          },
        },
      },
    },
  };
  const bytes = encode(req);
  sameAsFull(t, bytes, 'header_map');
  const ar = toAuthRequest(lean(bytes));
  t.same(ar.headers['authorization'], [`Bearer ${token}`, `Bearer ${token}`], 'a repeated header becomes a list (so the core sees two credentials)');
  t.equal(ar.headers['x-value-only'], 'v');
  t.equal(ar.headers['x-empty'], '');
  t.equal(ar.headers['__proto__'], 'not a prototype', 'a header named __proto__ is a plain header');
  t.equal(Object.getPrototypeOf(ar.headers), null);
  t.equal(ar.path, '/api/orders', 'query cut');
});

t.test('the headers map: a repeated key keeps the last value, as protobufjs does; __proto__ is a plain key', async (t) => {
  const entry = (k: string, v: string) => Writer.create().uint32((1 << 3) | 2).string(k).uint32((2 << 3) | 2).string(v).finish();
  const w = Writer.create();
  w.uint32((1 << 3) | 2).fork().uint32((4 << 3) | 2).fork().uint32((2 << 3) | 2).fork();
  w.uint32((2 << 3) | 2).string('GET').uint32((4 << 3) | 2).string('/api/orders');
  for (const [k, v] of [['authorization', 'Bearer a'], ['x-a', '1'], ['authorization', 'Bearer b'], ['__proto__', 'p']] as const) {
    w.uint32((3 << 3) | 2).bytes(entry(k, v));
  }
  const bytes = Buffer.from(w.ldelim().ldelim().ldelim().finish());
  const mine = lean(bytes);
  t.equal(mine.attributes?.request?.http?.headers?.['authorization'], 'Bearer b', 'last value wins');
  t.equal(mine.attributes?.request?.http?.headers?.['__proto__'], 'p');
  const full = fullDecode(bytes);
  t.equal(full.attributes?.request?.http?.headers['authorization'], 'Bearer b', 'the full decoder agrees');
});

t.test('unknown fields of every wire type, at every level, are skipped', async (t) => {
  const unknowns = (w: protobuf.Writer): protobuf.Writer =>
    w
      .uint32((900 << 3) | 0).uint64(2 ** 40)
      .uint32((901 << 3) | 1).fixed64(7)
      .uint32((902 << 3) | 2).bytes(Buffer.from('opaque'))
      .uint32((903 << 3) | 5).fixed32(9)
      .uint32((904 << 3) | 3).uint32((1 << 3) | 0).uint32(5).uint32((904 << 3) | 4); // a group
  const w = unknowns(Writer.create());
  w.uint32((1 << 3) | 2).fork(); // attributes
  unknowns(w);
  w.uint32((1 << 3) | 2).fork().uint32((1 << 3) | 2).fork().uint32((1 << 3) | 2).string('10.0.0.1').ldelim().ldelim(); // source.address.socket_address (known to Envoy, skipped here)
  w.uint32((4 << 3) | 2).fork(); // request
  unknowns(w);
  w.uint32((1 << 3) | 2).fork().uint32((1 << 3) | 0).int64(1764410412).ldelim(); // time
  w.uint32((2 << 3) | 2).fork(); // http
  unknowns(w);
  w.uint32((1 << 3) | 2).string('req-1').uint32((2 << 3) | 2).string('POST').uint32((4 << 3) | 2).string('/api/orders');
  w.uint32((5 << 3) | 2).string('localhost').uint32((9 << 3) | 0).int64(12).uint32((11 << 3) | 2).string('{"body":1}');
  w.uint32((13 << 3) | 2).fork();
  unknowns(w);
  w.uint32((1 << 3) | 2).fork();
  unknowns(w);
  w.uint32((1 << 3) | 2).string('authorization').uint32((3 << 3) | 2).bytes(Buffer.from(`Bearer ${token}`));
  w.ldelim().ldelim().ldelim().ldelim().ldelim();
  unknowns(w);
  const bytes = Buffer.from(w.finish());
  sameAsFull(t, bytes, 'unknown fields');
  t.same(toAuthRequest(lean(bytes)), { method: 'POST', path: '/api/orders', headers: Object.assign(Object.create(null), { authorization: `Bearer ${token}` }) });
});

t.test('truncated or malformed bytes: MalformedCheckRequest, never a throw', async (t) => {
  const bytes = encode(fixture('get-orders-header-map', token));
  let malformed = 0;
  let fullRefused = 0;
  for (let n = 1; n < bytes.length; n++) {
    if (decodeCheckRequest(bytes.subarray(0, n)) instanceof MalformedCheckRequest) malformed++;
    try {
      fullDecode(bytes.subarray(0, n));
    } catch {
      fullRefused++;
    }
  }
  t.equal(malformed, bytes.length - 1, `every strict prefix (${bytes.length - 1}) is malformed`);
  t.equal(fullRefused, bytes.length - 1, 'the full decoder refuses them too');
  const cases: Record<string, Buffer> = {
    'length past the end': Buffer.from([0x0a, 0x7f, 0x22, 0x01]),
    'invalid wire type 7': Buffer.from([0x0f]),
    'field number 0': Buffer.from([0x00, 0x01]),
    'unterminated varint': Buffer.from([0x08, 0xff, 0xff]),
    'end group without a start': Buffer.from([0x0c]),
    'nested length past its parent': Buffer.from([0x0a, 0x03, 0x22, 0x05, 0x12]),
  };
  for (const [name, b] of Object.entries(cases)) t.type(decodeCheckRequest(b), MalformedCheckRequest, name);
  // Random bytes: whatever they decode to, nothing throws.
  let seed = 12345;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 16) & 0xff;
  const thrown: string[] = [];
  for (let i = 0; i < 3000; i++) {
    const b = Buffer.from(Array.from({ length: 1 + (i % 64) }, rnd));
    try {
      const v = decodeCheckRequest(b);
      if (!(v instanceof MalformedCheckRequest)) toAuthRequest(v);
    } catch (err) {
      thrown.push(`${b.toString('hex')}: ${String(err)}`);
    }
  }
  t.same(thrown, [], '3000 random messages: no throw');
  t.same(lean(Buffer.alloc(0)), {}, 'an empty message is an empty CheckRequest (proto3)');
});

t.test('over gRPC: undecodable bytes are answered with a 503 deny CheckResponse, not a gRPC error', async (t) => {
  const issuer = await startIssuer();
  t.teardown(() => issuer.close());
  const srv = await startAuthz({ issuer });
  t.teardown(() => srv.close());
  const client = new grpc.Client(`127.0.0.1:${srv.port}`, grpc.credentials.createInsecure());
  t.teardown(() => client.close());
  const send = (bytes: Buffer) =>
    new Promise<CheckResponse__Output>((resolve, reject) => {
      client.makeUnaryRequest(method.path, (b: Buffer) => b, method.responseDeserialize, bytes, (err, res) => (err || !res ? reject(err ?? new Error('no response')) : resolve(res)));
    });
  for (const bytes of [Buffer.from([0x0a, 0x7f, 0x22]), encode(fixture('get-orders', token)).subarray(0, 40)]) {
    const d = denied(await send(bytes));
    t.equal(d.grpc, GRPC.UNAVAILABLE);
    t.equal(d.http, 503);
    t.equal(d.body.error, 'temporarily_unavailable');
  }
  t.match(await srv.metrics.registry.metrics(), /jwtmesh_authz_decisions_total\{outcome="deny",reason="internal"\} 2/);
  // The same server still decides well-formed requests.
  t.equal((await srv.check(fixture('get-orders', await issuer.mint()))).status?.code, GRPC.OK);
});

t.test('a field longer than its own message, or than the buffer, is malformed (no clamped or borrowed bytes)', async (t) => {
  // Hand-built so that each length can lie: attributes { request { http { ... } } }, then `after`.
  const ld = (field: number, body: Buffer): Buffer => Buffer.concat([Buffer.from([(field << 3) | 2, body.length]), body]);
  const lying = (field: number, claimed: number, body: string): Buffer => Buffer.concat([Buffer.from([(field << 3) | 2, claimed]), Buffer.from(body)]);
  const msg = (http: Buffer, after: Buffer = Buffer.alloc(0)): Buffer => Buffer.concat([ld(1, ld(4, ld(2, http))), after]);
  const get = ld(2, Buffer.from('GET'));
  const pad = ld(2, Buffer.from('xx')); // a whole top-level field, skipped: the 4 bytes each lie below borrows
  const cases: Record<string, Buffer> = {
    // protobufjs's BufferReader.string clamps a string's length to the end of the buffer.
    'path string past the end of the buffer': msg(Buffer.concat([get, lying(4, 100, '/healthz')])),
    // The path's length runs into the next top-level field: those bytes are not the path's.
    'path string past the end of its message': msg(Buffer.concat([get, lying(4, 12, '/healthz')]), pad),
    'header value past the end of its HeaderValue': msg(
      Buffer.concat([get, ld(13, ld(1, Buffer.concat([ld(1, Buffer.from('authorization')), lying(2, 12, 'Bearer x')])))]),
      pad,
    ),
    'unknown field past the end of its message': msg(Buffer.concat([get, lying(15, 6, 'ab')]), pad),
  };
  for (const [name, bytes] of Object.entries(cases)) t.type(decodeCheckRequest(bytes), MalformedCheckRequest, name);
});
