/**
 * Shared helpers for the envoy/ tests: a dev PKI in a temp dir, and small accessors into the
 * rendered config objects.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { request as httpRequest, createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { AddressInfo } from 'node:net';
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


/** What a recording upstream saw. */
export interface Recorded {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
}

/**
 * A tiny node:http upstream on 127.0.0.1:0 that records every request and answers 200 with a
 * JSON echo of the path. Closed at teardown.
 */
export async function recordingUpstream(t: { teardown(fn: () => unknown): void }, name = 'upstream'): Promise<{ port: number; seen: Recorded[]; server: Server }> {
  const seen: Recorded[] = [];
  const server = createServer((req, res) => {
    seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
    req.resume();
    req.on('end', () => {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ upstream: name, path: req.url }));
    });
  });
  await new Promise<void>((res) => server.listen(0, '127.0.0.1', () => res()));
  t.teardown(() => new Promise<void>((res) => server.close(() => res())));
  return { port: (server.address() as AddressInfo).port, seen, server };
}

/** The response of {@link send}. */
export interface Sent {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

/**
 * One HTTP(S)/1.1 request on a fresh connection (no agent, no pooling). TLS options (`ca`, `cert`,
 * `key`, `servername`) go straight to node:tls. `rawPath` is sent byte for byte (a URL would have
 * its dot segments resolved by the client before Envoy sees them). Rejects on a connection or TLS error.
 */
export function send(opts: {
  url: string;
  rawPath?: string;
  method?: string;
  headers?: Record<string, string>;
  ca?: string | Buffer;
  cert?: string | Buffer;
  key?: string | Buffer;
  servername?: string;
  timeoutMs?: number;
}): Promise<Sent> {
  const u = new URL(opts.url);
  const fn = u.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolveRes, reject) => {
    const req = fn(
      u,
      {
        ...(opts.rawPath ? { path: opts.rawPath } : {}),
        method: opts.method ?? 'GET',
        headers: opts.headers ?? {},
        agent: false,
        timeout: opts.timeoutMs ?? 5000,
        ...(opts.ca ? { ca: opts.ca } : {}),
        ...(opts.cert ? { cert: opts.cert } : {}),
        ...(opts.key ? { key: opts.key } : {}),
        ...(opts.servername ? { servername: opts.servername } : {}),
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolveRes({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error('request timed out')));
    req.on('error', reject);
    req.end();
  });
}
