/**
 * Mode `chain_noauth`: a second copy of the chain (orders -> inventory -> profile with their
 * sidecars, behind an edge), with authentication off at every hop: the services are started by
 * the bench-only entry point ./noauth-service.ts (allow-all authenticator, nothing verified), the
 * Envoys from {@link chainNoauthConfigs} (the generated sidecars unchanged, the edge without
 * ext_authz). Everything on free ports; the stack's dev PKI for the sidecars' mutual TLS.
 */
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { sidecarFileName } from '@jwt-mesh/envoy';
import { spawnProcess, type ManagedProcess } from '@jwt-mesh/stack';
import { freePort, startEnvoy, waitForHttp, type EnvoyProcess } from '@jwt-mesh/testkit';
import { chainNoauthConfigs } from './configs.js';
import type { Accounted } from './procstat.js';

/** Options of {@link startChainNoauth}. */
export interface ChainNoauthOptions {
  /** The repository root (the services' workspaces resolve from there). */
  readonly repo: string;
  /** Folder of the processes' logs. */
  readonly logDir: string;
  /** Working directory of the Envoys. */
  readonly runDir: string;
  /** The stack's dev PKI folder. */
  readonly certDir: string;
  readonly envoyConcurrency: number;
}

/** The running second chain. */
export interface ChainNoauth {
  /** `http://127.0.0.1:<port>` of its edge. */
  readonly edgeUrl: string;
  /** Its processes for CPU accounting, named `noauth-<part>`. */
  readonly accounted: Accounted[];
  /** Stops everything it started. */
  stop(): Promise<void>;
}

const SERVICES = ['profile', 'inventory', 'orders'] as const;

/**
 * Starts the services (callees first), then the sidecars and the edge.
 * @throws Error naming the part that did not start (its log is in `logDir`)
 */
export async function startChainNoauth(opts: ChainNoauthOptions): Promise<ChainNoauth> {
  const procs: ManagedProcess[] = [];
  const envoys: EnvoyProcess[] = [];
  const stop = async (): Promise<void> => {
    await Promise.all(envoys.map((e) => e.stop()));
    await Promise.all(procs.map((p) => p.stop(2000)));
  };
  try {
    const ports: Record<string, { app: number; grpc?: number; inbound: number; outbound: number; admin: number; host: string }> = {};
    for (const s of SERVICES) {
      ports[s] = { app: await freePort(), inbound: await freePort(), outbound: await freePort(), admin: await freePort(), host: '127.0.0.1' };
      if (s === 'profile') ports[s].grpc = await freePort();
    }
    const p = (s: (typeof SERVICES)[number]) => ports[s] as NonNullable<(typeof ports)[string]>;
    const envOf: Record<(typeof SERVICES)[number], Record<string, string>> = {
      profile: { PORT: String(p('profile').app), GRPC_PORT: String(p('profile').grpc) },
      inventory: { PORT: String(p('inventory').app), UPSTREAM_URL: `http://127.0.0.1:${p('inventory').outbound}`, UPSTREAM_AUTHORITY: 'profile' },
      orders: { PORT: String(p('orders').app), UPSTREAM_URL: `http://127.0.0.1:${p('orders').outbound}` },
    };
    for (const s of SERVICES) {
      const logFile = join(opts.logDir, `noauth-${s}.log`);
      const proc = spawnProcess({
        name: `noauth-${s}`,
        command: process.execPath,
        args: ['--import', 'tsx', join(opts.repo, 'loadtest', 'src', 'bench', 'noauth-service.ts'), s],
        cwd: opts.repo,
        env: { ...process.env, ...envOf[s] },
        logFile,
      });
      procs.push(proc);
      await waitForHttp(`http://127.0.0.1:${p(s).app}/readyz`, { timeoutMs: 30_000 }).catch((err: unknown) => {
        throw new Error(`chain_noauth: ${s} did not become ready (log ${logFile})`, { cause: err });
      });
    }
    const configs = chainNoauthConfigs({ ports: { edge: { http: 0, https: 0, admin: 0 }, services: ports }, certDir: opts.certDir });
    for (const s of SERVICES) {
      envoys.push(
        await startEnvoy({ config: configs[sidecarFileName(s)] as object, name: `noauth-sidecar-${s}`, logDir: join(opts.logDir, 'envoy'), cwd: opts.runDir, concurrency: opts.envoyConcurrency }),
      );
    }
    const edge = await startEnvoy({ config: configs['edge.yaml'] as object, name: 'noauth-edge', logDir: join(opts.logDir, 'envoy'), cwd: opts.runDir, concurrency: opts.envoyConcurrency });
    envoys.push(edge);
    const a = await edge.listenerAddress('edge_http');
    const edgeUrl = `http://127.0.0.1:${a.port}`;
    // The sidecars' clusters connect lazily; a first request through the whole chain shows it works.
    for (let i = 0; i < 50; i++) {
      const r = await fetch(`${edgeUrl}/api/orders/ord-1001`).catch(() => null);
      if (r?.status === 200) break;
      await sleep(100);
    }
    return {
      edgeUrl,
      accounted: [
        ...procs.map((pr) => ({ name: pr.record.name, pid: pr.record.pid })),
        ...envoys.map((e) => ({ name: e.name, pid: e.pid })),
      ],
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
