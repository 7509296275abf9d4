/**
 * A TCP proxy on 127.0.0.1:0 that can delay the client-to-server direction: an injected network
 * latency in front of Redis, so calls can be held in flight deterministically (no mocks); and
 * a partition (`partitioned = true`: every connection cut, new ones closed at once).
 */
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';

export interface DelayProxy {
  readonly port: number;
  /** Delay applied to every client-to-server chunk from now on, milliseconds. */
  delayMs: number;
  /** Client-to-server chunks forwarded with a delay so far. */
  readonly delayed: number;
  /** While true, existing connections are cut and new ones are closed on accept (a partition). */
  partitioned: boolean;
  close(): Promise<void>;
}

export async function startDelayProxy(targetPort: number, targetHost = '127.0.0.1'): Promise<DelayProxy> {
  const sockets = new Set<Socket>();
  let delayed = 0;
  const proxy: { delayMs: number; partitioned: boolean } = { delayMs: 0, partitioned: false };
  const server: Server = createServer((client) => {
    if (proxy.partitioned) {
      client.destroy();
      return;
    }
    const upstream = createConnection(targetPort, targetHost);
    sockets.add(client).add(upstream);
    client.on('data', (chunk) => {
      if (proxy.delayMs > 0) {
        delayed++;
        setTimeout(() => upstream.write(chunk), proxy.delayMs);
      } else upstream.write(chunk);
    });
    upstream.pipe(client);
    const end = (): void => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('close', end).on('error', end);
    upstream.on('close', end).on('error', end);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    get delayMs() {
      return proxy.delayMs;
    },
    set delayMs(v: number) {
      proxy.delayMs = v;
    },
    get delayed() {
      return delayed;
    },
    get partitioned() {
      return proxy.partitioned;
    },
    set partitioned(v: boolean) {
      proxy.partitioned = v;
      if (v) for (const sock of sockets) sock.destroy();
    },
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}
