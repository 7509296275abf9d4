/**
 * HTTP for the reliability and hostile suites, loopback only.
 *
 * - {@link request}: node:http with a keep-alive agent (what a well-behaved client does), a
 *   timeout, and the answer's status, headers and body. Never rejects: a transport failure is
 *   `{ error: 'ECONNREFUSED' | 'ECONNRESET' | 'timeout' | ... }`.
 * - {@link rawRequest}: bytes written as given on a fresh TCP connection (duplicate headers,
 *   control characters, overlong UTF-8, backslashes: what no HTTP library will send), and the
 *   status line parsed from whatever comes back.
 */
import { Agent, request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { connect } from 'node:net';

/** The outcome of one request: an HTTP answer, or a transport error code. */
export type Answer =
  | { status: number; headers: IncomingHttpHeaders; body: string; error?: undefined }
  | { status?: undefined; error: string; detail?: string };

const agent = new Agent({ keepAlive: true, maxSockets: 64, keepAliveMsecs: 1000 });

/**
 * One HTTP/1.1 request over a pooled keep-alive connection.
 * @param url - absolute `http://127.0.0.1:...` URL
 * @param opts.timeoutMs - whole-request deadline, default 10000
 */
export function request(
  url: string,
  opts: { method?: string; headers?: Record<string, string | string[]>; body?: string | Buffer; timeoutMs?: number; signal?: AbortSignal } = {},
): Promise<Answer> {
  return new Promise((resolve) => {
    const u = new URL(url);
    if (u.hostname !== '127.0.0.1' && u.hostname !== 'localhost') throw new Error(`not loopback: ${url}`);
    let settled = false;
    const done = (a: Answer) => {
      if (!settled) {
        settled = true;
        clearTimeout(timer);
        resolve(a);
      }
    };
    const headers: Record<string, string | string[]> = { ...(opts.headers ?? {}) };
    if (opts.body !== undefined) headers['content-length'] = String(Buffer.byteLength(opts.body));
    const req = httpRequest(
      { host: u.hostname, port: u.port, path: `${u.pathname}${u.search}`, method: opts.method ?? 'GET', headers, agent, signal: opts.signal },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => done({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', (err) => done({ error: codeOf(err), detail: err.message }));
      },
    );
    const timer = setTimeout(() => {
      req.destroy(Object.assign(new Error('timeout'), { code: 'timeout' }));
    }, opts.timeoutMs ?? 10_000);
    req.on('error', (err) => done({ error: codeOf(err), detail: err.message }));
    if (opts.body !== undefined) req.write(opts.body);
    req.end();
  });
}

function codeOf(err: unknown): string {
  const e = err as { code?: unknown; name?: unknown };
  if (e?.name === 'AbortError') return 'aborted';
  return typeof e?.code === 'string' ? e.code : 'exception';
}

/** JSON POST; the body parsed when it is JSON. */
export async function postJson(url: string, body: unknown, headers: Record<string, string> = {}): Promise<Answer & { json?: unknown }> {
  const a = await request(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
  if (a.status === undefined) return a;
  try {
    return { ...a, json: JSON.parse(a.body) as unknown };
  } catch {
    return a;
  }
}

/** What came back on a raw connection: the status of the first response line, or how it ended without one. */
export interface RawAnswer {
  /** HTTP status, or 0 when no status line came back. */
  status: number;
  /** The first line (status line) or a note: `closed without a response`, `timeout`, an error code. */
  line: string;
  /** Bytes received. */
  bytes: number;
}

/**
 * Writes `head` (request line and headers, CRLF-separated, WITHOUT the final blank line) and
 * `body` on a fresh connection, then reads until the peer closes or `timeoutMs` passes.
 * `Connection: close` is added so servers end the exchange.
 */
export function rawRequest(port: number, head: Buffer | string, body: Buffer | string = '', timeoutMs = 5000): Promise<RawAnswer> {
  return new Promise((resolve) => {
    const sock = connect({ host: '127.0.0.1', port });
    const chunks: Buffer[] = [];
    let settled = false;
    const finish = (note?: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.destroy();
      const all = Buffer.concat(chunks);
      const first = all.subarray(0, Math.max(0, all.indexOf('\r\n'))).toString('latin1');
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(first);
      resolve({ status: m ? Number(m[1]) : 0, line: m ? first : (note ?? (all.length ? `unparsed: ${JSON.stringify(all.subarray(0, 60).toString('latin1'))}` : 'closed without a response')), bytes: all.length });
    };
    const timer = setTimeout(() => finish('timeout'), timeoutMs);
    sock.on('connect', () => {
      const h = Buffer.isBuffer(head) ? head : Buffer.from(head, 'latin1');
      const b = Buffer.isBuffer(body) ? body : Buffer.from(body, 'latin1');
      sock.write(Buffer.concat([h, Buffer.from('\r\nconnection: close\r\n\r\n', 'latin1'), b]));
    });
    sock.on('data', (c: Buffer) => {
      chunks.push(c);
      // One status line is all we need; a server that keeps the connection open is not waited for.
      if (Buffer.concat(chunks).includes('\r\n\r\n')) setTimeout(() => finish(), 20);
    });
    sock.on('end', () => finish());
    sock.on('close', () => finish());
    sock.on('error', (err) => finish((err as NodeJS.ErrnoException).code ?? 'error'));
  });
}
