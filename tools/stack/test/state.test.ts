/**
 * `make down` safety: stopStack stops the recorded processes (by process group), reports the ones
 * already gone, and never signals a recorded pid whose command line no longer matches (pid reused
 * by another program). Real processes (`sleep`), no mocks.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { isAlive, isOurs, spawnProcess } from '../src/proc.js';
import { processStatus, readState, stopStack, writeState, type StackState } from '../src/state.js';

function baseState(dir: string): StackState {
  return {
    version: 1,
    startedAt: new Date().toISOString(),
    root: dir,
    runDir: dir,
    logDir: dir,
    certDir: dir,
    supervisor: null,
    processes: [],
    urls: { edge: '', edgeHttps: '', edgeAdmin: '', auth: '', jwks: '', authzGrpc: [], authzMetrics: [], services: {} },
    database: { url: 'postgresql://x', embedded: false, dataDir: null },
    redis: { url: 'redis://x', embedded: false, prefix: 'jwtmesh:' },
    jwt: { issuer: 'http://localhost:4000', audience: 'jwt-mesh' },
    users: [],
    ready: true,
  };
}

t.test('stopStack stops what was recorded, leaves a reused pid alone, removes the state file', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'jwt-mesh-stack-state-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const marker = join(dir, 'marker-arg');
  // Ours: a shell in its own process group with a child; the marker is on its command line.
  const ours = spawnProcess({
    name: 'ours',
    command: '/bin/sh',
    args: ['-c', 'sleep 60 & wait', marker],
    cwd: dir,
    env: process.env,
    logFile: join(dir, 'ours.log'),
    markers: [marker],
  });
  t.teardown(() => ours.stop(1000));
  // Not ours: a process we do not record by its own command line (as if the pid had been reused).
  const stranger = spawn('sleep', ['60'], { stdio: 'ignore' });
  t.teardown(() => stranger.kill('SIGKILL'));
  const gone = spawn('true', [], { stdio: 'ignore' });
  await new Promise((r) => gone.once('exit', r));

  const state = baseState(dir);
  state.processes = [
    ours.record,
    { name: 'stranger', pid: stranger.pid as number, pgid: stranger.pid as number, markers: [marker], log: '' },
    { name: 'gone', pid: gone.pid as number, pgid: null, markers: [marker], log: '' },
  ];
  const file = join(dir, 'stack.json');
  writeState(file, state);
  t.same(readState(file), state, 'the state file round-trips');
  t.same(
    processStatus(state).map((s) => `${s.name}:${s.status}`),
    ['ours:running', 'stranger:pid-reused', 'gone:gone'],
    'ps tells running, reused and gone apart',
  );
  t.ok(isOurs(ours.record), 'our process matches its markers');

  const report = await stopStack(file, { graceMs: 3000 });
  t.same(report.stopped, ['ours'], 'ours was stopped');
  t.same(report.leftAlone, ['stranger'], 'the stranger was left alone');
  t.same(report.alreadyGone, ['gone'], 'the finished one was reported as gone');
  await ours.exited;
  t.notOk(ours.running(), 'our process has exited');
  t.ok(isAlive(stranger.pid as number), 'the stranger still runs');
  t.notOk(existsSync(file), 'the state file is removed');
  t.same(await stopStack(file), { found: false, stopped: [], alreadyGone: [], leftAlone: [] }, 'a second down finds nothing to do');
});

t.test('readState names the file and the field on bad content', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'jwt-mesh-stack-state-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'stack.json');
  const { writeFileSync } = await import('node:fs');
  writeFileSync(file, '{ nope');
  t.throws(() => readState(file), new RegExp(`${file}: not valid JSON`));
  writeFileSync(file, JSON.stringify({ ...baseState(dir), processes: [{ name: 'x' }] }));
  t.throws(() => readState(file), /processes\.0\.pid/);
  t.equal(readState(join(dir, 'absent.json')), null, 'no file: null');
});
