// Loaded with `node --import` (through NODE_OPTIONS, where --cpu-prof is not allowed on Node 20)
// by the benchmark's profile pass. The first SIGUSR2 starts the V8 sampling profiler (the one
// `node --cpu-prof` runs); the second stops it and writes a `.cpuprofile` (readable by Chrome
// DevTools and speedscope) into $JWT_MESH_CPU_PROF_DIR. So the profile covers the load window only,
// not start-up (module loading and TypeScript compilation would otherwise dominate it). A profile
// still running at exit is written then. A same-thread inspector session answers synchronously.
import { mkdirSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { join } from 'node:path';

const dir = process.env.JWT_MESH_CPU_PROF_DIR;
if (dir) {
  const session = new Session();
  session.connect();
  let running = false;
  const stop = () => {
    if (!running) return;
    running = false;
    session.post('Profiler.stop', (err, result) => {
      if (err || !result) return;
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, `CPU.${Date.now()}.${process.pid}.0.001.cpuprofile`), JSON.stringify(result.profile));
    });
  };
  process.on('SIGUSR2', () => {
    if (running) return stop();
    session.post('Profiler.enable');
    session.post('Profiler.setSamplingInterval', { interval: Number(process.env.JWT_MESH_CPU_PROF_INTERVAL_US ?? 1000) });
    session.post('Profiler.start');
    running = true;
  });
  process.on('exit', stop);
}
