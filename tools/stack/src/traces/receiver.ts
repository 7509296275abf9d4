/**
 * A small OTLP/HTTP trace receiver for the local stack (`make up TRACING=on`): every Node process
 * and every Envoy exports to it, it keeps the last N traces in memory, and `make trace` reads them
 * back. Not a collector: no other signal, no forwarding, no persistence.
 *
 * - `POST /v1/traces`: an OTLP/HTTP export request (https://opentelemetry.io/docs/specs/otlp/#otlphttp),
 *   `Content-Type: application/x-protobuf`, optionally `Content-Encoding: gzip`. 200 with an
 *   `ExportTraceServiceResponse` (protobuf; `partial_success` when spans were refused);
 *   413 for a body over `maxBodyBytes` (before or after gzip), 400 for a body that does not
 *   decode, 415 for another content type or encoding. Errors are one line of plain text.
 * - `GET /api/traces`: the traces held, newest first ({@link TraceSummary} JSON).
 * - `GET /api/traces/<trace id>`: `{ traceId, spans }` ({@link StoredSpan} JSON), 404 when not held.
 * - `GET /api/stats`: what it has taken since it started ({@link ReceiverStats} JSON): counts
 *   only, never span content; `make bench --tracing` reads it to count the spans per request.
 * - `GET /healthz`: `ok`.
 *
 * It listens on a loopback address only, and a malformed request is answered, never a crash.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gunzip } from 'node:zlib';
import { decodeExportRequest, encodeExportResponse, OtlpDecodeError } from './otlp.js';
import { TraceStore, type TraceStoreOptions } from './store.js';

/** Largest export body accepted by default, bytes (4 MiB, after gzip too). */
export const DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024;

/** The OTLP/HTTP path of trace exports. */
export const TRACES_PATH = '/v1/traces';

/** Options of {@link startOtlpReceiver}. */
export interface OtlpReceiverOptions extends TraceStoreOptions {
  /** Port on `host`; 0 picks a free one. */
  port: number;
  /** Loopback address to bind: `127.0.0.1` (default), `::1` or `localhost`. Anything else is refused. */
  host?: string;
  /** Largest request body accepted, bytes, compressed and decompressed alike. Default {@link DEFAULT_MAX_BODY_BYTES}. */
  maxBodyBytes?: number;
  /** Called once per export request with what it did (the receiver process logs it; never span content). */
  onExport?: (e: { spans: number; rejected: number; dropped: number; evicted: number }) => void;
}

/**
 * Running totals since the receiver started (`GET /api/stats`). Counts only: no trace id, span
 * name or attribute. They keep counting after the store dropped or evicted what they count.
 */
export interface ReceiverStats {
  /** Export requests accepted (answered 200, partial successes included). */
  exports: number;
  /** Spans in those requests with a valid trace id, span id and time range (stored or not). */
  spans: number;
  /** Spans refused as a partial success (invalid trace id, span id or time range). */
  rejected: number;
  /** Valid spans the store did not keep: their trace was full, or the span id was already there. */
  dropped: number;
  /** Traces evicted from the store to make room. */
  evicted: number;
  /** Requests answered with an error status (400, 405, 413, 415, ...), exports or not. */
  refused: number;
  /**
   * Per `service.name` resource attribute: accepted export requests carrying its spans, and its
   * valid spans. At most {@link MAX_STATS_SERVICES} names; spans of any later name are counted
   * under `(other)`.
   */
  services: Record<string, { exports: number; spans: number }>;
}

/** Service names {@link ReceiverStats.services} counts one by one (a bound against senders inventing names). */
export const MAX_STATS_SERVICES = 256;

/** A running receiver. */
export interface OtlpReceiver {
  /** `http://127.0.0.1:<port>`: the OTLP base URL (`OTEL_EXPORTER_OTLP_ENDPOINT`) and the API's. */
  readonly url: string;
  readonly port: number;
  readonly store: TraceStore;
  /** A copy of the running totals ({@link ReceiverStats}), as `GET /api/stats` returns them. */
  stats(): ReceiverStats;
  /** Stops listening and closes open connections. */
  close(): Promise<void>;
}

const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost']);

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** Reads a request body, refusing it (413) as soon as it passes `limit` bytes. */
function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolveBody, reject) => {
    const declared = Number(req.headers['content-length']);
    if (Number.isFinite(declared) && declared > limit) {
      reject(new HttpError(413, `request body of ${declared} bytes exceeds the receiver's limit of ${limit} bytes`));
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    req.on('data', (c: Buffer) => {
      if (done) return;
      size += c.length;
      if (size > limit) {
        done = true;
        reject(new HttpError(413, `request body exceeds the receiver's limit of ${limit} bytes`));
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => {
      if (!done) {
        done = true;
        resolveBody(Buffer.concat(chunks));
      }
    });
    req.on('error', (err) => {
      if (!done) {
        done = true;
        reject(new HttpError(400, `request body could not be read: ${err.message}`));
      }
    });
  });
}

function gunzipBounded(body: Buffer, limit: number): Promise<Buffer> {
  return new Promise((resolveBody, reject) => {
    gunzip(body, { maxOutputLength: limit }, (err, out) => {
      if (!err) resolveBody(out);
      else if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE' || err instanceof RangeError) {
        reject(new HttpError(413, `decompressed request body exceeds the receiver's limit of ${limit} bytes`));
      } else reject(new HttpError(400, `request body is not valid gzip: ${err.message}`));
    });
  });
}

function send(res: ServerResponse, status: number, contentType: string, body: string | Uint8Array): void {
  if (res.headersSent) return;
  res.writeHead(status, { 'content-type': contentType, 'cache-control': 'no-store' });
  res.end(body);
}

/**
 * Starts the receiver.
 * @throws Error when `host` is not a loopback address, or the port cannot be bound (EADDRINUSE).
 */
export async function startOtlpReceiver(opts: OtlpReceiverOptions): Promise<OtlpReceiver> {
  const host = opts.host ?? '127.0.0.1';
  if (!LOOPBACK.has(host)) throw new Error(`otlp-receiver: refusing to listen on ${host}: loopback only (127.0.0.1, ::1, localhost)`);
  const maxBodyBytes = opts.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  if (!Number.isInteger(maxBodyBytes) || maxBodyBytes < 1) throw new RangeError(`otlp-receiver: maxBodyBytes must be a positive integer (got ${maxBodyBytes})`);
  const store = new TraceStore(opts);
  const totals: Omit<ReceiverStats, 'services'> = { exports: 0, spans: 0, rejected: 0, dropped: 0, evicted: 0, refused: 0 };
  // A Map, not a plain object: the keys are whatever service names senders put in their resources (`__proto__` included).
  const services = new Map<string, { exports: number; spans: number }>();
  const stats = (): ReceiverStats => ({ ...totals, services: Object.fromEntries([...services].map(([k, v]) => [k, { ...v }])) });

  const exportTraces = async (req: IncomingMessage, res: ServerResponse) => {
    const type = String(req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase();
    if (type !== 'application/x-protobuf' && type !== 'application/protobuf') {
      req.resume();
      throw new HttpError(415, `content-type must be application/x-protobuf (OTLP/HTTP protobuf), got ${type || 'none'}`);
    }
    const encoding = String(req.headers['content-encoding'] ?? 'identity').trim().toLowerCase();
    if (encoding !== 'identity' && encoding !== 'gzip') {
      req.resume();
      throw new HttpError(415, `content-encoding ${encoding} is not supported (identity or gzip)`);
    }
    let body = await readBody(req, maxBodyBytes);
    if (encoding === 'gzip') body = await gunzipBounded(body, maxBodyBytes);
    let decoded;
    try {
      decoded = decodeExportRequest(body);
    } catch (err) {
      if (err instanceof OtlpDecodeError) throw new HttpError(400, err.message);
      throw err;
    }
    const added = store.add(decoded.spans);
    totals.exports += 1;
    totals.spans += decoded.spans.length;
    totals.rejected += decoded.rejected;
    totals.dropped += added.dropped;
    totals.evicted += added.evicted;
    const perService = new Map<string, number>();
    for (const span of decoded.spans) perService.set(span.serviceName, (perService.get(span.serviceName) ?? 0) + 1);
    for (const [service, n] of perService) {
      const name = services.has(service) || services.size < MAX_STATS_SERVICES ? service : '(other)';
      const entry = services.get(name) ?? { exports: 0, spans: 0 };
      entry.exports += 1;
      entry.spans += n;
      services.set(name, entry);
    }
    opts.onExport?.({ spans: added.stored, rejected: decoded.rejected, dropped: added.dropped, evicted: added.evicted });
    send(res, 200, 'application/x-protobuf', encodeExportResponse(decoded.rejected, decoded.rejected ? `${decoded.rejected} span(s) with an invalid trace id, span id or time range` : ''));
  };

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    if (path === TRACES_PATH) {
      if (req.method !== 'POST') throw new HttpError(405, `${TRACES_PATH} takes POST`);
      await exportTraces(req, res);
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') throw new HttpError(405, `${path} takes GET`);
    if (path === '/healthz') return send(res, 200, 'text/plain', 'ok\n');
    if (path === '/api/stats') return send(res, 200, 'application/json', JSON.stringify(stats()));
    if (path === '/api/traces') return send(res, 200, 'application/json', JSON.stringify({ traces: store.list() }));
    const m = /^\/api\/traces\/([^/]+)$/.exec(path);
    if (m) {
      const id = (m[1] ?? '').toLowerCase();
      if (!/^[0-9a-f]{32}$/.test(id)) throw new HttpError(400, 'a trace id is 32 hex digits');
      const spans = store.get(id);
      if (!spans) throw new HttpError(404, `trace ${id} is not held (the receiver keeps the last ${store.maxTraces} traces)`);
      return send(res, 200, 'application/json', JSON.stringify({ traceId: id, spans }));
    }
    throw new HttpError(404, `no such path: ${path} (POST ${TRACES_PATH}, GET /api/traces, GET /api/traces/<trace id>, GET /api/stats)`);
  };

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      const status = err instanceof HttpError ? err.status : 500;
      totals.refused += 1;
      const message = err instanceof HttpError ? err.message : 'internal error';
      if (status === 413 && !res.headersSent) {
        // A refused upload may still be arriving: answer, then close the connection instead of reading on.
        res.setHeader('connection', 'close');
        res.once('finish', () => req.socket.destroy());
      }
      send(res, status, 'text/plain; charset=utf-8', `${message}\n`);
    });
  });
  server.requestTimeout = 30_000;
  server.headersTimeout = 10_000;
  server.on('clientError', (_err, socket) => socket.destroy());
  await new Promise<void>((resolveListen, reject) => {
    server.once('error', reject);
    server.listen({ host: host === 'localhost' ? '127.0.0.1' : host, port: opts.port, exclusive: true }, () => {
      server.off('error', reject);
      resolveListen();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const urlHost = host === '::1' ? '[::1]' : host === 'localhost' ? '127.0.0.1' : host;
  return {
    url: `http://${urlHost}:${port}`,
    port,
    store,
    stats,
    close: () =>
      new Promise<void>((resolveClose) => {
        server.closeAllConnections();
        server.close(() => resolveClose());
      }),
  };
}
