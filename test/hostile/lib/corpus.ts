/**
 * The hostile corpus: malformed and malicious HTTP requests against a protected route, as raw
 * bytes (so duplicate headers, control characters, bare LFs, overlong UTF-8 and backslashes go
 * out exactly as written).
 *
 * Every entry is something an attacker can send without the issuer's private key: forged or
 * altered tokens, broken encodings, header and path tricks, oversized input. The expected answer
 * of every entry is a 4xx (431 included), never a 5xx and never a 200.
 *
 * {@link issuerSignedOddities} are the exception: tokens signed with the issuer's real key but
 * with odd headers or claims (what a buggy issuer could emit); each names its own expectation.
 */
import { createHmac, createPublicKey, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';

/** One raw request. */
export interface HostileRequest {
  /** Category and case, e.g. `token/alg none (None)`. */
  name: string;
  method?: string;
  /** Request target, written as is (string or bytes). */
  target: string | Buffer;
  /** Header lines (without CRLF), written in order, as is. A Host line is added unless one is present. */
  headers?: Array<string | Buffer>;
  body?: string;
  /** HTTP version of the request line. Default `1.1`. */
  version?: '1.0' | '1.1';
  /**
   * What is acceptable: `reject` (default) = a 4xx; `answer` = anything but a 5xx (a genuine,
   * valid credential is in the request, so a 200 is legitimate).
   */
  expect?: 'reject' | 'answer';
  /** Other statuses accepted for `reject`, with the standard that prescribes them. */
  allow?: { statuses: number[]; why: string };
}

/**
 * The request's bytes up to (not including) the blank line: request line, a Host line unless
 * one is given (or the request is HTTP/1.0), then the headers as given.
 */
export function requestHead(req: HostileRequest, host = '127.0.0.1'): Buffer {
  const version = req.version ?? '1.1';
  const lines: Buffer[] = [Buffer.concat([Buffer.from(`${req.method ?? 'GET'} `, 'latin1'), Buffer.isBuffer(req.target) ? req.target : Buffer.from(req.target, 'latin1'), Buffer.from(` HTTP/${version}`, 'latin1')])];
  const headers = (req.headers ?? []).map((h) => (Buffer.isBuffer(h) ? h : Buffer.from(h, 'latin1')));
  const hasHost = headers.some((h) => /^host\s*:/i.test(h.subarray(0, 8).toString('latin1')));
  if (!hasHost && version === '1.1') lines.push(Buffer.from(`host: ${host}`, 'latin1'));
  lines.push(...headers);
  return Buffer.concat(lines.flatMap((l, i) => (i === 0 ? [l] : [Buffer.from('\r\n'), l])));
}

const b64 = (v: unknown) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');

/** Claims of a token that would be valid if the issuer had signed it. */
export function goodClaims(issuer: string, audience: string, over: Record<string, unknown> = {}): Record<string, unknown> {
  const now = Math.floor(Date.now() / 1000);
  return {
    iss: issuer,
    sub: 'mallory',
    aud: audience,
    iat: now,
    exp: now + 120,
    jti: `hostile-${Math.random().toString(36).slice(2)}`,
    client_id: 'jwt-mesh',
    scope: 'orders:read orders:write inventory:read inventory:write profile:read',
    sid: 'hostile-sid',
    roles: ['admin', 'user'],
    ...over,
  };
}

type Alg = 'RS256' | 'ES256' | 'EdDSA' | 'PS256' | 'RS512';

/** Signs `header.payload` with `key` as JWS `alg` (node:crypto, JWS encodings). */
export function signJws(alg: Alg, key: KeyObject, header: Record<string, unknown>, payload: unknown): string {
  const input = `${b64(header)}.${b64(payload)}`;
  const data = Buffer.from(input);
  let sig: Buffer;
  if (alg === 'RS256') sig = sign('sha256', data, key);
  else if (alg === 'RS512') sig = sign('sha512', data, key);
  else if (alg === 'PS256') sig = sign('sha256', data, { key, padding: 6 /* RSA_PKCS1_PSS_PADDING */ });
  else if (alg === 'ES256') sig = sign('sha256', data, { key, dsaEncoding: 'ieee-p1363' });
  else sig = sign(null, data, key);
  return `${input}.${sig.toString('base64url')}`;
}

const hs256 = (secret: string | Buffer, header: Record<string, unknown>, payload: unknown) => {
  const input = `${b64(header)}.${b64(payload)}`;
  return `${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`;
};

/** The attacker's own keys. */
export const attacker = {
  rsa: generateKeyPairSync('rsa', { modulusLength: 2048 }),
  ec: generateKeyPairSync('ec', { namedCurve: 'P-256' }),
  ed: generateKeyPairSync('ed25519'),
};

/** What the corpus needs to know about the mesh. */
export interface CorpusContext {
  issuer: string;
  audience: string;
  /** A valid access token (to alter) and its kid. */
  validToken: string;
  kid: string;
  /** The issuer's public RSA key as published in the JWKS (for the HS256 confusion). */
  publicJwk: Record<string, unknown>;
  /** A local listener that counts requests: jku / x5u point at it. */
  trapUrl: string;
  /** The protected path of the target (e.g. `/api/orders/ord-1001`). */
  path: string;
}

const bearer = (token: string) => `authorization: Bearer ${token}`;

/** Token attacks: altered headers and claims, foreign keys, broken encodings, oversized tokens. */
export function tokenCorpus(c: CorpusContext): HostileRequest[] {
  const claims = goodClaims(c.issuer, c.audience);
  const [h, p, s] = c.validToken.split('.') as [string, string, string];
  const header = JSON.parse(Buffer.from(h, 'base64url').toString('utf8')) as Record<string, unknown>;
  const pubPem = createPublicKey({ key: c.publicJwk as import('node:crypto').JsonWebKey, format: 'jwk' }).export({ format: 'pem', type: 'spki' }).toString();
  const attackerJwk = { ...(attacker.rsa.publicKey.export({ format: 'jwk' }) as Record<string, unknown>), kid: 'attacker', alg: 'RS256', use: 'sig' };
  const forged = (hdr: Record<string, unknown>, payload: unknown = claims, alg: Alg = 'RS256', key: KeyObject = attacker.rsa.privateKey) => signJws(alg, key, hdr, payload);
  const at = { typ: 'at+jwt' };
  const list: Array<[string, string]> = [];
  const add = (name: string, token: string) => list.push([name, token]);

  // alg none, in several spellings; with and without a signature.
  for (const alg of ['none', 'None', 'NONE', 'nOnE']) {
    add(`alg ${alg}, empty signature`, `${b64({ alg, kid: c.kid, ...at })}.${b64(claims)}.`);
    add(`alg ${alg}, junk signature`, `${b64({ alg, kid: c.kid, ...at })}.${b64(claims)}.c2ln`);
  }
  add('alg missing', forged({ kid: c.kid, ...at }));
  // Algorithm confusion: HS256 with the issuer's public key as the HMAC secret.
  add('HS256 keyed with the public key PEM', hs256(pubPem, { alg: 'HS256', kid: c.kid, ...at }, claims));
  add('HS256 keyed with the public key PEM, leading newline', hs256(`\n${pubPem}`, { alg: 'HS256', kid: c.kid, ...at }, claims));
  add('HS256 keyed with the public JWK JSON', hs256(JSON.stringify(c.publicJwk), { alg: 'HS256', kid: c.kid, ...at }, claims));
  add('HS512 keyed with the public key PEM', `${b64({ alg: 'HS512', kid: c.kid, ...at })}.${b64(claims)}.${createHmac('sha512', pubPem).update(`${b64({ alg: 'HS512', kid: c.kid, ...at })}.${b64(claims)}`).digest('base64url')}`);
  // The valid token's header with another alg, the issuer's signature kept.
  for (const alg of ['ES256', 'EdDSA', 'PS256', 'RS512', 'RS384']) add(`alg swapped to ${alg}, signature kept`, `${b64({ ...header, alg })}.${p}.${s}`);
  // The valid token's claims altered, signature kept.
  add('claims altered (sub), signature kept', `${h}.${b64({ ...(JSON.parse(Buffer.from(p, 'base64url').toString('utf8')) as object), sub: 'admin' })}.${s}`);
  add('claims altered (scope), signature kept', `${h}.${b64({ ...(JSON.parse(Buffer.from(p, 'base64url').toString('utf8')) as object), scope: 'admin' })}.${s}`);
  add('signature of another token', `${h}.${p}.${forged({ alg: 'RS256', kid: c.kid, ...at }).split('.')[2]}`);
  // kid games.
  add('kid of the issuer, attacker key', forged({ alg: 'RS256', kid: c.kid, ...at }));
  add('kid unknown', forged({ alg: 'RS256', kid: 'no-such-kid', ...at }));
  add('kid path traversal', forged({ alg: 'RS256', kid: '../../../../../../dev/null', ...at }));
  add('kid SQL injection', forged({ alg: 'RS256', kid: "x' UNION SELECT 'key' --", ...at }));
  add('kid a URL', forged({ alg: 'RS256', kid: c.trapUrl, ...at }));
  add('kid an object', forged({ alg: 'RS256', kid: { $ne: null }, ...at }));
  add('kid 4 KiB', forged({ alg: 'RS256', kid: 'k'.repeat(4096), ...at }));
  add('kid missing', forged({ alg: 'RS256', ...at }));
  // The token brings its own key.
  add('jwk header with the attacker key', forged({ alg: 'RS256', jwk: attackerJwk, ...at }));
  add('jwk header, kid of the issuer', forged({ alg: 'RS256', kid: c.kid, jwk: attackerJwk, ...at }));
  add('jku header at a local listener', forged({ alg: 'RS256', kid: 'attacker', jku: `${c.trapUrl}/jwks.json`, ...at }));
  add('jku header, kid of the issuer', forged({ alg: 'RS256', kid: c.kid, jku: `${c.trapUrl}/jwks.json`, ...at }));
  add('x5u header at a local listener', forged({ alg: 'RS256', kid: 'attacker', x5u: `${c.trapUrl}/cert.pem`, ...at }));
  add('x5c header', forged({ alg: 'RS256', x5c: ['MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA'], ...at }));
  add('crit header', forged({ alg: 'RS256', kid: c.kid, crit: ['exp'], ...at }));
  // typ games (forged: the signature is the attacker's).
  for (const typ of ['JWT', 'jwt', 'application/jwt', 'at+jwt ', '', 'refresh+jwt']) add(`typ ${JSON.stringify(typ)}`, forged({ alg: 'RS256', kid: c.kid, typ }));
  add('typ missing', forged({ alg: 'RS256', kid: c.kid }));
  // Wrong key types for the kid.
  add('ES256 token whose kid names the RSA key', forged({ alg: 'ES256', kid: c.kid, ...at }, claims, 'ES256', attacker.ec.privateKey));
  add('EdDSA token whose kid names the RSA key', forged({ alg: 'EdDSA', kid: c.kid, ...at }, claims, 'EdDSA', attacker.ed.privateKey));
  add('PS256 token whose kid names the RSA key', forged({ alg: 'PS256', kid: c.kid, ...at }, claims, 'PS256'));
  // Encodings.
  add('missing segment', `${h}.${p}`);
  add('one segment', h);
  add('extra segment', `${h}.${p}.${s}.${s}`);
  add('five segments (JWE shape)', `${h}.${p}.${s}.${s}.${s}`);
  add('empty segments', '..');
  add('empty header', `.${p}.${s}`);
  add('base64 padding on the header', `${h}==.${p}.${s}`);
  add('base64 padding on the signature', `${h}.${p}.${s}=`);
  add('standard alphabet (+/)', `${h}.${p}.${s}`.replace(/-/g, '+').replace(/_/g, '/') + (/[-_]/.test(`${h}${p}${s}`) ? '' : '+'));
  add('header not JSON', `${b64('not json')}.${p}.${s}`);
  add('header JSON array', `${b64([1, 2])}.${p}.${s}`);
  add('header JSON null', `${b64('null')}.${p}.${s}`);
  add('payload not JSON (forged)', `${b64({ alg: 'RS256', kid: c.kid, ...at })}.${b64('{"sub":')}.${s}`);
  add('trailing dot', `${c.validToken}.`);
  add('leading dot', `.${c.validToken}`);
  // Size and depth (all forged).
  const pad = (bytes: number) => 'x'.repeat(bytes);
  add('huge claims under the 8 KiB cap', forged({ alg: 'RS256', kid: c.kid, ...at }, { ...claims, pad: pad(5200) }));
  add('huge claims over the cap (9 KiB token)', forged({ alg: 'RS256', kid: c.kid, ...at }, { ...claims, pad: pad(6600) }));
  add('huge token over the proxy header limit (24 KiB)', forged({ alg: 'RS256', kid: c.kid, ...at }, { ...claims, pad: pad(18000) }));
  add('deeply nested claims (1500 levels)', forged({ alg: 'RS256', kid: c.kid, ...at }, { ...claims, deep: JSON.parse(`${'['.repeat(1500)}${']'.repeat(1500)}`) as unknown }));
  add('deeply nested header (2000 levels)', `${b64(`{"alg":"RS256","typ":"at+jwt","kid":"${c.kid}","x":${'['.repeat(2000)}${']'.repeat(2000)}}`)}.${p}.${s}`);
  add('many claims (300)', forged({ alg: 'RS256', kid: c.kid, ...at }, { ...claims, ...Object.fromEntries(Array.from({ length: 300 }, (_, i) => [`c${i}`, i])) }));
  add('exp as a string (forged)', forged({ alg: 'RS256', kid: c.kid, ...at }, { ...claims, exp: String(claims['exp']) }));
  add('__proto__ claim (forged)', `${b64({ alg: 'RS256', kid: c.kid, ...at })}.${b64('{"__proto__":{"admin":true},"sub":"x"}')}.${s}`);

  return list.map(([name, token]) => ({ name: `token/${name}`, target: c.path, headers: [bearer(token)] }));
}

/** Header attacks: duplicates, control characters, spoofed identity headers, sizes. */
export function headerCorpus(c: CorpusContext): HostileRequest[] {
  const v = c.validToken;
  // Framing tricks, each sent twice: with a forged token (must be a 4xx whatever the parser
  // makes of the bytes) and with the genuine one (anything but a 5xx; what each hop does with
  // the bytes is printed: RFC 9112 lets a recipient unfold obs-fold and accept a bare LF, and
  // requires a bare CR to be rejected or replaced by SP).
  const forgedToken = signJws('RS256', attacker.rsa.privateKey, { alg: 'RS256', kid: c.kid, typ: 'at+jwt' }, goodClaims(c.issuer, c.audience));
  const framing: Array<[string, (tok: string) => Buffer]> = [
    ['NUL in the value', (tok) => Buffer.from(`authorization: Bearer ${tok.slice(0, 20)}\u0000${tok.slice(20)}`, 'latin1')],
    ['NUL after the token', (tok) => Buffer.from(`authorization: Bearer ${tok}\u0000`, 'latin1')],
    ['bare CR in the value', (tok) => Buffer.from(`authorization: Bearer ${tok.slice(0, 20)}\r${tok.slice(20)}`, 'latin1')],
    ['DEL in the value', (tok) => Buffer.from(`authorization: Bearer ${tok}\u007f`, 'latin1')],
    ['control char 0x01 in the value', (tok) => Buffer.from(`authorization: Bearer \u0001${tok}`, 'latin1')],
    ['ESC sequence in the value', (tok) => Buffer.from(`authorization: Bearer ${tok}\u001b[31m`, 'latin1')],
    ['obs-fold continuation line', (tok) => Buffer.from(`authorization: Bearer\r\n ${tok}`, 'latin1')],
    ['bare LF line ending', (tok) => Buffer.from(`authorization: Bearer ${tok}\nx-other: 1`, 'latin1')],
    ['Latin-1 high bytes in the value', (tok) => Buffer.from(`authorization: Bearer ${tok}\u00ff\u00fe`, 'latin1')],
    ['header name with a control char', (tok) => Buffer.from(`autho\u0001rization: Bearer ${tok}`, 'latin1')],
  ];
  const r = (name: string, headers: Array<string | Buffer>, target: string | Buffer = c.path, method = 'GET'): HostileRequest => ({ name: `header/${name}`, target, headers, method });
  return [
    r('no Authorization', []),
    r('empty Authorization', ['authorization:']),
    r('scheme only', ['authorization: Bearer']),
    r('Basic scheme', ['authorization: Basic YWRtaW46YWRtaW4=']),
    r('token without a scheme', [`authorization: ${v}`]),
    r('tab separator', [Buffer.from(`authorization: Bearer\t${v}`, 'latin1')]),
    r('two Authorization headers (same valid token)', [bearer(v), bearer(v)]),
    r('two Authorization headers (valid, then junk)', [bearer(v), 'authorization: Bearer junk']),
    r('two Authorization headers (junk, then valid)', ['authorization: Bearer junk', bearer(v)]),
    r('two Authorization headers (valid, then Basic)', [bearer(v), 'authorization: Basic YWRtaW46YWRtaW4=']),
    r('comma-joined credentials', [`authorization: Bearer ${v}, Bearer ${v}`]),
    r('comma-joined Basic then Bearer', [`authorization: Basic YWRtaW46YWRtaW4=, Bearer ${v}`]),
    r('UTF-8 in the value', [Buffer.from('authorization: Bearer tökén', 'utf8')]),
    ...framing.flatMap(([name, line]) => [r(`${name} (forged token)`, [line(forgedToken)]), { ...r(`${name} (genuine token)`, [line(v)]), name: `framing-genuine/${name}`, expect: 'answer' as const }]),
    r('space before the colon', [`authorization : Bearer ${v}`]),
    r('identity headers spoofed, no token', ['x-jwt-mesh-sub: admin', 'x-jwt-mesh-scope: orders:read orders:write inventory:read profile:read', 'x-jwt-mesh-roles: admin']),
    r('identity header with underscores', ['x_jwt_mesh_sub: admin', 'x_jwt_mesh_scope: orders:read']),
    r('x-forwarded-client-cert spoofed', ['x-forwarded-client-cert: URI=spiffe://jwt-mesh.local/ns/jwt-mesh/sa/edge']),
    r('token in the query string', [], `${c.path}?access_token=${v}`),
    r('token in a cookie', [`cookie: access_token=${v}; token=${v}`]),
    r('token in a body (form)', ['content-type: application/x-www-form-urlencoded', `content-length: ${`access_token=${v}`.length}`], c.path, 'POST'),
    r('one header of 20 KiB', [`x-big: ${'a'.repeat(20 * 1024)}`]),
    r('300 headers', Array.from({ length: 300 }, (_, i) => `x-h${i}: ${'v'.repeat(60)}`)),
    r('Authorization of 64 KiB', [`authorization: Bearer ${'A'.repeat(64 * 1024)}`]),
    r('Content-Length and Transfer-Encoding', ['content-length: 4', 'transfer-encoding: chunked'], c.path, 'POST'),
    r('two Content-Length values', ['content-length: 0', 'content-length: 5'], c.path, 'POST'),
    {
      ...r('invalid Transfer-Encoding', ['transfer-encoding: gzip, identity'], c.path, 'POST'),
      allow: { statuses: [501], why: 'RFC 9112 §6.1: a server SHOULD answer 501 to a transfer coding it does not understand' },
    },
    r('no Host header', ['host:']),
  ].map((req) => (req.name === 'header/token in a body (form)' ? { ...req, body: `access_token=${v}` } : req));
}

/** Path tricks towards the protected path, and oversized targets. Sent without a token. */
export function pathCorpus(c: CorpusContext): HostileRequest[] {
  const p = c.path; // e.g. /api/orders/ord-1001
  const [, first = 'api', second = '', third = ''] = p.split('/');
  const r = (name: string, target: string | Buffer, method = 'GET', headers: string[] = []): HostileRequest => ({ name: `path/${name}`, target, method, headers });
  return [
    r('the route itself', p),
    r('dot-dot from a public prefix', `/auth/../${p.slice(1)}`),
    r('dot-dot from /healthz', `/healthz/../${p.slice(1)}`),
    r('dot-dot from /.well-known', `/.well-known/../${p.slice(1)}`),
    r('dot-dot from the login path', `/auth/login/../../${p.slice(1)}`),
    r('encoded dots (%2e%2e)', `/auth/%2e%2e/${p.slice(1)}`),
    r('encoded dots, upper case (%2E%2E)', `/auth/%2E%2E/${p.slice(1)}`),
    r('encoded slash (%2f)', `/${first}%2f${second}%2f${third}`),
    r('encoded slash, upper case (%2F)', `/${first}/${second}%2F${third}`),
    r('encoded backslash (%5c)', `/${first}%5c${second}%5c${third}`),
    r('double slash prefix', `/${p}`),
    r('double slash inside', `/${first}//${second}/${third}`),
    r('trailing dot-dot', `${p}/..`),
    r('trailing slash', `${p}/`),
    r('self dot segment', `/${first}/./${second}/${third}`),
    r('backslashes', `/${first}\\${second}\\${third}`),
    r('mixed slashes and dot-dot', `/auth\\..\\${first}/${second}/${third}`),
    r('overlong UTF-8 dots (%c0%ae)', `/auth/%c0%ae%c0%ae/${p.slice(1)}`),
    r('overlong UTF-8 slash (%c0%af)', `/auth/..%c0%af${p.slice(1)}`),
    r('raw overlong UTF-8 bytes', Buffer.concat([Buffer.from('/auth/'), Buffer.from([0xc0, 0xae, 0xc0, 0xae]), Buffer.from(`/${p.slice(1)}`)])),
    r('double-encoded dots (%252e)', `/auth/%252e%252e/${p.slice(1)}`),
    r('NUL byte encoded', `${p}%00`),
    r('raw NUL byte', Buffer.from(`${p}\u0000`, 'latin1')),
    r('semicolon path parameter', `${p};jsessionid=x`),
    r('fragment in the target', `${p}#frag`),
    r('absolute-form target', `http://127.0.0.1${p}`),
    r('absolute-form with another host', `http://evil.example${p}`),
    r('asterisk-form', '*', 'OPTIONS'),
    r('upper-case path', p.toUpperCase()),
    r('unicode in the path', `${p}/%e2%80%ae`),
    r('TRACE method', p, 'TRACE'),
    r('unknown method', p, 'FOO'),
    r('lower-case method', p, 'get'),
    r('query string of 4 KiB', `${p}?q=${'a'.repeat(4096)}`),
    r('query string of 15 KiB', `${p}?q=${'a'.repeat(15 * 1024)}`),
    r('query string of 64 KiB', `${p}?q=${'a'.repeat(64 * 1024)}`),
    r('10000 query parameters', `${p}?${Array.from({ length: 10000 }, (_, i) => `a${i}=1`).join('&').slice(0, 60000)}`),
    r('path of 20 KiB', `${p}/${'a'.repeat(20 * 1024)}`),
  ].concat([{ name: 'path/HTTP/1.0 without Host', target: p, method: 'GET', version: '1.0' }]);
}

/**
 * Tokens signed with the issuer's real key but odd; each with its expected status range.
 * @param sign - signs (header, claims) with the issuer's key
 */
export function issuerSignedOddities(
  c: CorpusContext,
  signWithIssuer: (header: Record<string, unknown>, claims: Record<string, unknown>) => string,
): Array<HostileRequest & { expect: 'reject' | 'answer' }> {
  const claims = goodClaims(c.issuer, c.audience, { scope: 'orders:read inventory:read profile:read' });
  const now = Math.floor(Date.now() / 1000);
  const hdr = { alg: 'RS256', kid: c.kid, typ: 'at+jwt' };
  const list: Array<[string, Record<string, unknown>, Record<string, unknown>, 'reject' | 'answer']> = [
    ['typ JWT', { ...hdr, typ: 'JWT' }, claims, 'reject'],
    ['typ missing', { alg: 'RS256', kid: c.kid }, claims, 'reject'],
    ['exp as a string', hdr, { ...claims, exp: String(now + 60) }, 'reject'],
    ['exp as a float', hdr, { ...claims, exp: now + 60.5 }, 'reject'],
    ['iat missing', hdr, { ...claims, iat: undefined }, 'reject'],
    ['exp far past', hdr, { ...claims, iat: now - 1000, exp: now - 900 }, 'reject'],
    ['nbf in the future', hdr, { ...claims, nbf: now + 600 }, 'reject'],
    ['lifetime of a day', hdr, { ...claims, exp: now + 86_400 }, 'reject'],
    ['wrong issuer', hdr, { ...claims, iss: 'https://evil.example' }, 'reject'],
    ['issuer with a trailing slash', hdr, { ...claims, iss: `${c.issuer}/` }, 'reject'],
    ['foreign audience', hdr, { ...claims, aud: 'other' }, 'reject'],
    ['audience missing', hdr, { ...claims, aud: undefined }, 'reject'],
    ['sub empty', hdr, { ...claims, sub: '' }, 'reject'],
    ['jti missing', hdr, { ...claims, jti: undefined }, 'reject'],
    ['roles an object', hdr, { ...claims, roles: { admin: true } }, 'reject'],
    ['scope an array', hdr, { ...claims, scope: ['orders:read'] }, 'reject'],
    ['no scope at all', hdr, { ...claims, scope: undefined }, 'reject'],
    ['payload over the 8 KiB cap', hdr, { ...claims, pad: 'x'.repeat(6600) }, 'reject'],
    // Signed by the issuer and valid: may be answered (200), must not be a 5xx.
    ['huge claims under the cap (7 KiB)', hdr, { ...claims, pad: 'x'.repeat(4800) }, 'answer'],
    ['deeply nested claims (1000 levels)', hdr, { ...claims, deep: JSON.parse(`${'['.repeat(1000)}${']'.repeat(1000)}`) as unknown }, 'answer'],
  ];
  return list.map(([name, h, cl, expect]) => {
    const payload = Object.fromEntries(Object.entries(cl).filter(([, x]) => x !== undefined));
    return { name: `issuer-signed/${name}`, target: c.path, headers: [bearer(signWithIssuer(h, payload))], expect };
  });
}
