/**
 * Every hop encrypted, the JWK Set from the issuer only (issue 10, items 1 and 2), end to end:
 * the edge reaches the auth-service through its sidecar over mTLS; every verifier (both
 * authz-service replicas, orders, inventory, profile) fetches the JWK Set from that sidecar with
 * its own mesh certificate and pins the `auth` SPIFFE ID. Then an impostor takes the JWKS
 * address, once with a certificate from another CA and once with a mesh certificate that is not
 * the issuer's, and serves its own signing key: no verifier accepts a token signed with it, the
 * tokens signed with the keys they already know keep working, and each failure is counted
 * (`jwtmesh_jwks_fetch_failures_total{reason}`) and logged.
 */
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import { exportJWK, SignJWT } from 'jose';
import t from 'tap';
import { runDemo } from '@jwt-mesh/stack';
import { counterSum, send, startE2e, type E2e } from './helpers.js';

t.setTimeout(420_000);

const VERIFIERS = ['orders', 'inventory', 'profile'] as const;
const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
const direct = { orders: '/api/orders/ord-1001', inventory: '/api/inventory/sku-widget', profile: '/api/profile/me' };

let e2e: E2e;

/** `jwtmesh_jwks_fetch_failures_total{reason}` of every verifier, by verifier. */
async function failures(reason: string): Promise<Record<string, number>> {
  const st = e2e.stack.state;
  const out: Record<string, number> = {};
  const byReason = (l: string) => l.includes(`reason="${reason}"`);
  for (const [i, url] of st.urls.authzMetrics.entries()) out[`authz-${i + 1}`] = await counterSum(url, 'jwtmesh_jwks_fetch_failures_total', byReason);
  for (const s of VERIFIERS) out[s] = await counterSum(`${st.urls.services[s]?.app}/metrics`, 'jwtmesh_jwks_fetch_failures_total', byReason);
  return out;
}

t.test('setup', async () => {
  e2e = await startE2e(t, { name: 'jwks-pinning', redisDb: 13 });
});

t.test('the edge -> auth hop is mTLS through the auth sidecar', async (t) => {
  const { access } = await e2e.login(e2e.users.alice);
  t.ok(access, 'login through the edge works');
  const handshakes = await e2e.stack.envoy('sidecar-auth').stats('^listener\\..*\\.ssl\\.handshake$');
  t.ok(Object.values(handshakes).reduce((a, b) => a + b, 0) >= 1, 'the auth sidecar terminates TLS');
  const edgeStats = await e2e.stack.envoy('edge').stats('^cluster\\.auth\\.(ssl\\.handshake|upstream_cx_total)$');
  t.ok((edgeStats['cluster.auth.ssl.handshake'] ?? 0) >= 1, 'the edge opened TLS connections to the auth cluster');
  t.equal(edgeStats['cluster.auth.ssl.handshake'], edgeStats['cluster.auth.upstream_cx_total'], 'every edge -> auth connection is TLS');
  // The app itself is on loopback; its sidecar refuses a caller without a mesh certificate.
  const authInbound = e2e.stack.state.urls.services['auth']?.inbound as string;
  await t.rejects(send({ base: authInbound, path: '/auth/login', method: 'POST', tls: { ca: readFileSync(e2e.stack.certs.ca.cert) } }), 'no client certificate: refused');
});

t.test('an impostor on the JWKS address: no verifier accepts its key; known keys keep working', async (t) => {
  const { access } = await e2e.login(e2e.users.alice);
  const chain = await send({ base: e2e.edge, path: '/api/orders/ord-1001', headers: bearer(access) });
  t.equal(chain.status, 200, 'the whole chain verifies with the issuer key (every verifier has fetched the JWK Set)');

  // The impostor's own key, with a kid nobody knows: every verifier must try to fetch it.
  const evil = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const kid = `impostor-${randomUUID()}`;
  const evilJwk = { ...(await exportJWK(evil.publicKey)), kid, alg: 'RS256', use: 'sig' };
  const forged = async () => {
    const now = Math.floor(Date.now() / 1000);
    return new SignJWT({
      iss: e2e.stack.state.jwt.issuer,
      sub: 'attacker',
      aud: e2e.stack.state.jwt.audience,
      iat: now,
      exp: now + 120,
      jti: randomUUID(),
      client_id: 'jwt-mesh',
      scope: 'orders:read orders:write inventory:read profile:read',
      sid: randomUUID(),
    })
      .setProtectedHeader({ alg: 'RS256', kid, typ: 'at+jwt' })
      .sign(evil.privateKey);
  };

  const certs = e2e.stack.certs;
  const authInbound = new URL(e2e.stack.state.urls.services['auth']?.inbound as string);
  const impostors: Array<[string, { cert: string; key: string }, string]> = [
    ['a certificate from another CA (claiming the edge identity)', certs.untrusted.leaf, 'tls'],
    ['a mesh certificate that is not the issuer (sa/client)', certs.workloads['client'] as { cert: string; key: string }, 'identity'],
  ];
  await e2e.stack.stopPart('sidecar-auth');
  t.teardown(() => e2e.stack.startPart('sidecar-auth'));
  for (const [label, pair, reason] of impostors) {
    let hits = 0;
    const server: Server = createServer({ cert: readFileSync(pair.cert), key: readFileSync(pair.key) }, (_req, res) => {
      hits++;
      res.setHeader('content-type', 'application/jwk-set+json');
      res.end(JSON.stringify({ keys: [evilJwk] }));
    });
    await new Promise<void>((r) => server.listen(Number(authInbound.port), '127.0.0.1', r));
    try {
      const before = await failures(reason);
      // Past every verifier's JWKS cooldown (5 s) from the previous round.
      await new Promise((r) => setTimeout(r, 5_500));
      const token = await forged();
      const viaEdge = await send({ base: e2e.edge, path: '/api/orders/ord-1001', headers: bearer(token) });
      t.not(viaEdge.status, 200, `${label}: the edge (authz-service) does not accept the forged token`);
      t.equal(viaEdge.status, 503, `${label}: keys unavailable fails closed`);
      for (const s of VERIFIERS) {
        const r = await send({ base: e2e.stack.state.urls.services[s]?.app as string, path: direct[s], headers: bearer(token) });
        t.equal(r.status, 503, `${label}: ${s} does not accept the forged token (keys unavailable, fail closed)`);
      }
      t.equal(hits, 0, `${label}: no verifier ever sent an HTTP request to the impostor`);
      const after = await failures(reason);
      for (const v of Object.keys(after)) {
        if (v.startsWith('authz-')) continue; // which replica Envoy picks is its choice
        t.ok((after[v] ?? 0) > (before[v] ?? 0), `${label}: ${v} counted a JWKS fetch failure with reason ${reason}`);
      }
      const authzSum = Object.entries(after).filter(([v]) => v.startsWith('authz-')).reduce((a, [, n]) => a + n, 0);
      const authzBefore = Object.entries(before).filter(([v]) => v.startsWith('authz-')).reduce((a, [, n]) => a + n, 0);
      t.ok(authzSum > authzBefore, `${label}: an authz-service replica counted a failure with reason ${reason}`);

      // The keys already known keep working, through the whole chain.
      const still = await send({ base: e2e.edge, path: '/api/orders/ord-1001', headers: bearer(access) });
      t.equal(still.status, 200, `${label}: the issuer's token still passes every hop`);
    } finally {
      await new Promise<void>((r) => server.close(() => r()));
    }
  }

  // Logged: a warning naming the reason, by each service and by the authz-service (whichever
  // replica Envoy sent the forged token to).
  const reasonsLogged = (parts: string[]) => {
    const lines = parts.flatMap((part) => readFileSync(e2e.stack.logFile(part), 'utf8').split('\n')).filter((l) => l.includes('JWK Set fetch failed'));
    return new Set(lines.map((l) => (JSON.parse(l) as { reason?: string; context?: string }).reason ?? (JSON.parse(l) as { context?: string }).context));
  };
  for (const s of VERIFIERS) t.same([...reasonsLogged([s])].sort(), ['identity', 'tls'], `${s} logged both failures, naming the reason`);
  t.same([...reasonsLogged(['authz-1', 'authz-2'])].sort(), ['identity', 'tls'], 'the authz-service logged both failures, naming the reason');

  // The real issuer back: a rotated key would be found again.
  await e2e.stack.startPart('sidecar-auth');
  const back = await send({ base: e2e.edge, path: '/api/orders/ord-1001', headers: bearer(access) });
  t.equal(back.status, 200, 'the auth sidecar back: everything still works');
});

t.test('make demo against this stack: every check passes, the auth hop over mTLS among them', async (t) => {
  const lines: string[] = [];
  const failed = await runDemo(e2e.stack.state, (l) => lines.push(l));
  t.equal(failed, 0, lines.filter((l) => /FAIL/.test(l)).join('\n') || 'no failed check');
  t.ok(lines.some((l) => /ok\s+every connection of the edge's auth cluster was a TLS handshake/.test(l)), 'the auth-hop step ran and passed');
  t.ok(lines.some((l) => /ok\s+the auth sidecar refuses a TLS client without a mesh certificate/.test(l)), 'the auth sidecar step ran and passed');
});
