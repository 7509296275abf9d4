/**
 * inventory: the middle hop. Verifies the JWT locally (the plugin), and calls profile over gRPC
 * (`jwtmesh.profile.v1.ProfileService/GetProfile`) with the same token in `authorization`
 * metadata plus `traceparent` / `tracestate` / `x-request-id`.
 *
 * - `GET /api/inventory/:sku` (scope `inventory:read`): stock of a SKU, the caller's profile
 *   (from profile, scope `profile:read` there) and the hops (inventory, profile).
 * - `POST /api/inventory/reservations` (scope `inventory:write`): body `{ sku, quantity, orderId? }`;
 *   201 with the reservation; 404 unknown SKU; 409 `insufficient_stock`.
 *
 * A gRPC deny from profile is answered with the HTTP status the core's table gives its code
 * (e.g. `PERMISSION_DENIED` / `insufficient_scope` -> 403 with profile's challenge).
 */
import { randomBytes } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import type { Authenticator } from '@jwt-mesh/core';
import { DownstreamError, identityOfRequest, propagationHeaders } from '@jwt-mesh/fastify-auth';
import { httpFailureOf, metadataOf, withGrpcClientSpan } from '@jwt-mesh/grpc-auth';
import type { GetProfileResponse__Output, Hop__Output, ProfileServiceClient } from '@jwt-mesh/profile/proto';
import { createMetrics, type Readiness, type ServiceMetrics } from '@jwt-mesh/runtime';
import { createServiceApp, hopOf, HttpError, timedDownstream, type HopInfo } from '@jwt-mesh/runtime/fastify';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { z } from 'zod';

/** The service name: logs, metrics, hop reports, `realm`. */
export const SERVICE = 'inventory';

/** Stock of one SKU. In memory: a demo of the auth mesh, not of inventory. */
export interface StockItem {
  readonly sku: string;
  readonly name: string;
  available: number;
  reserved: number;
}

/** Seed data. */
export function seedStock(): Map<string, StockItem> {
  return new Map<string, StockItem>(
    [
      { sku: 'sku-widget', name: 'Widget', available: 100, reserved: 0 },
      { sku: 'sku-gadget', name: 'Gadget', available: 25, reserved: 0 },
      { sku: 'sku-gizmo', name: 'Gizmo', available: 0, reserved: 0 },
    ].map((s) => [s.sku, s]),
  );
}

/** Dependencies of {@link buildApp}; everything with I/O is injected. */
export interface InventoryDeps {
  readonly authenticator: Authenticator;
  readonly readiness: Readiness;
  /** The profile gRPC client (through the local sidecar's outbound listener, or profile itself). */
  readonly profile: ProfileServiceClient;
  /** Deadline of a profile call, in milliseconds. Default 5000. */
  readonly profileTimeoutMs?: number;
  readonly logger?: Logger;
  readonly metrics?: ServiceMetrics;
  readonly stock?: Map<string, StockItem>;
}

const Sku = z.string().regex(/^sku-[a-z0-9-]{1,40}$/, 'must look like sku-widget');
/** Body of `POST /api/inventory/reservations`. */
export const NewReservation = z.strictObject({
  sku: Sku,
  quantity: z.number().int().min(1).max(100),
  orderId: z.string().regex(/^ord-[a-z0-9-]{1,40}$/).optional(),
});

/** The JSON hop record from profile's gRPC `Hop`. */
function hopFromGrpc(h: Hop__Output | null): HopInfo[] {
  if (h === null) return [];
  return [
    {
      service: h.service,
      transport: h.transport === 'grpc' ? 'grpc' : 'http',
      subject: h.subject,
      sid: h.sid === '' ? null : h.sid,
      jti: h.jti,
      traceId: h.trace_id,
      requestId: h.request_id,
      scopes: h.scopes,
    },
  ];
}

/**
 * Calls `GetProfile` for the caller's own subject, forwarding the token and trace headers.
 *
 * @throws DownstreamError with the HTTP mapping of a failed call ({@link httpFailureOf})
 */
export async function getProfile(client: ProfileServiceClient, request: FastifyRequest, timeoutMs: number): Promise<GetProfileResponse__Output> {
  try {
    // A CLIENT span when tracing is on; the metadata's traceparent then names it.
    return await withGrpcClientSpan(GET_PROFILE_PATH, client, (span) => {
      const metadata = metadataOf(propagationHeaders(request, span?.spanContext()));
      return new Promise<GetProfileResponse__Output>((resolve, reject) => {
        client.GetProfile({ subject: '' }, metadata, { deadline: Date.now() + timeoutMs }, (err, res) => {
          if (err !== null || res === undefined) reject(err ?? new Error('GetProfile answered nothing'));
          else resolve(res);
        });
      });
    });
  } catch (err) {
    const f = httpFailureOf(err);
    const passed: Record<string, string> = {};
    for (const h of ['www-authenticate', 'retry-after'] as const) if (f.headers[h] !== undefined) passed[h] = f.headers[h]!;
    throw new DownstreamError(f.status, f.body, passed, { cause: err });
  }
}

/** The gRPC method inventory calls on profile. */
const GET_PROFILE_PATH = '/jwtmesh.profile.v1.ProfileService/GetProfile';

/**
 * Builds the inventory app (not listening).
 */
export async function buildApp(deps: InventoryDeps): Promise<FastifyInstance> {
  const metrics = deps.metrics ?? createMetrics(SERVICE);
  const app = await createServiceApp({ service: SERVICE, logger: deps.logger, metrics, authenticator: deps.authenticator, readiness: deps.readiness });
  const stock = deps.stock ?? seedStock();
  const profileTimeoutMs = deps.profileTimeoutMs ?? 5000;

  app.get('/api/inventory/:sku', { config: { auth: { scopes: ['inventory:read'] } } }, async (request) => {
    const identity = identityOfRequest(request);
    const sku = Sku.parse((request.params as { sku: string }).sku);
    const item = stock.get(sku);
    if (item === undefined) throw new HttpError(404, 'not_found', `unknown SKU ${sku}`);
    const profile = await timedDownstream(metrics, 'profile', () => getProfile(deps.profile, request, profileTimeoutMs));
    return {
      sku: item.sku,
      name: item.name,
      available: item.available,
      reserved: item.reserved,
      profile: profile.profile,
      hops: [hopOf(SERVICE, 'http', identity, request), ...hopFromGrpc(profile.hop)],
    };
  });

  app.post('/api/inventory/reservations', { config: { auth: { scopes: ['inventory:write'] } } }, async (request, reply) => {
    const identity = identityOfRequest(request);
    const body = NewReservation.parse(request.body);
    const item = stock.get(body.sku);
    if (item === undefined) throw new HttpError(404, 'not_found', `unknown SKU ${body.sku}`);
    if (item.available < body.quantity) {
      throw new HttpError(409, 'insufficient_stock', `only ${item.available} of ${body.sku} available`);
    }
    item.available -= body.quantity;
    item.reserved += body.quantity;
    const reservation = { id: `res-${randomBytes(6).toString('hex')}`, sku: body.sku, quantity: body.quantity, orderId: body.orderId ?? null, owner: identity.sub };
    return reply.code(201).send({ reservation, hops: [hopOf(SERVICE, 'http', identity, request)] });
  });

  return app;
}

/**
 * Creates the profile gRPC client.
 *
 * @param ctor - `loadProfileProto().jwtmesh.profile.v1.ProfileService`
 * @param target - `host:port` of the local sidecar's outbound listener (or profile's gRPC port)
 * @param authority - `:authority` to send (e.g. `profile`), so a sidecar can route by host;
 *   default: the target
 */
export function createProfileClient(
  ctor: new (address: string, credentials: grpc.ChannelCredentials, options?: grpc.ChannelOptions) => ProfileServiceClient,
  target: string,
  authority?: string,
): ProfileServiceClient {
  // Plaintext to the local sidecar on loopback; the sidecars speak mTLS between them.
  return new ctor(target, grpc.credentials.createInsecure(), authority === undefined ? {} : { 'grpc.default_authority': authority });
}
