import t from 'tap';
import { extractBearer } from '../src/bearer.js';
import { AuthError, type AuthErrorCode } from '../src/errors.js';
import type { AuthRequest } from '../src/types.js';

const JWT = 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1MSJ9.c2lnbmF0dXJl';

function codeOf(headers: AuthRequest['headers']): AuthErrorCode | 'ok' {
  try {
    extractBearer(headers);
    return 'ok';
  } catch (err) {
    if (!(err instanceof AuthError)) throw err;
    return err.code;
  }
}

t.test('one Bearer credential, scheme case-insensitive (RFC 6750 §2.1)', async (t) => {
  for (const scheme of ['Bearer', 'bearer', 'BEARER', 'bEaReR']) {
    t.equal(extractBearer({ authorization: `${scheme} ${JWT}` }), JWT, scheme);
  }
  t.equal(extractBearer({ authorization: `Bearer    ${JWT}` }), JWT, 'several spaces');
  t.equal(extractBearer({ authorization: `  Bearer ${JWT}  ` }), JWT, 'surrounding OWS trimmed');
  t.equal(extractBearer({ authorization: [`Bearer ${JWT}`] }), JWT, 'one-element array');
  t.equal(extractBearer({ authorization: 'Bearer abc+/~-._==' }), 'abc+/~-._==', 'every b64token character');
});

t.test('credentials_missing: no header, empty header, other schemes', async (t) => {
  t.equal(codeOf({}), 'credentials_missing');
  t.equal(codeOf({ authorization: undefined }), 'credentials_missing');
  t.equal(codeOf({ authorization: [] }), 'credentials_missing');
  t.equal(codeOf({ authorization: '' }), 'credentials_missing');
  t.equal(codeOf({ authorization: '   ' }), 'credentials_missing');
  t.equal(codeOf({ authorization: 'Basic dXNlcjpwYXNz' }), 'credentials_missing');
  t.equal(codeOf({ authorization: `Bearerx ${JWT}` }), 'credentials_missing', 'scheme must be exactly Bearer');
  t.equal(codeOf({ authorization: `Token ${JWT}` }), 'credentials_missing');
  t.equal(codeOf({ authorization: 'Digest username="a", realm="b", nonce="c"' }), 'credentials_missing', 'commas inside a non-Bearer credential');
  t.equal(codeOf({ authorization: JWT }), 'credentials_missing', 'a bare token without a scheme');
});

t.test('credentials_multiple: two headers, or comma-joined values', async (t) => {
  t.equal(codeOf({ authorization: [`Bearer ${JWT}`, `Bearer ${JWT}`] }), 'credentials_multiple');
  t.equal(codeOf({ authorization: [`Bearer ${JWT}`, 'Basic dXNlcjpwYXNz'] }), 'credentials_multiple');
  t.equal(codeOf({ authorization: `Bearer ${JWT}, Bearer ${JWT}` }), 'credentials_multiple');
  t.equal(codeOf({ authorization: `Bearer ${JWT},Bearer ${JWT}` }), 'credentials_multiple');
  t.equal(codeOf({ authorization: `Basic dXNlcjpwYXNz, Bearer ${JWT}` }), 'credentials_multiple');
  t.equal(codeOf({ authorization: `Bearer ${JWT},` }), 'credentials_multiple');
});

t.test('credentials_malformed: empty, whitespace or non-token68 credential', async (t) => {
  t.equal(codeOf({ authorization: 'Bearer' }), 'credentials_malformed');
  t.equal(codeOf({ authorization: 'Bearer ' }), 'credentials_malformed');
  t.equal(codeOf({ authorization: 'Bearer     ' }), 'credentials_malformed');
  t.equal(codeOf({ authorization: `Bearer\t${JWT}` }), 'credentials_malformed', 'tab is not SP');
  t.equal(codeOf({ authorization: `Bearer ${JWT} extra` }), 'credentials_malformed');
  t.equal(codeOf({ authorization: 'Bearer a=b' }), 'credentials_malformed', '= only at the end');
  t.equal(codeOf({ authorization: 'Bearer "quoted"' }), 'credentials_malformed');
  t.equal(codeOf({ authorization: 'Bearer ab\u0000cd' }), 'credentials_malformed');
  t.equal(codeOf({ authorization: 'Bearer tökén' }), 'credentials_malformed');
});

t.test('never reads anything but the authorization header', async (t) => {
  t.equal(codeOf({ 'x-access-token': JWT, cookie: `access_token=${JWT}` }), 'credentials_missing');
  t.equal(codeOf({ ':path': `/x?access_token=${JWT}` }), 'credentials_missing');
});
