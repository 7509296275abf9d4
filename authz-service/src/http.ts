/**
 * The small HTTP side server: `GET /metrics` (Prometheus text format) and `GET /healthz`
 * (readiness: 200 while the gRPC health status is SERVING, 503 otherwise). Plain `node:http`:
 * two fixed routes do not need a framework.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';

/** Options of {@link startHttpServer}. */
export interface HttpServerOptions {
  readonly registry: Registry;
  /** Current readiness (the gRPC health status is SERVING). */
  readonly isReady: () => boolean;
  readonly host: string;
  /** TCP port, 0 for any free one. */
  readonly port: number;
}

/**
 * Starts the metrics/health HTTP server.
 *
 * @returns the server and its bound port
 * @throws Error when the address cannot be bound
 */
export async function startHttpServer(opts: HttpServerOptions): Promise<{ server: Server; port: number }> {
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    if (path === '/metrics') {
      opts.registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': opts.registry.contentType }).end(text),
        () => res.writeHead(500).end(),
      );
    } else if (path === '/healthz') {
      const ready = opts.isReady();
      res
        .writeHead(ready ? 200 : 503, { 'content-type': 'application/json', 'cache-control': 'no-store' })
        .end(JSON.stringify({ status: ready ? 'SERVING' : 'NOT_SERVING' }));
    } else {
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"not_found"}');
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return { server, port: (server.address() as AddressInfo).port };
}
