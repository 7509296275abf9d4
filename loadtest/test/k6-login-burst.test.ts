/**
 * loadtest/k6/login-burst.ts reads its knobs in the init context: a bad one stops k6 before any
 * request with a message naming it (k6 exits 107), and good ones become the two scenarios and the
 * burst's thresholds that `k6 inspect` prints. Real k6, no stack: nothing listens on the targets.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { k6Binary, K6_DIR } from '../src/k6.js';

t.setTimeout(180_000);

const k6 = k6Binary();
const work = mkdtempSync(join(tmpdir(), 'jwt-mesh-k6-burst-'));
t.teardown(() => rmSync(work, { recursive: true, force: true }));

/** Five users in a users file, as seed-users writes it. */
const usersFile = join(work, 'users.json');
writeFileSync(usersFile, JSON.stringify(Array.from({ length: 5 }, (_, i) => ({ username: `burst-${i + 1}`, password: `pw-${i}-0123456789abcdef` }))));

/** `k6 inspect` evaluates the init context (where every knob is read) and sends nothing. */
function inspect(vars: Record<string, string>): Promise<{ code: number; output: string }> {
  const args = ['inspect', ...Object.entries(vars).flatMap(([k, v]) => ['-e', `${k}=${v}`]), join(K6_DIR, 'login-burst.ts')];
  return new Promise((done) => {
    execFile(k6, args, { timeout: 60_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1) : 0;
      // k6 logs in logfmt, where the message's quotes are escaped: unescape them to match the text.
      done({ code, output: `${stdout}${stderr}`.replace(/\\"/g, '"') });
    });
  });
}

t.test('bad knobs stop k6 with a message naming them', async (t) => {
  const withUsers = { USERS_FILE: usersFile, BURST: '5' };
  const cases: Array<[Record<string, string>, RegExp]> = [
    [{ USERS_FILE: usersFile, BURST: 'many' }, /BURST: "many" is not a number/],
    [{ USERS_FILE: usersFile, BURST: '0' }, /BURST: "0" is not a number within 1\.\.5000/],
    [{ USERS_FILE: usersFile, BURST: '2.5' }, /BURST: "2\.5" is not a whole number/],
    [{}, /BURST=60 needs 60 users but USERS has 2: each burst VU logs in as its own user/],
    [{ USERS_FILE: usersFile, BURST: '6' }, /BURST=6 needs 6 users but USERS_FILE \(.*users\.json\) has 5/],
    [{ ...withUsers, BURST_START: 'soon' }, /BURST_START: "soon" is not a duration/],
    [{ ...withUsers, BURST_START: '11m' }, /BURST_START: "11m" is longer than 600 s/],
    [{ ...withUsers, BURST_SPREAD_SEC: '-1' }, /BURST_SPREAD_SEC: "-1" is not a number within 0\.\.60/],
    [{ ...withUsers, BURST_RETRIES: '1001' }, /BURST_RETRIES: "1001" is not a number within 0\.\.1000/],
    [{ ...withUsers, BURST_TIMEOUT_SEC: '0' }, /BURST_TIMEOUT_SEC: "0" is not a number within 1\.\.120/],
    [{ ...withUsers, BURST_MAX_DURATION: '1h' }, /BURST_MAX_DURATION: "1h" is longer than 600 s/],
    [{ ...withUsers, SHED_P99_MS: '0' }, /SHED_P99_MS: "0" is not a number within 1\.\.60000/],
    [{ ...withUsers, API_RATE: 'fast' }, /API_RATE: "fast" is not a number/],
    [{ ...withUsers, API_DURATION: '11m' }, /API_DURATION: "11m" is longer than 600 s/],
    [{ ...withUsers, API_DURATION: '15s' }, /API_DURATION \(15s\) must last at least 10 s past BURST_START \(10s\)/],
    [{ ...withUsers, API_VUS: '0' }, /API_VUS: "0" is not a number within 1\.\.1000/],
    [{ ...withUsers, TOKEN_POOL: '6' }, /TOKEN_POOL=6 is more than the 5 users/],
    [{ ...withUsers, P99_MS: '-1' }, /P99_MS: "-1" is not a number within 1\.\.60000/],
    [{ ...withUsers, BASE_URL: 'http://192.0.2.10:8080' }, /BASE_URL: refusing http:\/\/192\.0\.2\.10:8080: 192\.0\.2\.10 is not loopback/],
  ];
  for (const [vars, message] of cases) {
    const r = await inspect(vars);
    t.not(r.code, 0, `${JSON.stringify(vars)}: k6 refuses`);
    t.match(r.output, message, `${JSON.stringify(vars)}: the message names the knob`);
  }
});

t.test('good knobs become the two scenarios and the burst thresholds', async (t) => {
  const r = await inspect({ USERS_FILE: usersFile, BURST: '5', BURST_START: '15s', API_RATE: '25.5', API_DURATION: '30s', SHED_P99_MS: '250', BURST_TIMEOUT_SEC: '8' });
  t.equal(r.code, 0, r.code === 0 ? 'k6 accepts them' : r.output.slice(-500));
  const options = JSON.parse(r.output.slice(r.output.indexOf('{'))) as {
    scenarios: Record<string, Record<string, unknown>>;
    thresholds: Record<string, string[]>;
  };
  t.match(options.scenarios.api, { executor: 'constant-arrival-rate', exec: 'api', rate: 25_500, timeUnit: '16m40s', duration: '30s' }, 'API: 25.5/s for 30 s');
  t.match(options.scenarios.burst, { executor: 'per-vu-iterations', exec: 'burst', vus: 5, iterations: 1, startTime: '15s' }, 'burst: one login per VU, all at 15 s');
  t.same(options.thresholds.burst_logins_ok, ['count>=5'], 'every burst login must succeed');
  t.same(options.thresholds.burst_logins_failed, ['count==0'], 'no login fails after its retries');
  t.same(options.thresholds.burst_shed, ['count>0'], 'a run that never shed fails');
  t.same(options.thresholds.burst_shed_duration, ['p(99)<250'], 'the 503s are fast (SHED_P99_MS)');
  t.same(options.thresholds.burst_no_answer, ['count==0'], 'no request without an answer');
  t.same(options.thresholds.burst_rate_limited, ['count==0'], 'no 429: the rate limits were raised');
  t.same(options.thresholds['http_req_duration{kind:burst}'], ['max<8000'], 'no login request reaches its timeout');
  t.same(options.thresholds['http_req_duration{kind:api}'], ['p(99)<200'], 'the API keeps NFR1');
  t.same(options.thresholds['http_req_failed{kind:api}'], ['rate<0.001'], 'API failures < 0.1 %');
  t.same(options.thresholds.dropped_iterations, ['count==0'], 'every API arrival was sent');
});

t.test('the defaults: 60 logins at 10 s into 40 s of API traffic at 50/s, 503s within the queue timeout', async (t) => {
  const users = join(work, 'users-60.json');
  writeFileSync(users, JSON.stringify(Array.from({ length: 60 }, (_, i) => ({ username: `burst-${i + 1}`, password: `pw-${i}-0123456789abcdef` }))));
  const r = await inspect({ USERS_FILE: users });
  t.equal(r.code, 0, r.code === 0 ? 'k6 accepts them' : r.output.slice(-500));
  const options = JSON.parse(r.output.slice(r.output.indexOf('{'))) as { scenarios: Record<string, Record<string, unknown>>; thresholds: Record<string, string[]> };
  t.match(options.scenarios.api, { rate: 50_000, timeUnit: '16m40s', duration: '40s', preAllocatedVUs: 16 }, 'API: 50/s for 40 s');
  t.match(options.scenarios.burst, { vus: 60, startTime: '10s', maxDuration: '2m0s' }, 'burst: 60 VUs at 10 s');
  t.same(options.thresholds.burst_shed_duration, ['p(99)<1500'], "503 p99 within the queue's 1 s wait timeout plus transit");
  t.same(options.thresholds['http_req_duration{kind:burst}'], ['max<10000'], "no login request reaches k6's 10 s timeout");
});
