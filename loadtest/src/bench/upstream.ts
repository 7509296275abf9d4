/**
 * The one upstream of benchmark modes 1-3: a minimal node:http server on 127.0.0.1 that answers
 * every request with a small JSON order (what orders would return, without verifying anything or
 * calling anyone), keep-alive. Run as its own process so it does not share the load generator's
 * event loop: `tsx loadtest/src/bench/upstream.ts <port-file>`; writes its port there when ready.
 */
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

const body = JSON.stringify({ order: { id: 'ord-1001', sku: 'sku-widget', quantity: 2, status: 'placed' }, hops: [] });
const server = createServer((req, res) => {
  req.resume();
  req.on('end', () => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
});
server.keepAliveTimeout = 60_000;
server.listen(0, '127.0.0.1', () => {
  const port = (server.address() as AddressInfo).port;
  if (process.argv[2]) writeFileSync(process.argv[2], String(port));
  process.stdout.write(`listening ${port}\n`);
});
const stop = () => server.close(() => process.exit(0));
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
