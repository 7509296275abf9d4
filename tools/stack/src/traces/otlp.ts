/**
 * OTLP trace export requests (OTLP/HTTP, protobuf body, https://opentelemetry.io/docs/specs/otlp/#otlphttp)
 * decoded into flat spans the receiver stores.
 *
 * The protobuf code is the OpenTelemetry project's own: the protobufjs static module generated
 * from opentelemetry-proto that `@opentelemetry/otlp-transformer` 0.208.0 ships
 * (`build/src/generated/root.js`, decode and encode for every OTLP message). Later versions of
 * that package replaced it with hand-written serializers that cannot decode a request, and there
 * is no `@opentelemetry/proto` package, so the stack pins 0.208.0 for this file alone.
 */
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

/** A decoded protobuf message as the generated code returns it (fields by their camelCase names). */
type Message = Record<string, unknown>;

/** The generated message types this module uses: `decode` (throws on a malformed body), `encode`, `fromObject`. */
interface MessageType {
  decode(bytes: Uint8Array): Message;
  encode(message: Message): { finish(): Uint8Array };
  fromObject(object: Record<string, unknown>): Message;
}

interface OtlpRoot {
  opentelemetry: {
    proto: {
      collector: { trace: { v1: { ExportTraceServiceRequest: MessageType; ExportTraceServiceResponse: MessageType } } };
    };
  };
}

const root = require('@opentelemetry/otlp-transformer/build/src/generated/root.js') as OtlpRoot;
const { ExportTraceServiceRequest, ExportTraceServiceResponse } = root.opentelemetry.proto.collector.trace.v1;

/** An attribute value as stored and served as JSON (OTLP AnyValue: arrays and key-value lists nest; bytes as base64). */
export type AttributeValue = string | number | boolean | null | AttributeValue[] | { [key: string]: AttributeValue };

/** OTLP `Span.SpanKind`, by name. */
export const SPAN_KINDS = ['unspecified', 'internal', 'server', 'client', 'producer', 'consumer'] as const;
export type SpanKindName = (typeof SPAN_KINDS)[number];

/** OTLP `Status.StatusCode`, by name. */
export const STATUS_CODES = ['unset', 'ok', 'error'] as const;
export type StatusCodeName = (typeof STATUS_CODES)[number];

/** One span, flattened with its resource's service name. Times are Unix nanoseconds as decimal strings (exact; JSON has no 64-bit integers). */
export interface StoredSpan {
  /** 32 lower-case hex digits (W3C Trace Context trace-id). */
  traceId: string;
  /** 16 lower-case hex digits. */
  spanId: string;
  /** The parent's span id, or null for a span without one. */
  parentSpanId: string | null;
  name: string;
  kind: SpanKindName;
  /** `service.name` of the span's resource; `unknown_service` when it has none. */
  serviceName: string;
  /** Instrumentation scope name (`@jwt-mesh/core`, ...); '' when none. */
  scope: string;
  /** Start, Unix epoch nanoseconds, decimal. */
  startTimeUnixNano: string;
  /** End, Unix epoch nanoseconds, decimal (never before the start). */
  endTimeUnixNano: string;
  status: { code: StatusCodeName; message: string };
  attributes: Record<string, AttributeValue>;
  /** Attributes of the span's resource (`service.name`, `telemetry.sdk.*`, ...). */
  resource: Record<string, AttributeValue>;
}

/** What one export request held. */
export interface DecodedExport {
  /** Spans with valid ids and times. */
  spans: StoredSpan[];
  /** Spans refused: a trace id that is not 16 non-zero bytes, a span id that is not 8 non-zero bytes, a parent id of another length, an end before the start. */
  rejected: number;
}

/** Raised for a body that is not an OTLP ExportTraceServiceRequest (the receiver answers 400). */
export class OtlpDecodeError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** Nesting limit of AnyValue arrays and key-value lists when converted (deeper values become the string `"[nested]"`). */
const MAX_VALUE_DEPTH = 8;

function hex(bytes: unknown): string {
  return bytes instanceof Uint8Array ? Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex') : '';
}

function isNonZeroHex(id: string, bytes: number): boolean {
  return id.length === bytes * 2 && !/^0+$/.test(id);
}

/** A protobufjs 64-bit value (a `Long` when the `long` package is present, else a number) as a decimal string. */
function uint64String(v: unknown): string {
  if (v === null || v === undefined) return '0';
  if (typeof v === 'number') return Number.isSafeInteger(v) && v >= 0 ? String(v) : '0';
  if (typeof v === 'object' && 'toString' in v && 'low' in (v as object)) {
    const long = v as { toString(radix?: number): string; unsigned?: boolean; high: number; low: number };
    // fixed64 fields decode unsigned; read the two 32-bit halves so a signed Long cannot turn negative.
    return ((BigInt(long.high >>> 0) << 32n) | BigInt(long.low >>> 0)).toString();
  }
  return '0';
}

function anyValue(v: unknown, depth = 0): AttributeValue {
  if (v === null || typeof v !== 'object') return null;
  const m = v as Message;
  if (depth >= MAX_VALUE_DEPTH) return '[nested]';
  if (typeof m['stringValue'] === 'string') return m['stringValue'];
  if (typeof m['boolValue'] === 'boolean') return m['boolValue'];
  if (m['intValue'] !== null && m['intValue'] !== undefined) {
    const iv = m['intValue'];
    if (typeof iv === 'number') return iv;
    const long = iv as { high: number; low: number };
    const big = BigInt.asIntN(64, (BigInt(long.high >>> 0) << 32n) | BigInt(long.low >>> 0));
    return big >= BigInt(Number.MIN_SAFE_INTEGER) && big <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(big) : big.toString();
  }
  if (typeof m['doubleValue'] === 'number') return m['doubleValue'];
  if (m['bytesValue'] instanceof Uint8Array) return Buffer.from(m['bytesValue'] as Uint8Array).toString('base64');
  const array = m['arrayValue'] as Message | null | undefined;
  if (array && Array.isArray(array['values'])) return (array['values'] as unknown[]).map((x) => anyValue(x, depth + 1));
  const list = m['kvlistValue'] as Message | null | undefined;
  if (list && Array.isArray(list['values'])) return keyValues(list['values'], depth + 1);
  return null;
}

function keyValues(list: unknown, depth = 0): Record<string, AttributeValue> {
  const out: Record<string, AttributeValue> = {};
  if (!Array.isArray(list)) return out;
  for (const kv of list as Message[]) {
    if (kv && typeof kv['key'] === 'string') out[kv['key']] = anyValue(kv['value'], depth);
  }
  return out;
}

/**
 * Decodes an OTLP/HTTP protobuf body (`ExportTraceServiceRequest`, opentelemetry-proto
 * `collector/trace/v1/trace_service.proto`) into flat spans.
 * @param body the request body, already decompressed.
 * @returns the valid spans and how many were refused (see {@link DecodedExport.rejected}).
 * @throws OtlpDecodeError when the bytes are not a well-formed message of that type.
 */
export function decodeExportRequest(body: Uint8Array): DecodedExport {
  let request: Message;
  try {
    request = ExportTraceServiceRequest.decode(body);
  } catch (err) {
    throw new OtlpDecodeError(`not an OTLP ExportTraceServiceRequest: ${(err as Error).message}`, { cause: err });
  }
  const spans: StoredSpan[] = [];
  let rejected = 0;
  for (const rs of (request['resourceSpans'] ?? []) as Message[]) {
    const resource = keyValues((rs['resource'] as Message | null)?.['attributes']);
    const service = resource['service.name'];
    const serviceName = typeof service === 'string' && service !== '' ? service : 'unknown_service';
    for (const ss of (rs['scopeSpans'] ?? []) as Message[]) {
      const scopeName = (ss['scope'] as Message | null)?.['name'];
      const scope = typeof scopeName === 'string' ? scopeName : '';
      for (const s of (ss['spans'] ?? []) as Message[]) {
        const traceId = hex(s['traceId']);
        const spanId = hex(s['spanId']);
        const parent = hex(s['parentSpanId']);
        const start = uint64String(s['startTimeUnixNano']);
        const end = uint64String(s['endTimeUnixNano']);
        if (!isNonZeroHex(traceId, 16) || !isNonZeroHex(spanId, 8) || (parent !== '' && parent.length !== 16) || BigInt(end) < BigInt(start)) {
          rejected += 1;
          continue;
        }
        const kind = typeof s['kind'] === 'number' ? SPAN_KINDS[s['kind']] : undefined;
        const status = s['status'] as Message | null | undefined;
        const code = typeof status?.['code'] === 'number' ? STATUS_CODES[status['code']] : undefined;
        spans.push({
          traceId,
          spanId,
          parentSpanId: parent === '' || /^0+$/.test(parent) ? null : parent,
          name: typeof s['name'] === 'string' ? s['name'] : '',
          kind: kind ?? 'unspecified',
          serviceName,
          scope,
          startTimeUnixNano: start,
          endTimeUnixNano: end,
          status: { code: code ?? 'unset', message: typeof status?.['message'] === 'string' ? status['message'] : '' },
          attributes: keyValues(s['attributes']),
          resource,
        });
      }
    }
  }
  return { spans, rejected };
}

/**
 * The protobuf body of an OTLP `ExportTraceServiceResponse`: empty when everything was accepted,
 * else `partial_success.rejected_spans` with a message (OTLP/HTTP "partial success").
 */
export function encodeExportResponse(rejected: number, message = ''): Uint8Array {
  const response = rejected > 0 ? ExportTraceServiceResponse.fromObject({ partialSuccess: { rejectedSpans: rejected, errorMessage: message } }) : ExportTraceServiceResponse.fromObject({});
  return ExportTraceServiceResponse.encode(response).finish();
}

/** A span to encode with {@link encodeExportRequest} (tests, and anything that sends spans to a receiver). */
export interface SpanInput {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind?: SpanKindName;
  /** Unix epoch nanoseconds. */
  startTimeUnixNano: bigint;
  endTimeUnixNano: bigint;
  attributes?: Record<string, string | number | boolean>;
  status?: StatusCodeName;
}

/**
 * Encodes spans of one service as an OTLP `ExportTraceServiceRequest` protobuf body, with the
 * same generated code that decodes it.
 */
export function encodeExportRequest(serviceName: string, spans: SpanInput[]): Uint8Array {
  const value = (v: string | number | boolean) =>
    typeof v === 'string' ? { stringValue: v } : typeof v === 'boolean' ? { boolValue: v } : Number.isInteger(v) ? { intValue: v } : { doubleValue: v };
  const message = ExportTraceServiceRequest.fromObject({
    resourceSpans: [
      {
        resource: { attributes: [{ key: 'service.name', value: { stringValue: serviceName } }] },
        scopeSpans: [
          {
            scope: { name: 'jwt-mesh-test' },
            spans: spans.map((s) => ({
              traceId: Buffer.from(s.traceId, 'hex'),
              spanId: Buffer.from(s.spanId, 'hex'),
              ...(s.parentSpanId ? { parentSpanId: Buffer.from(s.parentSpanId, 'hex') } : {}),
              name: s.name,
              kind: SPAN_KINDS.indexOf(s.kind ?? 'internal'),
              startTimeUnixNano: s.startTimeUnixNano.toString(),
              endTimeUnixNano: s.endTimeUnixNano.toString(),
              attributes: Object.entries(s.attributes ?? {}).map(([key, v]) => ({ key, value: value(v) })),
              status: { code: STATUS_CODES.indexOf(s.status ?? 'unset') },
            })),
          },
        ],
      },
    ],
  });
  return ExportTraceServiceRequest.encode(message).finish();
}
