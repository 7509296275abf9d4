/**
 * Loopback networking helpers for tests: a free port, and waiting until a TCP or HTTP endpoint
 * answers. Everything binds or connects to 127.0.0.1 unless told otherwise.
 */
import { request as httpRequest, type RequestOptions } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { createConnection, createServer } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * A TCP port that was free on `host` a moment ago (the OS picked it for a listener bound to port
 * 0, which was then closed). Another process may still take it before you bind it: prefer binding
 * your own servers to port 0, and use this only where a port must be known before a process that
 * cannot report its port starts.
 * @param host default `127.0.0.1`.
 * @returns a port number in 1..65535.
 */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen({ host, port: 0, exclusive: true }, () => {
      const addr = srv.address();
      if (addr === null || typeof addr === 'string') {
        srv.close();
        reject(new Error('freePort: the server has no TCP address'));
        return;
      }
      const { port } = addr;
      srv.close(() => resolvePort(port));
    });
  });
}

/** Options of {@link waitForTcp} and {@link waitForHttp}. */
export interface WaitOptions {
  /** Give up after this many milliseconds. Default 15000. */
  timeoutMs?: number;
  /** Pause between attempts, milliseconds. Default 50. */
  intervalMs?: number;
}

/**
 * Resolves once a TCP connection to `host:port` succeeds (the connection is closed at once).
 * @throws Error after `timeoutMs` naming the address and the last connect error.
 */
export async function waitForTcp(host: string, port: number, opts: WaitOptions = {}): Promise<void> {
  const deadline = Date.now() + (opts.timeoutMs ?? 15_000);
  let last = 'no attempt';
  while (Date.now() < deadline) {
    const ok = await new Promise<boolean>((done) => {
      const sock = createConnection({ host, port });
      sock.once('connect', () => {
        sock.destroy();
        done(true);
      });
      sock.once('error', (err) => {
        last = err.message;
        sock.destroy();
        done(false);
      });
    });
    if (ok) return;
    await sleep(opts.intervalMs ?? 50);
  }
  throw new Error(`waitForTcp: ${host}:${port} did not accept a connection in time (last error: ${last})`);
}

/** Options of {@link waitForHttp}. */
export interface WaitForHttpOptions extends WaitOptions {
  /** Which status counts as ready. Default: any 2xx. */
  expectStatus?: number | ((status: number) => boolean);
  /** Extra node:http(s) request options (headers, `ca`, `cert`, `key`, `servername`, ...). */
  requestOptions?: RequestOptions & { ca?: string | Buffer; cert?: string | Buffer; key?: string | Buffer; servername?: string };
}

/**
 * Resolves with the status and body of the first GET to `url` whose status is accepted.
 * Connection errors and other statuses are retried until `timeoutMs`.
 * @throws Error after `timeoutMs` naming the URL and the last status or error.
 */
export async function waitForHttp(url: string | URL, opts: WaitForHttpOptions = {}): Promise<{ status: number; body: string }> {
  const u = new URL(url);
  const accept =
    typeof opts.expectStatus === 'function'
      ? opts.expectStatus
      : typeof opts.expectStatus === 'number'
        ? (s: number) => s === opts.expectStatus
        : (s: number) => s >= 200 && s < 300;
  const deadline = Date.now() + (opts.timeoutMs ?? 15_000);
  let last = 'no attempt';
  while (Date.now() < deadline) {
    try {
      const res = await httpGet(u, opts.requestOptions ?? {});
      if (accept(res.status)) return res;
      last = `status ${res.status}`;
    } catch (err) {
      last = (err as Error).message;
    }
    await sleep(opts.intervalMs ?? 50);
  }
  throw new Error(`waitForHttp: ${u.href} not ready in time (last: ${last})`);
}

/** One GET with a 2 s socket timeout. */
function httpGet(u: URL, extra: RequestOptions): Promise<{ status: number; body: string }> {
  const request = u.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolveRes, reject) => {
    const req = request(u, { method: 'GET', agent: false, timeout: 2000, ...extra }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolveRes({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('request timed out')));
    req.on('error', reject);
    req.end();
  });
}
