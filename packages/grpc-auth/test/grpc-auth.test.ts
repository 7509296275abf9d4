import * as grpc from '@grpc/grpc-js';
import { AuthError } from '@jwt-mesh/core';
import t from 'tap';
import { denialStatus, headersOfMetadata, httpFailureOf, metadataOf } from '../src/index.js';

t.test('metadata to plain headers: repeated keys become arrays, binary keys are skipped', async (t) => {
  const md = new grpc.Metadata();
  md.add('authorization', 'Bearer a');
  md.add('x-request-id', 'r1');
  md.add('x-multi', 'one');
  md.add('x-multi', 'two');
  md.add('trace-bin', Buffer.from([1, 2]));
  t.same(headersOfMetadata(md), { authorization: 'Bearer a', 'x-request-id': 'r1', 'x-multi': ['one', 'two'] });
});

t.test('outgoing metadata carries the given headers', async (t) => {
  const md = metadataOf({ authorization: 'Bearer a', traceparent: '00-1-2-01', 'X-Request-Id': 'r1' });
  t.same(md.get('authorization'), ['Bearer a']);
  t.same(md.get('x-request-id'), ['r1']);
});

t.test('a deny round-trips: server status + trailers -> the same HTTP answer the core table gives', async (t) => {
  for (const [code, status, grpcCode] of [
    ['credentials_missing', 401, grpc.status.UNAUTHENTICATED],
    ['token_expired', 401, grpc.status.UNAUTHENTICATED],
    ['credentials_multiple', 400, grpc.status.INVALID_ARGUMENT],
    ['insufficient_scope', 403, grpc.status.PERMISSION_DENIED],
    ['revocation_unavailable', 503, grpc.status.UNAVAILABLE],
  ] as const) {
    const s = denialStatus(new AuthError(code, undefined, { requiredScopes: ['profile:read'] }), 'profile');
    t.equal(s.code, grpcCode, `${code} gRPC status`);
    const f = httpFailureOf({ code: s.code, details: s.details, metadata: s.metadata });
    t.equal(f.status, status, `${code} HTTP status`);
    t.equal(f.authCode, code);
    t.equal(f.headers['www-authenticate'], s.metadata?.get('www-authenticate')[0], `${code} challenge kept`);
  }
});

t.test('non-auth failures of the next hop map to gateway errors, an unknown code in the trailer is ignored', async (t) => {
  t.equal(httpFailureOf({ code: grpc.status.DEADLINE_EXCEEDED }).status, 504);
  t.equal(httpFailureOf({ code: grpc.status.NOT_FOUND, details: 'nope' }).status, 404);
  t.equal(httpFailureOf({ code: grpc.status.UNAVAILABLE }).status, 502);
  t.equal(httpFailureOf(new Error('weird')).status, 502);
  const md = new grpc.Metadata();
  md.set('auth-error-code', 'made_up');
  const f = httpFailureOf({ code: grpc.status.UNAUTHENTICATED, metadata: md });
  t.equal(f.status, 502);
  t.equal(f.authCode, null);
});
