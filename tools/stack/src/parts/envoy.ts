/**
 * The Envoy proxies: the binary, the configs rendered from envoy/src/render.ts (local target) with
 * the stack's ports, and {@link envoyPart}, the part the edge and every sidecar are started as.
 */
import { existsSync, lstatSync, readdirSync, symlinkSync, unlinkSync } from 'node:fs';
import { join, relative } from 'node:path';
import { execFileSync } from 'node:child_process';
import { type PortsOverride, renderConfigs } from '@jwt-mesh/envoy';
import { envoyBinary, type EnvoyProcess, startEnvoy } from '@jwt-mesh/testkit';
import { type Launcher, type PartDef, type Running, StackStartError } from './launcher.js';
import type { Mesh } from './plan.js';
import { tracingCollector } from './tracing.js';

/** Step: finds the Envoy binary and prints it with its version. @throws StackStartError (`envoy`) when there is none. */
export function findEnvoy(run: Launcher): void {
  let envoyPath: string;
  try {
    envoyPath = envoyBinary();
  } catch (err) {
    throw new StackStartError('envoy', `${(err as Error).message}\n  install it with: make envoy (make up does it for you)`, null);
  }
  let envoyVersion = '';
  try {
    envoyVersion = /(\d+\.\d+\.\d+)\//.exec(execFileSync(envoyPath, ['--version'], { encoding: 'utf8', timeout: 10_000 }))?.[1] ?? '';
  } catch {
    // the version is informational
  }
  run.say('envoy', `${run.rel(envoyPath)}${envoyVersion ? ` (${envoyVersion})` : ''}`);
}

/**
 * The Envoy configs (one source: envoy/src/render.ts, local target), by file name. Rendered at
 * each Envoy start, so a part started again on new ports gets a matching config.
 */
function renderAll(m: Mesh): Record<string, string> {
  const { plan } = m;
  const portsOverride: PortsOverride = {
    edge: plan.edge,
    authz: plan.authz.map((port) => ({ host: '127.0.0.1', port })),
    services: Object.fromEntries(Object.entries(plan.services).map(([n, s]) => [n, { ...s, host: '127.0.0.1' }])),
  };
  const c = tracingCollector(m.tracing);
  return renderConfigs(m.topology, 'local', {
    ports: portsOverride,
    certDir: m.paths.certDir,
    bindAddress: '127.0.0.1',
    ...(c
      ? {
          tracing: {
            collector: { host: c.host, port: c.port },
            tracesPath: c.tracesPath,
            ...(m.options.tracing?.edgeSamplePercent !== undefined ? { edgeSamplePercent: m.options.tracing.edgeSamplePercent } : {}),
          },
        }
      : {}),
  });
}

/** An Envoy part: its config from {@link renderAll} (`file`), started with testkit's `startEnvoy`, its log linked as `<name>.log`. */
export function envoyPart(m: Mesh, name: string, file: string, portsOf: () => number[], repick?: () => Promise<void>): PartDef {
  const envoyLogDir = join(m.paths.logDir, 'envoy');
  return {
    name,
    ...(m.free && repick ? { repick } : {}),
    start: async () => {
      const config = renderAll(m)[file] as string;
      await m.release(...portsOf());
      let e: EnvoyProcess;
      try {
        e = await startEnvoy({ config, name, logDir: envoyLogDir, readyTimeoutMs: m.readyTimeoutMs, cwd: m.paths.runDir });
      } catch (err) {
        throw new StackStartError(name, (err as Error).message.split('\n')[0] ?? 'Envoy did not start', latestEnvoyLog(envoyLogDir, name));
      }
      m.envoys.set(name, e);
      linkLog(m.logOf(name), m.paths.logDir, e.logFile);
      return envoyRunning(name, e);
    },
  };
}

/** Points `link` (`<logDir>/<part>.log`) at the log file testkit's startEnvoy wrote, for `make logs`. */
function linkLog(link: string, logDir: string, logFile: string): void {
  try {
    if (existsSync(link) || isSymlink(link)) unlinkSync(link);
    symlinkSync(relative(logDir, logFile), link);
  } catch {
    // the symlink is a convenience; the real file is e.logFile
  }
}

/** A started Envoy as a {@link Running} part (its pid alone is signalled: testkit starts it in the launcher's group). */
function envoyRunning(name: string, e: EnvoyProcess): Running {
  let exited = false;
  void e.exited.then(() => (exited = true));
  return {
    record: { name, pid: e.pid, pgid: null, markers: [e.configFile], log: e.logFile },
    running: () => !exited,
    kill: (sig) => {
      if (!exited) process.kill(e.pid, sig);
    },
    stop: async () => {
      if (!exited) process.kill(e.pid, 'SIGCONT');
      await e.stop();
    },
  };
}

function isSymlink(file: string): boolean {
  try {
    return lstatSync(file).isSymbolicLink();
  } catch {
    return false;
  }
}

/** The newest log file testkit's startEnvoy wrote for `name` (its names carry pid and time). */
function latestEnvoyLog(dir: string, name: string): string | null {
  try {
    const files = readdirSync(dir)
      .filter((f) => f.startsWith(`${name}-`) && f.endsWith('.log'))
      .sort();
    return files.length ? join(dir, files[files.length - 1] as string) : null;
  } catch {
    return null;
  }
}
