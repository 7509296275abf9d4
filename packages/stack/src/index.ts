/**
 * @jwt-mesh/stack: the local jwt-mesh stack. One launcher for `make up` and the end-to-end tests.
 * See README.md.
 */
export { startStack, StackStartError, FIXED_PORTS, SERVICES, redactUrl } from './stack.js';
export { reserveFreePort, holdPort, isPortClash, PORT_ATTEMPTS } from './ports.js';
export type { PortReservation, PortReserver } from './ports.js';
export type { Stack, StackOptions, PartSelection, ExtraUpstream } from './stack.js';
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
