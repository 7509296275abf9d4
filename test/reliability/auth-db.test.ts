/**
 * Fault under load: the auth service stopped, then PostgreSQL made unreachable (the auth service
 * reaches its database through a TCP proxy this test cuts; the machine's PostgreSQL is never
 * touched), then both back, then PostgreSQL cut again under a running auth service.
 *
 * Asserted:
 * - verification through the mesh is unaffected throughout (no verifier calls the issuer or its
 *   database per request): zero failed requests on the protected chain;
 * - login and refresh answer 503 while the issuer or its database is down (from Envoy when the
 *   auth service is down; a JSON `temporarily_unavailable` from the auth service when only its
 *   database is), never 500;
 * - nothing is lost: after they return, the refresh token issued before (and tried during the
 *   outage) still rotates, a token revoked before is still rejected, users still log in.
 * Printed: the table per phase and the answers login/refresh got.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { createTestDatabase } from '../../auth-service/test/helpers.js';
import { startTestStack } from './lib/stack.js';
import { figures, markdownTable, phaseRow, startLoad } from './lib/load.js';
import { callChain, login, refresh, type Tokens } from './lib/mesh.js';
import { postJson, request, type Answer } from './lib/http.js';
import { startTcpProxy } from './lib/tcp-proxy.js';

t.setTimeout(180_000);

const RATE = 25;
const DURATION_SEC = 42;

/** `503 temporarily_unavailable: the database cannot be reached`, `200 (tokens)`, or the transport error. */
function brief(a: Answer): string {
  if (a.status === undefined) return a.error;
  try {
    const j = JSON.parse(a.body) as Record<string, unknown>;
    if (typeof j['access_token'] === 'string') return `${a.status} (tokens)`;
    if (typeof j['error'] === 'string') return `${a.status} ${j['error']}: ${String(j['error_description'] ?? '')}`;
    if (typeof j['status'] === 'string') return `${a.status} ${JSON.stringify(j)}`;
  } catch {
    // not JSON
  }
  return `${a.status} ${a.body.replace(/\s+/g, ' ').slice(0, 80)}`;
}

t.test('auth service and PostgreSQL down under load: verification unaffected, login/refresh 503, nothing lost', async (t) => {
  const direct = new URL(await createTestDatabase(t));
  const proxy = await startTcpProxy({ host: direct.hostname, port: Number(direct.port || 5432) });
  t.teardown(() => proxy.close());
  const viaProxy = new URL(direct);
  viaProxy.port = String(proxy.port);
  const { stack, state } = await startTestStack(t, { label: 'authdb', databaseUrl: viaProxy.toString() });
  const edge = state.urls.edge;

  const session: Tokens = await login(state);
  const revoked = await login(state);
  t.equal((await postJson(`${edge}/auth/revoke`, { token: revoked.access_token })).status, 200, 'a token revoked before the faults');
  let refreshToken = session.refresh_token;
  const answers: Array<Record<string, string>> = [];
  const probe = async (phase: string) => {
    const l = await postJson(`${edge}/auth/login`, { username: 'bob', password: 'bob-demo-password' });
    const r = await refresh(state, refreshToken);
    answers.push({ phase, login: brief(l), refresh: brief(r) });
    return { l, r };
  };

  const load = startLoad({ ratePerSec: RATE, durationSec: DURATION_SEC, send: (_seq, signal) => callChain(state, session.access_token, { signal }) });
  const marks: Array<[string, number]> = [['before the faults', 0]];
  await sleep(4000);

  // A: the auth service stops.
  marks.push(['auth-service stopped', load.now()]);
  await stack.stopPart('auth');
  await sleep(1000);
  const a = await probe('auth-service down');
  t.equal(a.l.status, 503, 'login answers 503 while the auth service is down');
  t.equal(a.r.status, 503, 'refresh answers 503 while the auth service is down');
  await sleep(3000);

  // B: PostgreSQL becomes unreachable too.
  marks.push(['auth-service and PostgreSQL down', load.now()]);
  await proxy.cut();
  await sleep(5000);

  // C: PostgreSQL back, the auth service started again.
  marks.push(['PostgreSQL back, auth-service starting', load.now()]);
  await proxy.restore();
  await stack.startPart('auth');
  marks.push(['both back', load.now()]);
  const c = await probe('both back');
  t.equal(c.l.status, 200, 'login works again');
  t.equal(c.r.status, 200, 'the refresh token issued before the outage (and tried during it) still rotates: nothing lost');
  if (c.r.status === 200) refreshToken = (JSON.parse(c.r.body) as Tokens).refresh_token;
  await sleep(3000);

  // D: PostgreSQL cut under a running auth service.
  marks.push(['PostgreSQL down, auth-service up', load.now()]);
  await proxy.cut();
  await sleep(500);
  const d = await probe('PostgreSQL down, auth-service up');
  const ready = await request(`${state.urls.auth}/readyz`);
  answers.push({ phase: 'PostgreSQL down, auth-service up', login: `readyz ${brief(ready)}`, refresh: '' });
  t.equal(d.l.status, 503, 'login answers 503 while the database is down');
  t.match(d.l.status !== undefined ? d.l.body : '', /temporarily_unavailable/, 'with a clear error (temporarily_unavailable)');
  t.equal(d.r.status, 503, 'refresh answers 503 while the database is down');
  t.match(d.r.status !== undefined ? d.r.body : '', /temporarily_unavailable/, 'with a clear error');
  t.equal(ready.status, 503, 'the auth service reports not ready');
  await sleep(4000);

  // E: PostgreSQL back; the auth service recovers by itself.
  marks.push(['PostgreSQL back', load.now()]);
  await proxy.restore();
  let e = await probe('PostgreSQL back');
  for (let i = 0; i < 20 && (e.l.status !== 200 || e.r.status !== 200); i++) {
    await sleep(500);
    e = await probe('PostgreSQL back (retry)');
  }
  t.equal(e.l.status, 200, 'login recovers without a restart');
  t.equal(e.r.status, 200, 'the refresh token tried while the database was down still rotates');
  await load.done;

  const after = await callChain(state, revoked.access_token);
  t.equal(after.status, 401, 'the token revoked before the faults is still rejected');

  const rows = marks.map(([phase, from], i) => phaseRow(phase, figures(load.records, from, marks[i + 1]?.[1] ?? Number.POSITIVE_INFINITY)));
  const all = figures(load.records);
  rows.push(phaseRow(`whole run (${RATE}/s for ${DURATION_SEC} s)`, all));
  t.comment(`\nauth-service and PostgreSQL down under load (protected chain through the edge)\n${markdownTable(rows)}`);
  t.comment(`\nlogin (bob) and refresh answers\n${markdownTable(answers)}`);
  t.equal(all.sent, RATE * DURATION_SEC, 'every planned request was sent');
  t.same(all.failedBy, {}, 'verification through the mesh is unaffected: no request failed');
  for (const row of answers) {
    t.notMatch(`${row['login']} ${row['refresh']}`, /^500|\b500\b/, `no 500 (${row['phase']})`);
  }
});
