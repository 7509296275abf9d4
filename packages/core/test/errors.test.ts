import t from 'tap';
import { AuthError, ERROR_MAP, bearerChallenge, toDenial, type AuthErrorCode } from '../src/errors.js';

t.test('every code maps to one HTTP status, one gRPC code and a fixed description', async (t) => {
  for (const [code, row] of Object.entries(ERROR_MAP)) {
    t.ok([400, 401, 403, 503].includes(row.httpStatus), `${code} has an allowed HTTP status`);
    t.ok(row.description.length > 0, `${code} has a description`);
  }
});

t.test('no credentials: 401 with a bare Bearer challenge (RFC 6750 §3.1)', async (t) => {
  const d = toDenial(new AuthError('credentials_missing'));
  t.equal(d.httpStatus, 401);
  t.equal(d.grpcCode, 16);
  t.equal(d.headers['www-authenticate'], 'Bearer');
  t.equal(bearerChallenge(new AuthError('credentials_missing'), 'jwt-mesh'), 'Bearer realm="jwt-mesh"');
});

t.test('invalid_token, invalid_request and insufficient_scope challenges', async (t) => {
  const expired = toDenial(new AuthError('token_expired'));
  t.equal(expired.httpStatus, 401);
  t.match(expired.headers['www-authenticate'], /^Bearer error="invalid_token", error_description="[^"]+"$/);
  t.equal(expired.body.error, 'invalid_token');

  const two = toDenial(new AuthError('credentials_multiple'));
  t.equal(two.httpStatus, 400);
  t.equal(two.grpcCode, 3);
  t.match(two.headers['www-authenticate'], /error="invalid_request"/);

  const scope = toDenial(new AuthError('insufficient_scope', undefined, { requiredScopes: ['orders:read', 'orders:write'] }));
  t.equal(scope.httpStatus, 403);
  t.equal(scope.grpcCode, 7);
  t.match(scope.headers['www-authenticate'], /error="insufficient_scope".*scope="orders:read orders:write"/);
});

t.test('an unknown thrown value is an internal deny (503), never an allow or a 500', async (t) => {
  for (const thrown of [new Error('boom'), 'string', null, undefined, { code: 'token_expired' }]) {
    const d = toDenial(thrown);
    t.equal(d.code, 'internal');
    t.equal(d.httpStatus, 503);
    t.equal(d.grpcCode, 14);
    t.equal(d.headers['www-authenticate'], undefined);
  }
});

t.test('AuthError keeps code, name and cause', async (t) => {
  const cause = new Error('underlying');
  const e = new AuthError('revocation_unavailable' satisfies AuthErrorCode, 'redis down', { cause });
  t.equal(e.name, 'AuthError');
  t.equal(e.code, 'revocation_unavailable');
  t.equal(e.cause, cause);
  t.equal(e.message, 'redis down');
});
