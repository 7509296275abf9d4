/**
 * A loopback HTTP proxy in front of a real edge, for the tests that show the k6 thresholds bite:
 * it forwards every request to the edge and, on purpose, delays the answers (`delayMs`: a slow
 * mesh) or rewrites the chain answers so that the last hop reports another subject (`tamperChain`:
 * a wrong mesh). A fault injector (the project's rule: mocks only for a clock or a fault); what it
 * forwards to is the real stack.
 */
import { Agent, createServer, request, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/** What the proxy does to the edge's answers. */
export interface EdgeProxyOptions {
  /** The edge, `http://127.0.0.1:<port>`. */
  readonly target: string;
  /** Delay every answer by this many milliseconds before sending it. Default 0. */
  readonly delayMs?: number;
  /** Make the last hop of every `/api/orders/*` chain answer report subject `mallory`. */
  readonly tamperChain?: boolean;
}

/** A running proxy. */
export interface EdgeProxy {
  readonly url: string;
  /** Answers rewritten so far. */
  readonly tampered: () => number;
  close(): Promise<void>;
}

/** Starts the proxy on 127.0.0.1 (a free port). */
export async function startEdgeProxy(opts: EdgeProxyOptions): Promise<EdgeProxy> {
  const target = new URL(opts.target);
  const agent = new Agent({ keepAlive: true, maxSockets: 64 });
  let tampered = 0;
  const server: Server = createServer((req, res) => {
    const up = request(
      { host: target.hostname, port: target.port, method: req.method, path: req.url, headers: { ...req.headers, host: target.host }, agent },
      (answer) => {
        const chunks: Buffer[] = [];
        answer.on('data', (c: Buffer) => chunks.push(c));
        answer.on('end', () => {
          let body = Buffer.concat(chunks);
          const headers: IncomingHttpHeaders = { ...answer.headers };
          if (opts.tamperChain && (req.url ?? '').startsWith('/api/orders/') && answer.statusCode === 200) {
            const doc = JSON.parse(body.toString('utf8')) as { hops?: Array<{ subject?: string }> };
            const last = doc.hops?.[doc.hops.length - 1];
            if (last) {
              last.subject = 'mallory';
              tampered += 1;
            }
            body = Buffer.from(JSON.stringify(doc));
          }
          delete headers['transfer-encoding'];
          headers['content-length'] = String(body.length);
          setTimeout(() => {
            res.writeHead(answer.statusCode ?? 502, headers);
            res.end(body);
          }, opts.delayMs ?? 0);
        });
      },
    );
    up.on('error', (err) => {
      res.writeHead(502, { 'content-type': 'text/plain' });
      res.end(`proxy: ${err.message}`);
    });
    req.pipe(up);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    tampered: () => tampered,
    close: () =>
      new Promise<void>((r) => {
        agent.destroy();
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
