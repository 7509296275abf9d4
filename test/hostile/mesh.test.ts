/**
 * Hostile input through the whole mesh: the corpus of test/hostile/lib/corpus.ts (forged and
 * altered tokens, foreign keys, broken encodings, oversized and deeply nested claims, duplicate
 * and control-character headers, path tricks, huge query strings) sent as raw bytes
 * - through the edge (Envoy -> ext_authz -> orders), and
 * - to orders, inventory and profile directly on their app ports (local verification only),
 * twice over.
 *
 * Asserted: every request gets a 4xx (431 included), never a 5xx and never a 200; tokens signed
 * by the issuer but invalid are rejected too; jku / x5u in a token are never fetched; every
 * process is alive and answering afterwards (a valid request still gets 200 everywhere).
 * Printed: answers per category and target, and the RSS of every process before and after
 * (figures only: no memory bound is asserted).
 */
import { createPrivateKey } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import t, { type Test } from 'tap';
import { issuerKey } from '../e2e/helpers.js';
import { startTestStack, type TestStack } from '../reliability/lib/stack.js';
import { callChain, login, type Tokens } from '../reliability/lib/mesh.js';
import { rawRequest, request } from '../reliability/lib/http.js';
import { markdownTable } from '../reliability/lib/load.js';
import { alive, rssTable } from '../reliability/lib/proc.js';
import { attacker, goodClaims, headerCorpus, issuerSignedOddities, pathCorpus, requestHead, signJws, tokenCorpus, type CorpusContext, type HostileRequest } from './lib/corpus.js';

t.setTimeout(180_000);

const ROUNDS = 2;
const CONCURRENCY = 8;

interface Result {
  target: string;
  name: string;
  status: number;
  line: string;
  expect: 'reject' | 'answer';
  allow: number[];
}

/** Sends `reqs` to `port`, `CONCURRENCY` at a time. */
async function sendAll(port: number, target: string, reqs: HostileRequest[]): Promise<Result[]> {
  const out: Result[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < reqs.length) {
        const req = reqs[next++] as HostileRequest;
        const a = await rawRequest(port, requestHead(req), req.body ?? '', 8000);
        out.push({ target, name: req.name, status: a.status, line: a.line, expect: req.expect ?? 'reject', allow: req.allow?.statuses ?? [] });
        if (req.allow && req.allow.statuses.includes(a.status)) allowedNotes.add(`${target}: ${req.name} -> ${a.status} (${req.allow.why})`);
      }
    }),
  );
  return out;
}

const portOf = (url: string) => Number(new URL(url).port);
const countBy = (xs: Array<string | number>) => xs.reduce<Record<string, number>>((acc, x) => ({ ...acc, [String(x)]: (acc[String(x)] ?? 0) + 1 }), {});
/** Answers outside 4xx that a standard prescribes (printed). */
const allowedNotes = new Set<string>();

/** A listener that must never be called: jku / x5u / kid URLs point at it. */
async function startTrap(t: Test): Promise<{ url: string; hits: () => number }> {
  let trapHits = 0;
  const trap = createServer((_req, res) => {
    trapHits++;
    res.end('{"keys":[]}');
  });
  await new Promise<void>((resolve) => trap.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => trap.close(() => resolve())));
  return { url: `http://127.0.0.1:${(trap.address() as AddressInfo).port}`, hits: () => trapHits };
}

/** The running mesh, the sessions and keys the corpus is built from, and the four targets. */
interface Mesh {
  ts: TestStack;
  state: TestStack['state'];
  alice: Tokens;
  bob: Tokens;
  /** The kid of the issuer's signing key, and its public JWK from the JWKS. */
  kid: string;
  publicJwk: Record<string, unknown>;
  /** Signs a JWS with the issuer's own private key (RS256). */
  signWithIssuer: (h: Record<string, unknown>, c: Record<string, unknown>) => string;
  targets: Array<{ name: string; port: number; path: string }>;
}

/** Starts the stack, logs alice and bob in, and reads the issuer's signing key (its kid, public JWK and private key). */
async function startMesh(t: Test): Promise<Mesh> {
  const ts = await startTestStack(t, { label: 'hostile' });
  const { state } = ts;
  const alice = await login(state, 'alice');
  const bob = await login(state, 'bob');
  const jwksAnswer = await request(state.urls.jwks);
  if (jwksAnswer.status !== 200) throw new Error(`JWKS: ${jwksAnswer.status ?? jwksAnswer.error}`);
  const jwks = JSON.parse(jwksAnswer.body) as { keys: Array<Record<string, unknown>> };
  const kid = (JSON.parse(Buffer.from(alice.access_token.split('.')[0] as string, 'base64url').toString('utf8')) as { kid: string }).kid;
  const publicJwk = jwks.keys.find((k) => k['kid'] === kid);
  if (!publicJwk) throw new Error('the signing key is not in the JWKS');
  const issuerSigning = await issuerKey(ts.databaseUrl);
  t.equal(issuerSigning.kid, kid, 'the issuer key from the database is the one that signs');
  const issuerPrivate = createPrivateKey(issuerSigning.pem);
  const signWithIssuer = (h: Record<string, unknown>, c: Record<string, unknown>) => signJws('RS256', issuerPrivate, h, c);

  const svc = state.urls.services;
  const targets: Array<{ name: string; port: number; path: string }> = [
    { name: 'edge', port: portOf(state.urls.edge), path: '/api/orders/ord-1001' },
    { name: 'orders (app port)', port: portOf(svc['orders']?.app as string), path: '/api/orders/ord-1001' },
    { name: 'inventory (app port)', port: portOf(svc['inventory']?.app as string), path: '/api/inventory/sku-widget' },
    { name: 'profile (app port)', port: portOf(svc['profile']?.app as string), path: '/api/profile/me' },
  ];
  return { ts, state, alice, bob, kid, publicJwk, signWithIssuer, targets };
}

/** The status alice's valid token gets at each target (or the error). */
async function validAt({ targets, alice }: Mesh) {
  return Promise.all(
    targets.map(async (x) => {
      const a = await request(`http://127.0.0.1:${x.port}${x.path}`, { headers: { authorization: `Bearer ${alice.access_token}` } });
      return [x.name, a.status ?? a.error] as const;
    }),
  );
}

/** Sends the whole corpus to every target, `ROUNDS` times. @returns the last round's results, and how many requests were sent in all */
async function sendCorpus(mesh: Mesh, trapUrl: string): Promise<{ results: Result[]; sent: number }> {
  const { state, alice, bob, kid, publicJwk, signWithIssuer, targets } = mesh;
  const results: Result[] = [];
  let sent = 0;
  for (let round = 1; round <= ROUNDS; round++) {
    for (const target of targets) {
      const ctx: CorpusContext = { issuer: state.jwt.issuer, audience: state.jwt.audience, validToken: alice.access_token, kid, publicJwk, trapUrl, path: target.path };
      const corpus: HostileRequest[] = [
        ...tokenCorpus(ctx),
        ...headerCorpus(ctx),
        ...pathCorpus(ctx),
        ...issuerSignedOddities(ctx, signWithIssuer),
        // Scope escalation with bob's token (orders:read only).
        ...['/api/inventory/sku-widget', '/api/profile/me', '/api/orders/../inventory/sku-widget', '/api/orders/%2e%2e/profile/me'].map((p) => ({
          name: `escalation/bob (orders:read) GET ${p}`,
          target: p,
          headers: [`authorization: Bearer ${bob.access_token}`],
        })),
        { name: 'escalation/bob (orders:read) POST /api/orders', method: 'POST', target: '/api/orders', headers: [`authorization: Bearer ${bob.access_token}`, 'content-type: application/json', 'content-length: 33'], body: '{"sku":"sku-widget","quantity":1}' },
      ];
      const r = await sendAll(target.port, target.name, corpus);
      sent += r.length;
      if (round === ROUNDS) results.push(...r);
    }
  }
  return { results, sent };
}

/** Random kids: each verifier refetches the JWKS at most once per cooldown, never per request. @returns how many requests the flood sent */
async function floodRandomKids(t: Test, { state, targets }: Mesh): Promise<number> {
  const jwksFetches = async () => {
    const m = await request(`${state.urls.auth}/metrics`);
    let n = 0;
    for (const line of m.status === 200 ? m.body.split('\n') : []) {
      if (line.startsWith('http_requests_total{') && line.includes('route="/.well-known/jwks.json"')) n += Number(line.split(' ').pop());
    }
    return n;
  };
  const fetchesBefore = await jwksFetches();
  const FLOOD = 240;
  const floodTargets = targets.map((x) => ({ ...x, name: `${x.name}` }));
  const flood = Array.from({ length: FLOOD }, (_, i) => {
    const forged = signJws('RS256', attacker.rsa.privateKey, { alg: 'RS256', typ: 'at+jwt', kid: `random-${i}-${Math.random().toString(36).slice(2)}` }, goodClaims(state.jwt.issuer, state.jwt.audience));
    const x = floodTargets[i % floodTargets.length] as (typeof targets)[number];
    return { x, req: { name: 'flood/random kid', target: x.path, headers: [`authorization: Bearer ${forged}`] } as HostileRequest };
  });
  const floodResults = (await Promise.all(targets.map((x) => sendAll(x.port, x.name, flood.filter((f) => f.x.name === x.name).map((f) => f.req))))).flat();
  const fetchesDuring = (await jwksFetches()) - fetchesBefore;
  t.comment(`${FLOOD} tokens with random kids (edge and services): answers ${JSON.stringify(countBy(floodResults.map((r) => r.status)))}; JWKS fetches caused: ${fetchesDuring}`);
  t.ok(floodResults.every((r) => r.status === 401), 'every random-kid token gets 401');
  t.ok(fetchesDuring < FLOOD / 10, `random kids cause no JWKS fetch storm (${fetchesDuring} fetches for ${FLOOD} tokens)`);
  return floodResults.length;
}

/** Afterwards: every process alive (same pid; RSS before and after printed), every part answering, the chain still served, the trap never called. */
async function checkStillUp(t: Test, mesh: Mesh, pidsBefore: Record<string, number>, rssBefore: Record<string, number | null>, sent: number, trap: { hits: () => number }): Promise<void> {
  const { ts, state, alice, targets } = mesh;
  const pidsAfter = ts.pids();
  const rssAfter = rssTable(pidsAfter);
  const memRows = Object.keys(pidsBefore).map((name) => ({
    process: name,
    pid: pidsBefore[name] as number,
    'RSS before (MiB)': rssBefore[name] ?? 'gone',
    'RSS after (MiB)': rssAfter[name] ?? 'gone',
    'alive after': alive(pidsBefore[name] as number) && pidsAfter[name] === pidsBefore[name] ? 'yes' : 'NO',
  }));
  t.comment(`\nprocesses before and after ${sent} hostile requests (${ROUNDS} rounds x ${targets.length} targets)\n${markdownTable(memRows)}`);
  for (const row of memRows) t.equal(row['alive after'], 'yes', `${row.process} is alive (same pid)`);
  const ready = await Promise.all([
    request(`${state.urls.edge}/healthz`),
    request(`${state.urls.auth}/readyz`),
    ...state.urls.authzMetrics.map((u) => request(u)),
    ...Object.values(state.urls.services).map((s) => request(`${s.app}/readyz`)),
  ]);
  t.same(ready.map((a) => a.status), ready.map(() => 200), 'edge, auth, both authz replicas and every service answer their health/readiness/metrics endpoints');
  t.same(
    (await validAt(mesh)).map(([, s]) => s),
    [200, 200, 200, 200],
    'a valid token still gets 200 at every target',
  );
  t.equal((await callChain(state, alice.access_token)).status, 200, 'the chain still answers through the edge');
  t.equal(trap.hits(), 0, 'no verifier fetched a jku / x5u / kid URL');
}

/** Prints the answers by category and target, the issuer-signed oddities answered, and how each parser took the framing tricks around a genuine token. */
function printAnswers(t: Test, results: Result[], targets: Mesh['targets']): void {
  const category = (name: string) => name.split('/')[0] as string;
  const summary = new Map<string, Record<string, number>>();
  for (const r of results) {
    const key = `${category(r.name)}|${r.target}`;
    const row = summary.get(key) ?? {};
    row[String(r.status || r.line)] = (row[String(r.status || r.line)] ?? 0) + 1;
    summary.set(key, row);
  }
  t.comment(
    `\nanswers to the hostile corpus (last round)\n${markdownTable(
      [...summary].map(([key, counts]) => {
        const [cat, target] = key.split('|') as [string, string];
        return { category: cat, target, requests: Object.values(counts).reduce((a, b) => a + b, 0), answers: Object.entries(counts).map(([k, v]) => `${k}: ${v}`).join(', ') };
      }),
    )}`,
  );
  const answered = results.filter((r) => r.name.startsWith('issuer-signed/') && r.expect === 'answer');
  t.comment(`issuer-signed valid oddities (may be answered): ${answered.map((r) => `${r.target} ${r.name.split('/')[1]} -> ${r.status}`).join('; ')}`);

  const genuine = results.filter((r) => r.name.startsWith('framing-genuine/'));
  t.comment(
    `\nframing tricks around a genuine token (anything but a 5xx is acceptable; printed to show each parser)\n${markdownTable(
      [...new Set(genuine.map((r) => r.name))].map((name) => ({
        request: name.slice('framing-genuine/'.length),
        ...Object.fromEntries(targets.map((x) => [x.name, genuine.find((r) => r.name === name && r.target === x.name)?.line.replace(/^HTTP\/1\.1 /, '') ?? '-'])),
      })),
    )}`,
  );
  if (allowedNotes.size > 0) t.comment(`answers outside 4xx that a standard prescribes: ${[...allowedNotes].join('; ')}`);
}

/** Every hostile request (last round) got a 4xx or an answer a standard prescribes: never a 5xx, a 2xx or a closed connection. */
function assertAnswers(t: Test, results: Result[]): void {
  const rejectedOk = (r: Result) => (r.status >= 400 && r.status < 500) || r.allow.includes(r.status);
  const bad = results.filter((r) => (r.expect === 'reject' ? !rejectedOk(r) : r.status >= 500 || r.status === 0));
  if (bad.length > 0) t.comment(`\nunexpected answers\n${markdownTable(bad.map((r) => ({ target: r.target, request: r.name, answer: r.line })))}`);
  t.equal(results.filter((r) => r.status >= 500 && !r.allow.includes(r.status)).length, 0, 'never a 5xx (other than one a standard prescribes)');
  t.equal(results.filter((r) => r.expect === 'reject' && r.status >= 200 && r.status < 300).length, 0, 'never a 2xx to a hostile request');
  t.equal(results.filter((r) => r.status === 0).length, 0, 'always an HTTP answer (no connection closed without a status)');
  t.same(bad.map((r) => `${r.target}: ${r.name} -> ${r.line}`), [], 'every hostile request gets a 4xx');
}

t.test('hostile input through the edge and to every service directly: 4xx, never 5xx or 200, processes stay up', async (t) => {
  const trap = await startTrap(t);
  const mesh = await startMesh(t);
  t.same(
    (await validAt(mesh)).map(([, s]) => s),
    [200, 200, 200, 200],
    'a valid token gets 200 at every target before the corpus',
  );
  const pidsBefore = mesh.ts.pids();
  const rssBefore = rssTable(pidsBefore);
  const { results, sent } = await sendCorpus(mesh, trap.url);
  const flooded = await floodRandomKids(t, mesh);
  await checkStillUp(t, mesh, pidsBefore, rssBefore, sent + flooded, trap);
  printAnswers(t, results, mesh.targets);
  assertAnswers(t, results);
});
