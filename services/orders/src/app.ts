/**
 * orders: the first hop behind the edge. Every route verifies the JWT locally (the plugin),
 * then calls inventory through the local sidecar with the same token and trace headers.
 *
 * - `GET /api/orders/:id` (scope `orders:read`): the order, its stock from inventory, and the
 *   `hops` each service reported (orders, inventory, profile).
 * - `POST /api/orders` (scope `orders:write`): body `{ sku, quantity }`; reserves stock at
 *   inventory (`POST /api/inventory/reservations`, scope `inventory:write`) and stores the
 *   order for the caller. 400 on a bad body, 404 unknown SKU, 409 not enough stock.
 *
 * A failure at a later hop (401/403/5xx, with its `WWW-Authenticate`) is answered unchanged.
 */
import { randomBytes } from 'node:crypto';
import type { Authenticator } from '@jwt-mesh/core';
import { identityOfRequest, type MeshClient } from '@jwt-mesh/fastify-auth';
import { createMetrics, type Readiness, type ServiceMetrics } from '@jwt-mesh/runtime';
import { createServiceApp, hopOf, HttpError, timedDownstream, type HopInfo } from '@jwt-mesh/runtime/fastify';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { z } from 'zod';

/** The service name: logs, metrics, hop reports, `realm`. */
export const SERVICE = 'orders';

/** An order. In memory: this is a demo of the auth mesh, not of order management. */
export interface Order {
  readonly id: string;
  readonly sku: string;
  readonly quantity: number;
  readonly status: 'placed' | 'reserved';
  /** `sub` of the user who placed it; `null` for the seeded demo orders everyone may read. */
  readonly owner: string | null;
  readonly createdAt: string;
}

/** Seed data: two orders readable by every authenticated user. */
export function seedOrders(): Map<string, Order> {
  const at = '2025-01-01T00:00:00.000Z';
  return new Map<string, Order>([
    ['ord-1001', { id: 'ord-1001', sku: 'sku-widget', quantity: 2, status: 'placed', owner: null, createdAt: at }],
    ['ord-1002', { id: 'ord-1002', sku: 'sku-gadget', quantity: 1, status: 'placed', owner: null, createdAt: at }],
  ]);
}

/** What inventory answers for `GET /api/inventory/:sku`. */
interface StockAnswer {
  readonly sku: string;
  readonly name: string;
  readonly available: number;
  readonly reserved: number;
  readonly hops: HopInfo[];
}

/** What inventory answers for `POST /api/inventory/reservations`. */
interface ReservationAnswer {
  readonly reservation: { readonly id: string; readonly sku: string; readonly quantity: number; readonly orderId: string };
  readonly hops: HopInfo[];
}

/** Dependencies of {@link buildApp}; everything with I/O is injected. */
export interface OrdersDeps {
  /** The core's decision maker (JWKS + revocation). */
  readonly authenticator: Authenticator;
  readonly readiness: Readiness;
  /** The mesh client for inventory (the local sidecar's outbound listener, or inventory itself). */
  readonly inventory: MeshClient;
  /** Default: a logger at `info` on stdout. */
  readonly logger?: Logger;
  /** Default: a fresh registry. */
  readonly metrics?: ServiceMetrics;
  /** Default: {@link seedOrders}. */
  readonly orders?: Map<string, Order>;
}

const OrderId = z.string().regex(/^ord-[a-z0-9-]{1,40}$/, 'must look like ord-1001');
const Sku = z.string().regex(/^sku-[a-z0-9-]{1,40}$/, 'must look like sku-widget');
/** Body of `POST /api/orders`. */
export const NewOrder = z.strictObject({
  sku: Sku,
  quantity: z.number().int().min(1).max(100),
});

/**
 * Builds the orders app (not listening).
 */
export async function buildApp(deps: OrdersDeps): Promise<FastifyInstance> {
  const metrics = deps.metrics ?? createMetrics(SERVICE);
  const app = await createServiceApp({ service: SERVICE, logger: deps.logger, metrics, authenticator: deps.authenticator, readiness: deps.readiness });
  const orders = deps.orders ?? seedOrders();

  const timed = <T>(target: string, fn: () => Promise<T>): Promise<T> => timedDownstream(metrics, target, fn);

  app.get('/api/orders/:id', { config: { auth: { scopes: ['orders:read'] } } }, async (request) => {
    const identity = identityOfRequest(request);
    const id = OrderId.parse((request.params as { id: string }).id);
    const order = orders.get(id);
    if (order === undefined || (order.owner !== null && order.owner !== identity.sub)) {
      throw new HttpError(404, 'not_found', `order ${id} not found`);
    }
    const stock = await timed('inventory', () =>
      deps.inventory.call<StockAnswer>(request, { method: 'GET', path: `/api/inventory/${encodeURIComponent(order.sku)}`, route: '/api/inventory/:sku' }),
    );
    return {
      order: { ...order, stock: { name: stock.body.name, available: stock.body.available, reserved: stock.body.reserved } },
      hops: [hopOf(SERVICE, 'http', identity, request), ...stock.body.hops],
    };
  });

  app.post('/api/orders', { config: { auth: { scopes: ['orders:write'] } } }, async (request, reply) => {
    const identity = identityOfRequest(request);
    const body = NewOrder.parse(request.body);
    const id = `ord-${randomBytes(6).toString('hex')}`;
    const reserved = await timed('inventory', () =>
      deps.inventory.call<ReservationAnswer>(request, {
        method: 'POST',
        path: '/api/inventory/reservations',
        route: '/api/inventory/reservations',
        body: { sku: body.sku, quantity: body.quantity, orderId: id },
      }),
    );
    const order: Order = { id, sku: body.sku, quantity: body.quantity, status: 'reserved', owner: identity.sub, createdAt: new Date().toISOString() };
    orders.set(id, order);
    return reply.code(201).header('location', `/api/orders/${id}`).send({
      order,
      reservation: reserved.body.reservation,
      hops: [hopOf(SERVICE, 'http', identity, request), ...reserved.body.hops],
    });
  });

  return app;
}
