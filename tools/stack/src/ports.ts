/**
 * Free loopback ports for a stack started with `ports: 'free'` (the tests), picked so that
 * parallel stacks do not take each other's ports between the pick and the bind:
 *
 * - a port is **reserved**: a listening socket on 127.0.0.1 holds it from the moment it is picked
 *   until just before the process that binds it is spawned ({@link PortReservation.release}), so
 *   no other `listen(0)` and no outgoing connection's source port can land on it meanwhile;
 * - the gap that is left (between the release and the child's own `listen`, a few hundred ms for
 *   Envoy, 1-3 s for a Node process under tsx) is covered by {@link isPortClash}: `startStack`
 *   starts such a part again on newly reserved ports, at most {@link PORT_ATTEMPTS} times.
 */
import { createServer, type Server } from 'node:net';

/** A held port. */
export interface PortReservation {
  readonly port: number;
  /** Closes the holding socket (idempotent). Call it right before spawning the process that binds `port`. */
  release(): Promise<void>;
}

/**
 * Reserves a free port for `purpose` (e.g. `auth`, `authz-1`, `orders.app`, `edge.http`, `redis`:
 * for logs, and for tests that inject their own reserver to simulate a port taken at bind time).
 * @throws Error when no port can be reserved.
 */
export type PortReserver = (purpose: string) => Promise<PortReservation>;

/** How many times a part is started on newly reserved ports when its port turned out to be taken. */
export const PORT_ATTEMPTS = 3;

function listenOn(port: number): Promise<Server> {
  return new Promise((resolveServer, reject) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen({ host: '127.0.0.1', port, exclusive: true }, () => resolveServer(srv));
  });
}

function holding(srv: Server): PortReservation {
  const addr = srv.address();
  if (addr === null || typeof addr === 'string') throw new Error('reservePort: the server has no TCP address');
  let released: Promise<void> | undefined;
  return {
    port: addr.port,
    release: () => (released ??= new Promise<void>((r) => srv.close(() => r()))),
  };
}

/** The default {@link PortReserver}: a port the OS picks (`listen(0)` on 127.0.0.1), held until released. */
export const reserveFreePort: PortReserver = async () => holding(await listenOn(0));

/**
 * Holds a given port on 127.0.0.1.
 * @throws the listen error (`EADDRINUSE` when it is taken).
 */
export async function holdPort(port: number): Promise<PortReservation> {
  return holding(await listenOn(port));
}

/** True when a part failed because its port was taken: `EADDRINUSE` (Node) or "Address already in use" (Envoy, redis-server). */
export function isPortClash(err: unknown): boolean {
  const text = err instanceof Error ? `${err.message}\n${String((err as { cause?: unknown }).cause ?? '')}` : String(err);
  return /EADDRINUSE|address already in use/i.test(text);
}
