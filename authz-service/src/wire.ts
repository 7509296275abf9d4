/**
 * The `CheckRequest` decoder the server registers instead of `@grpc/proto-loader`'s: it reads
 * the protobuf wire format with protobufjs's `Reader` and keeps only what the decision (and its
 * log line) needs, so a Check no longer builds every field of the request, with defaults, as
 * objects (issue 12: protobufjs decode was about 13 % of a Check's CPU).
 *
 * Kept, at the same paths and with the same values as the full decoder gives them (see
 * {@link CheckRequestView}): `attributes.request.http.id`, `.method`, `.path` (whole, query
 * included: the handler cuts it), `.headers` (the `map<string,string>`; a repeated key: the
 * last one, as protobufjs does) and `.header_map.headers` (every `HeaderValue` with `key`,
 * `value` and `raw_value`, in order, repeated keys kept). Everything else (`source`,
 * `destination`, `time`, `host`, `body`, `metadata_context`, unknown fields, ...) is skipped
 * without being decoded. A submessage or string field sent twice replaces the first, as in
 * protobufjs.
 *
 * Malformed input (truncated, a length past the end of the buffer or of the enclosing message,
 * an invalid wire type, field number 0, nesting deeper than protobufjs's recursion limit) never
 * throws: it decodes to a
 * {@link MalformedCheckRequest}, which the handler answers with a deny `CheckResponse`
 * (grpc-js would turn a throwing deserializer into a gRPC INTERNAL error).
 *
 * Upstream: https://protobuf.dev/programming-guides/encoding/ (wire format),
 * envoy/service/auth/v3/attribute_context.proto, envoy/config/core/v3/base.proto (HeaderMap,
 * HeaderValue), protobufjs `src/reader.js`.
 */
import protobuf from 'protobufjs/minimal.js';

const { Reader } = protobuf;
type Reader = protobuf.Reader;

/** One `envoy.config.core.v3.HeaderValue`, with proto3 defaults for absent fields. */
export interface HeaderValueView {
  key: string;
  value: string;
  raw_value: Buffer;
}

/**
 * The part of a `CheckRequest` the handler reads. Both the lean decoder's output and
 * proto-loader's full `CheckRequest__Output` have this shape, so the handler (and its tests
 * with recorded requests) takes either. Absent fields are `undefined` here, where the full
 * decoder has proto3 defaults (`''`, `null`).
 */
export interface CheckRequestView {
  attributes?: {
    request?: {
      http?: {
        id?: string;
        method?: string;
        path?: string;
        headers?: Record<string, string>;
        header_map?: { headers?: readonly HeaderValueView[] } | null;
      } | null;
    } | null;
  } | null;
}

/** A `CheckRequest` whose bytes could not be decoded; answered with a deny, never a gRPC error. */
export class MalformedCheckRequest {
  constructor(
    /** What the reader found wrong (protobufjs `RangeError` / `Error`, or ours). */
    readonly cause: Error,
  ) {}
}

/** Wire types (https://protobuf.dev/programming-guides/encoding/#structure). */
const LEN = 2;

/** Reads one tag; throws on field number 0 (protobufjs would skip it; the spec forbids it). */
function tag(r: Reader): number {
  const t = r.uint32();
  if (t >>> 3 === 0) throw new Error(`invalid field number 0 at offset ${r.pos}`);
  return t;
}

/** The end offset of the length-delimited field at `r.pos`, checked against the buffer. */
function end(r: Reader): number {
  const len = r.uint32();
  const e = r.pos + len;
  if (e > r.len) throw new RangeError(`length ${len} at offset ${r.pos} is past the end (${r.len})`);
  return e;
}

/**
 * A string field, its length checked against the buffer first: protobufjs's `BufferReader`
 * clamps a string's length to the end of the buffer instead of throwing.
 */
function str(r: Reader): string {
  const start = r.pos;
  end(r);
  r.pos = start;
  return r.string();
}

/**
 * Ends the loop over a message's fields: a field (string, bytes, submessage or skipped) whose
 * length ran past the message's end `e` read bytes that belong to the enclosing message.
 */
function closed(r: Reader, e: number): void {
  if (r.pos !== e) throw new RangeError(`a field runs past the end of its message (offset ${e}) to ${r.pos}`);
}

/** One `map<string,string>` entry into `into` (key 1, value 2; absent = ''). */
function mapEntry(r: Reader, into: Record<string, string>): void {
  const e = end(r);
  let key = '';
  let value = '';
  while (r.pos < e) {
    const t = tag(r);
    if (t === ((1 << 3) | LEN)) key = str(r);
    else if (t === ((2 << 3) | LEN)) value = str(r);
    else r.skipType(t & 7);
  }
  closed(r, e);
  into[key] = value;
}

/** `HeaderValue { string key = 1; string value = 2; bytes raw_value = 3; }` */
function headerValue(r: Reader): HeaderValueView {
  const e = end(r);
  const h: HeaderValueView = { key: '', value: '', raw_value: EMPTY };
  while (r.pos < e) {
    const t = tag(r);
    if (t === ((1 << 3) | LEN)) h.key = str(r);
    else if (t === ((2 << 3) | LEN)) h.value = str(r);
    else if (t === ((3 << 3) | LEN)) h.raw_value = r.bytes() as Buffer;
    else r.skipType(t & 7);
  }
  closed(r, e);
  return h;
}
const EMPTY = Buffer.alloc(0);

/** `HeaderMap { repeated HeaderValue headers = 1; }` */
function headerMap(r: Reader): { headers: HeaderValueView[] } {
  const e = end(r);
  const headers: HeaderValueView[] = [];
  while (r.pos < e) {
    const t = tag(r);
    if (t === ((1 << 3) | LEN)) headers.push(headerValue(r));
    else r.skipType(t & 7);
  }
  closed(r, e);
  return { headers };
}

type HttpView = NonNullable<NonNullable<NonNullable<CheckRequestView['attributes']>['request']>['http']>;

/** `AttributeContext.HttpRequest`: id 1, method 2, headers 3, path 4, header_map 13. */
function httpRequest(r: Reader): HttpView {
  const e = end(r);
  const http: HttpView = {};
  while (r.pos < e) {
    const t = tag(r);
    switch (t) {
      case (1 << 3) | LEN:
        http.id = str(r);
        break;
      case (2 << 3) | LEN:
        http.method = str(r);
        break;
      case (3 << 3) | LEN:
        mapEntry(r, (http.headers ??= Object.create(null) as Record<string, string>));
        break;
      case (4 << 3) | LEN:
        http.path = str(r);
        break;
      case (13 << 3) | LEN:
        http.header_map = headerMap(r);
        break;
      default:
        r.skipType(t & 7);
    }
  }
  closed(r, e);
  return http;
}

/** `AttributeContext.Request { Timestamp time = 1; HttpRequest http = 2; }`: only `http`. */
function request(r: Reader): NonNullable<NonNullable<CheckRequestView['attributes']>['request']> {
  const e = end(r);
  const req: { http?: HttpView } = {};
  while (r.pos < e) {
    const t = tag(r);
    if (t === ((2 << 3) | LEN)) req.http = httpRequest(r);
    else r.skipType(t & 7);
  }
  closed(r, e);
  return req;
}

/** `AttributeContext`: only `request` (4); source, destination, metadata, ... skipped. */
function attributes(r: Reader): NonNullable<CheckRequestView['attributes']> {
  const e = end(r);
  const attrs: NonNullable<CheckRequestView['attributes']> = {};
  while (r.pos < e) {
    const t = tag(r);
    if (t === ((4 << 3) | LEN)) attrs.request = request(r);
    else r.skipType(t & 7);
  }
  closed(r, e);
  return attrs;
}

/**
 * Decodes a serialized `envoy.service.auth.v3.CheckRequest` into a {@link CheckRequestView};
 * the gRPC `requestDeserialize` of the Check method. Never throws.
 *
 * @param bytes - one gRPC message payload (already decompressed by grpc-js)
 * @returns the view, or a {@link MalformedCheckRequest} when the bytes are not a valid encoding
 */
export function decodeCheckRequest(bytes: Buffer): CheckRequestView | MalformedCheckRequest {
  try {
    const r = Reader.create(bytes);
    const out: CheckRequestView = {};
    while (r.pos < r.len) {
      const t = tag(r);
      if (t === ((1 << 3) | LEN)) out.attributes = attributes(r);
      else r.skipType(t & 7);
    }
    return out;
  } catch (err) {
    return new MalformedCheckRequest(err instanceof Error ? err : new Error(String(err)));
  }
}
