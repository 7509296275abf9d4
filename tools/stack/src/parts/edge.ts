/** The last step: the edge Envoy, ready once `GET /healthz` passes through ext_authz. */
import { httpGet, waitUntil } from '../probe.js';
import { StackStartError } from './launcher.js';
import type { PortPlan } from './plan.js';
import type { Wiring } from './node.js';
import { envoyPart } from './envoy.js';

/** The edge's URLs: plain HTTP on loopback, HTTPS under the name its dev certificate carries. */
export function edgeUrls(plan: PortPlan): { http: string; https: string } {
  return { http: `http://127.0.0.1:${plan.edge.http}`, https: `https://localhost:${plan.edge.https}` };
}

/** Step: the edge Envoy, ready when `GET /healthz` answers 200 through ext_authz. @throws StackStartError (`edge`). */
export async function startEdge(w: Wiring): Promise<void> {
  const { plan } = w;
  await w.launch(
    envoyPart(
      w,
      'edge',
      'edge.yaml',
      () => [plan.edge.http, plan.edge.https, plan.edge.admin],
      async () => {
        plan.edge = { http: await w.reserve('edge.http'), https: await w.reserve('edge.https'), admin: await w.reserve('edge.admin') };
      },
    ),
  );
  const edge = edgeUrls(plan);
  await waitUntil(
    'edge /healthz',
    async () => {
      const r = await httpGet(`${edge.http}/healthz`);
      return r.status === 200 ? true : `GET /healthz: ${r.status || r.body}`;
    },
    { timeoutMs: w.readyTimeoutMs },
  ).catch((err: unknown) => {
    throw new StackStartError('edge', (err as Error).message, w.logOf('edge'));
  });
  w.say('edge', `${edge.http} and ${edge.https} ready (admin http://127.0.0.1:${plan.edge.admin})`);
}
