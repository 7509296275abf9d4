/**
 * @jwt-mesh/stack: the local jwt-mesh stack. One launcher for `make up` and the end-to-end tests.
 * See README.md.
 */
export { startStack, StackStartError, FIXED_PORTS, SERVICES, redactUrl, otlpCollectorOf, TRACES_PART, DEFAULT_TRACE_RECEIVER_PORT } from './stack.js';
export { reserveFreePort, holdPort, isPortClash, PORT_ATTEMPTS } from './ports.js';
export type { PortReservation, PortReserver } from './ports.js';
export type { Stack, StackOptions, PartSelection, ExtraUpstream, StackTracing, OtlpCollector } from './stack.js';
export { startOtlpReceiver, DEFAULT_MAX_BODY_BYTES, TRACES_PATH, MAX_STATS_SERVICES } from './traces/receiver.js';
export type { OtlpReceiver, OtlpReceiverOptions, ReceiverStats } from './traces/receiver.js';
export { TraceStore, topSpans, EDGE_SERVICE } from './traces/store.js';
export type { TraceStoreOptions, TraceSummary, AddResult } from './traces/store.js';
export { decodeExportRequest, encodeExportRequest, encodeExportResponse, OtlpDecodeError, SPAN_KINDS, STATUS_CODES } from './traces/otlp.js';
export type { StoredSpan, AttributeValue, DecodedExport, SpanInput, SpanKindName, StatusCodeName } from './traces/otlp.js';
export { formatWaterfall, treeOrder, WATERFALL_ATTRIBUTES } from './traces/waterfall.js';
export type { WaterfallOptions } from './traces/waterfall.js';
export { fetchTraces, pickTrace, showTrace } from './traces/show.js';
export type { ShowTraceOptions } from './traces/show.js';
export { stopStack, readState, writeState, processStatus, stackStateSchema } from './state.js';
export type { StackState, ServiceUrls, StopReport, ProcessStatus } from './state.js';
export { DEMO_USERS, seedUsers } from './users.js';
export type { DemoUser } from './users.js';
export { runDemo } from './demo.js';
export { readyMessage, walkthrough, partsTable } from './walkthrough.js';
export { startPgliteServer, SessionQueue, lastReadyForQuery } from './pglite.js';
export type { PgliteServer, PgliteServerOptions } from './pglite.js';
export { isOurs, isAlive, commandLineOf, stopRecorded, spawnProcess } from './proc.js';
export type { ProcessRecord, ManagedProcess, SpawnOptions } from './proc.js';
export { grpcHealth, httpGet, redisPing, postgresPing, waitUntil } from './probe.js';
