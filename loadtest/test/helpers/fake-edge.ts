/**
 * A tiny stand-in for the edge on 127.0.0.1:0, for the runner's tests: it answers the routes of
 * the k6 scenario (`/api/orders/*` with a consistent three-hop chain, `/healthz`, issuer metadata)
 * and the token endpoints (`/auth/login`, `/auth/token`), and fails on purpose where told to.
 * Not a mock of any library: a real HTTP server the runner really talks to.
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface FakeEdgeOptions {
  /** Answer 500 to every n-th API request (1-based count); 0 = never. */
  failEvery?: number;
  /** Make the chain's hops disagree (a different subject at the last hop) on every n-th chain answer; 0 = never. */
  inconsistentEvery?: number;
  /** Access-token lifetime given by login and refresh, seconds. */
  expiresIn?: number;
  /** Refreshes answer 400 invalid_grant. */
  refreshFails?: boolean;
}

export interface FakeEdge {
  url: string;
  server: Server;
  counts: { api: number; logins: number; refreshes: number; authorized: number };
  close(): Promise<void>;
}

const b64 = (o: unknown): string => Buffer.from(JSON.stringify(o)).toString('base64url');
let serial = 0;
function fakeJwt(): string {
  serial += 1;
  return `${b64({ alg: 'RS256', typ: 'at+jwt', kid: 'k1' })}.${b64({ sub: 'u1', jti: `j${serial}` })}.c2ln`;
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** Starts the fake edge; close it in the test's teardown. */
export async function startFakeEdge(opts: FakeEdgeOptions = {}): Promise<FakeEdge> {
  const counts = { api: 0, logins: 0, refreshes: 0, authorized: 0 };
  const tokens = () => ({ access_token: fakeJwt(), refresh_token: `rt-${serial}-0123456789abcdef`, token_type: 'Bearer', expires_in: opts.expiresIn ?? 300 });
  const server = createServer((req, res) => {
    void (async () => {
      const body = await readBody(req);
      const path = (req.url ?? '/').split('?')[0] ?? '/';
      const json = (status: number, o: unknown) => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(o));
      };
      if (req.method === 'POST' && path === '/auth/login') {
        counts.logins += 1;
        const u = JSON.parse(body || '{}') as { username?: string; password?: string };
        if (!u.username || u.password !== `${u.username}-password`) return json(401, { error: 'invalid_grant' });
        return json(200, tokens());
      }
      if (req.method === 'POST' && path === '/auth/token') {
        counts.refreshes += 1;
        const form = new URLSearchParams(body);
        if (opts.refreshFails || form.get('grant_type') !== 'refresh_token') return json(400, { error: 'invalid_grant' });
        return json(200, tokens());
      }
      counts.api += 1;
      if (/^Bearer \S+$/.test(req.headers.authorization ?? '')) counts.authorized += 1;
      if (opts.failEvery && counts.api % opts.failEvery === 0) return json(500, { error: 'injected' });
      if (path === '/healthz') {
        res.writeHead(200, { 'content-type': 'text/plain' });
        return res.end('ok\n');
      }
      if (path === '/.well-known/openid-configuration') return json(200, { issuer: 'http://localhost:4000' });
      if (path.startsWith('/api/orders/')) {
        const hop = (service: string, subject = 'u1') => ({ service, subject, sid: 's1', jti: 'j1', traceId: 't'.repeat(32) });
        const bad = opts.inconsistentEvery && counts.api % opts.inconsistentEvery === 0;
        return json(200, { order: { id: path.slice(12) }, hops: [hop('orders'), hop('inventory'), hop('profile', bad ? 'u2' : 'u1')] });
      }
      return json(404, { error: 'not_found' });
    })();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    server,
    counts,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
