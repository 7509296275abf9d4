/**
 * Shared helpers for the envoy/ tests: a dev PKI in a temp dir, and small accessors into the
 * rendered config objects.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createDevCerts, type DevCerts } from '../src/certs.js';

export type Obj = Record<string, any>;

/** Creates a full dev PKI in a fresh temp dir, removed at teardown. */
export async function tempCerts(t: { teardown(fn: () => unknown): void }): Promise<DevCerts> {
  const dir = mkdtempSync(join(tmpdir(), 'jwt-mesh-certs-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return createDevCerts({ dir });
}

/** A temp dir removed at teardown. */
export function tempDir(t: { teardown(fn: () => unknown): void }, prefix = 'jwt-mesh-envoy-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export function listener(config: Obj, name: string): Obj {
  const l = (config.static_resources.listeners as Obj[]).find((x) => x.name === name);
  if (!l) throw new Error(`no listener ${name}`);
  return l;
}

export function cluster(config: Obj, name: string): Obj {
  const c = (config.static_resources.clusters as Obj[]).find((x) => x.name === name);
  if (!c) throw new Error(`no cluster ${name}`);
  return c;
}

export function clusterNames(config: Obj): string[] {
  return (config.static_resources.clusters as Obj[]).map((c) => c.name as string);
}

/** The HttpConnectionManager typed_config of a listener's (only) filter chain. */
export function hcmOf(l: Obj): Obj {
  return l.filter_chains[0].filters[0].typed_config as Obj;
}

export function httpFilter(hcm: Obj, typeSuffix: string): Obj | undefined {
  return (hcm.http_filters as Obj[]).find((f) => String(f.typed_config['@type']).endsWith(typeSuffix));
}

export function endpointsOf(c: Obj): Array<{ host: string; port: number }> {
  return (c.load_assignment.endpoints as Obj[]).flatMap((e) =>
    (e.lb_endpoints as Obj[]).map((lb) => ({
      host: lb.endpoint.address.socket_address.address as string,
      port: lb.endpoint.address.socket_address.port_value as number,
    })),
  );
}
