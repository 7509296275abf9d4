/**
 * Fault under load: one authz-service replica stopped (SIGTERM, graceful drain), then started
 * again, while a steady open-model load runs through the full path (edge -> ext_authz -> orders
 * -> inventory -> profile).
 *
 * What the design promises, and is asserted: the edge retries a failed Check once on the other
 * replica (`previous_hosts`), health checks take the stopped replica out, so no request fails;
 * nothing is ever a 500; the replica gets traffic again once it is back, with no manual action.
 * Printed: the table per phase and the edge's authz cluster counters.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { startTestStack } from './lib/stack.js';
import { figures, markdownTable, phaseRow, startLoad } from './lib/load.js';
import { authzDecisions, callChain, login } from './lib/mesh.js';

t.setTimeout(180_000);

const RATE = 40;
const DURATION_SEC = 34;

t.test('one authz replica stopped and started under load: no failed request, recovery by itself', async (t) => {
  const { stack, state } = await startTestStack(t, { label: 'authz' });
  const tokens = await login(state);
  const warm = await callChain(state, tokens.access_token);
  t.equal(warm.status, 200, 'the chain answers before the fault');

  const load = startLoad({ ratePerSec: RATE, durationSec: DURATION_SEC, send: (_seq, signal) => callChain(state, tokens.access_token, { signal }) });
  await sleep(5000);
  const stopAt = load.now();
  await stack.stopPart('authz-1');
  const stoppedAt = load.now();
  t.notOk(stack.isRunning('authz-1'), 'authz-1 is stopped');
  await sleep(6000);
  const startAt = load.now();
  await stack.startPart('authz-1');
  const startedAt = load.now();

  // Recovery: the restarted replica (fresh counters) gets Check calls again through the edge.
  const metricsUrl = state.urls.authzMetrics[0] as string;
  let recoveredAt: number | null = null;
  while (load.now() < (DURATION_SEC - 1) * 1000) {
    const n = await authzDecisions(metricsUrl);
    if (n !== null && n > 0) {
      recoveredAt = load.now();
      break;
    }
    await sleep(250);
  }
  await load.done;

  const all = figures(load.records);
  const rows = [
    phaseRow('before the fault', figures(load.records, 0, stopAt)),
    phaseRow(`authz-1 stopping (SIGTERM, ${Math.round(stoppedAt - stopAt)} ms)`, figures(load.records, stopAt, stoppedAt)),
    phaseRow('authz-1 down', figures(load.records, stoppedAt, startAt)),
    phaseRow(`authz-1 starting (${Math.round(startedAt - startAt)} ms until SERVING)`, figures(load.records, startAt, startedAt)),
    phaseRow('after it is back', figures(load.records, startedAt)),
    phaseRow(`whole run (${RATE}/s for ${DURATION_SEC} s)`, all),
  ];
  t.comment(`\nauthz replica stop/start under load\n${markdownTable(rows)}`);
  const edgeStats = await stack.envoy('edge').stats('^cluster\\.authz\\.(upstream_rq_retry|upstream_rq_retry_success|outlier_detection\\.ejections_enforced_total|health_check\\.(failure|success)|upstream_cx_connect_fail|upstream_rq_503|membership_healthy)$');
  t.comment(`edge authz cluster: ${JSON.stringify(edgeStats)}`);
  t.comment(
    `authz-1 got Check calls again ${recoveredAt === null ? 'NEVER' : `${Math.round(recoveredAt - startedAt)} ms after it was SERVING`}`,
  );

  t.equal(all.sent, RATE * DURATION_SEC, 'every planned request was sent');
  t.equal(all.failedBy['500'] ?? 0, 0, 'never a 500');
  t.same(all.failedBy, {}, 'no request failed: retries on the other replica and health checks cover the stopped one');
  t.not(recoveredAt, null, 'the restarted replica receives traffic again without manual action');
  const after = figures(load.records, startedAt);
  t.equal(after.failed, 0, 'nothing fails after the replica is back');
});
