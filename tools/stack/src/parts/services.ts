/** The steps of the services: orders, inventory and profile, then the sidecars of every service and extra upstream. */
import { join } from 'node:path';
import { sidecarFileName } from '@jwt-mesh/envoy';
import { REPO_ROOT } from '@jwt-mesh/testkit';
import type { ServiceUrls } from '../state.js';
import type { PartDef } from './launcher.js';
import type { Mesh, ServicePorts } from './plan.js';
import { childEnv, httpReady, nodePart, type Wiring } from './node.js';
import { envoyPart } from './envoy.js';

/** The services of the default topology, in the order they are started (callees first). */
export const SERVICES = ['profile', 'inventory', 'orders'] as const;

/** The URLs of every service of the topology (the auth-service and the extra upstreams included), from the ports now in the plan. */
export function serviceUrlsOf(m: Mesh): Record<string, ServiceUrls> {
  const serviceUrls: Record<string, ServiceUrls> = {};
  for (const s of m.topology.services) {
    const sp = m.plan.services[s.name] as ServicePorts;
    serviceUrls[s.name] = {
      app: `http://127.0.0.1:${sp.app}`,
      ...(sp.grpc !== undefined ? { grpc: `127.0.0.1:${sp.grpc}` } : {}),
      inbound: `https://127.0.0.1:${sp.inbound}`,
      outbound: `http://127.0.0.1:${sp.outbound}`,
      admin: `http://127.0.0.1:${sp.admin}`,
    };
  }
  return serviceUrls;
}

/** Step: orders, inventory and profile ({@link SERVICES}), started in parallel, each ready when `GET /readyz` answers 200. */
export async function startServices(w: Wiring): Promise<void> {
  await w.launchAll(SERVICES.map((name) => servicePart(w, name)));
  const serviceUrls = serviceUrlsOf(w);
  w.say('services', SERVICES.map((n) => `${n} ${serviceUrls[n]?.app}${serviceUrls[n]?.grpc ? ` (gRPC ${serviceUrls[n]?.grpc})` : ''}`).join(', '));
}

/** One of {@link SERVICES}: its ports, its upstream (its own sidecar's outbound port), and its own mesh certificate for the JWK Set. */
function servicePart(w: Wiring, name: (typeof SERVICES)[number]): PartDef {
  const { plan, certs } = w;
  const ports = (service: string) => plan.services[service] as ServicePorts;
  /** The service's own mesh certificate, presented to the auth sidecar when it fetches the JWK Set. */
  const jwksClientCert = (service: string): Record<string, string> => {
    const c = certs.workloads[service] as { cert: string; key: string };
    return { JWKS_CERT_FILE: c.cert, JWKS_KEY_FILE: c.key };
  };
  const envFor = (): Record<string, Record<string, string>> => ({
    profile: { PORT: String(ports('profile').app), HOST: '127.0.0.1', GRPC_PORT: String(ports('profile').grpc) },
    inventory: {
      PORT: String(ports('inventory').app),
      HOST: '127.0.0.1',
      UPSTREAM_URL: `http://127.0.0.1:${ports('inventory').outbound}`,
      UPSTREAM_AUTHORITY: 'profile',
    },
    orders: { PORT: String(ports('orders').app), HOST: '127.0.0.1', UPSTREAM_URL: `http://127.0.0.1:${ports('orders').outbound}` },
  });
  const dir = join(REPO_ROOT, 'services', name);
  return nodePart(w, {
    name,
    entry: join(dir, 'src', 'main.ts'),
    cwd: dir,
    env: () => childEnv(w, { ...(envFor()[name] as Record<string, string>), ...jwksClientCert(name) }, w.options.env?.services),
    ready: httpReady(w, `${name} /readyz`, () => `http://127.0.0.1:${ports(name).app}/readyz`),
    ports: () => [ports(name).app, ports(name).grpc],
    repick: async () => {
      const sp = ports(name);
      sp.app = await w.reserve(`${name}.app`);
      if (sp.grpc !== undefined) sp.grpc = await w.reserve(`${name}.grpc`);
    },
  });
}

/** Step: the sidecar Envoys of the services and of the extra upstreams, started in parallel. */
export async function startSidecars(w: Wiring): Promise<void> {
  const sidecars = [...(w.selection.services ? SERVICES : []), ...w.extras.map((x) => x.name)];
  if (sidecars.length === 0) return;
  // No repick: the sidecar's outbound port is already in its running service's UPSTREAM_URL,
  // and the callers' sidecars start at the same time; the holds (released right before each
  // Envoy starts, which binds within a few hundred ms) cover the sidecars.
  await w.launchAll(
    sidecars.map((s) => {
      const sp = () => w.plan.services[s] as ServicePorts;
      return envoyPart(w, `sidecar-${s}`, sidecarFileName(s), () => [sp().inbound, sp().outbound, sp().admin]);
    }),
  );
  w.say('sidecars', `${sidecars.join(', ')} (mTLS inbound, loopback outbound; logs ${w.rel(join(w.paths.logDir, 'sidecar-*.log'))})`);
}
