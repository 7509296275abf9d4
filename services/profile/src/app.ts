/**
 * profile: the last hop, served over gRPC (`jwtmesh.profile.v1.ProfileService`, see
 * `proto/profile/v1/profile.proto`) and over HTTP (health, readiness, metrics, `GET /api/profile/me`).
 * Both verify the same JWT locally through the core: HTTP with the Fastify plugin, gRPC with
 * `@jwt-mesh/grpc-auth` over the `authorization` metadata.
 *
 * - gRPC `GetProfile` (scope `profile:read`; another subject's profile also needs role `admin`):
 *   the profile and the hop record.
 * - `GET /api/profile/me` (scope `profile:read`): the same over HTTP.
 */
import * as grpc from '@grpc/grpc-js';
import type { Authenticator, Identity } from '@jwt-mesh/core';
import { createGrpcAuth, type MetadataHeaders } from '@jwt-mesh/grpc-auth';
import { identityOfRequest } from '@jwt-mesh/fastify-auth';
import { createMetrics, type Readiness, type ServiceMetrics } from '@jwt-mesh/runtime';
import { createServiceApp, hopOf } from '@jwt-mesh/runtime/fastify';
import type { FastifyInstance } from 'fastify';
import { HealthImplementation } from 'grpc-health-check';
import type { Logger } from 'pino';
import { loadProfileProto, type GetProfileRequest__Output, type GetProfileResponse, type Profile } from './proto.js';

/** The service name: logs, metrics, hop reports, `realm`. */
export const SERVICE = 'profile';
/** The fully-qualified gRPC service name (also its `grpc.health.v1` service name). */
export const GRPC_SERVICE = 'jwtmesh.profile.v1.ProfileService';

/** gRPC statuses of the core's denials (see `toDenial`): logged at `info`, not as errors. */
const DENY_CODES: ReadonlySet<number> = new Set([grpc.status.UNAUTHENTICATED, grpc.status.PERMISSION_DENIED, grpc.status.INVALID_ARGUMENT]);

/** Seed profiles by subject. Unknown subjects get a generated standard profile. */
export function seedProfiles(): Map<string, Profile> {
  return new Map<string, Profile>([
    ['demo-alice', { subject: 'demo-alice', display_name: 'Alice Example', email: 'alice@example.test', tier: 'gold' }],
    ['demo-bob', { subject: 'demo-bob', display_name: 'Bob Example', email: 'bob@example.test', tier: 'standard' }],
  ]);
}

/** The profile of `subject`: seeded, or a generated standard one (the demo has no profile store). */
export function profileOf(profiles: Map<string, Profile>, subject: string): Profile {
  return profiles.get(subject) ?? { subject, display_name: `user ${subject.slice(0, 12)}`, email: '', tier: 'standard' };
}

/** Dependencies of {@link buildApp} and {@link buildGrpcServer}. */
export interface ProfileDeps {
  readonly authenticator: Authenticator;
  readonly readiness: Readiness;
  readonly logger?: Logger;
  readonly metrics?: ServiceMetrics;
  readonly profiles?: Map<string, Profile>;
}

/** Builds the HTTP app (not listening). */
export async function buildApp(deps: ProfileDeps): Promise<FastifyInstance> {
  const metrics = deps.metrics ?? createMetrics(SERVICE);
  const app = await createServiceApp({ service: SERVICE, logger: deps.logger, metrics, authenticator: deps.authenticator, readiness: deps.readiness });
  const profiles = deps.profiles ?? seedProfiles();

  app.get('/api/profile/me', { config: { auth: { scopes: ['profile:read'] } } }, async (request) => {
    const identity = identityOfRequest(request);
    return { profile: profileOf(profiles, identity.sub), hop: hopOf(SERVICE, 'http', identity, request) };
  });
  return app;
}

function grpcHop(identity: Identity, headers: MetadataHeaders): NonNullable<GetProfileResponse['hop']> {
  const h = hopOf(SERVICE, 'grpc', identity, { headers });
  return { service: h.service, transport: h.transport, subject: h.subject, sid: h.sid ?? '', jti: h.jti, trace_id: h.traceId, request_id: h.requestId, scopes: [...h.scopes] };
}

/** The gRPC server and its health service. */
export interface ProfileGrpc {
  readonly server: grpc.Server;
  readonly health: HealthImplementation;
}

/**
 * Builds the gRPC server (not bound): `ProfileService` behind the token check, and
 * `grpc.health.v1.Health` (`''` and {@link GRPC_SERVICE}: `NOT_SERVING` until the caller marks
 * them `SERVING`, e.g. when readiness turns true).
 */
export function buildGrpcServer(deps: ProfileDeps & { readonly logger: Logger; readonly metrics: ServiceMetrics }): ProfileGrpc {
  const proto = loadProfileProto();
  const profiles = deps.profiles ?? seedProfiles();
  const { metrics, logger } = deps;
  const failureOf = new WeakMap<object, unknown>();
  const auth = createGrpcAuth({
    authenticator: deps.authenticator,
    realm: SERVICE,
    onDecision: (outcome) => metrics.authDecisions.inc({ transport: 'grpc', outcome }),
    // A handler failure goes on the call's one completion line below, with the error.
    onError: (err, _path, call) => failureOf.set(call, err),
  });

  const getProfile = auth.unary<GetProfileRequest__Output, GetProfileResponse>({ scopes: ['profile:read'] }, async (call, ctx) => {
    const wanted = call.request.subject === '' ? ctx.identity.sub : call.request.subject;
    if (wanted !== ctx.identity.sub) await ctx.require({ scopes: ['profile:read'], anyRole: ['admin'] });
    return { profile: profileOf(profiles, wanted), hop: grpcHop(ctx.identity, ctx.headers) };
  });

  const server = new grpc.Server();
  server.addService(proto.jwtmesh.profile.v1.ProfileService.service, {
    GetProfile: (call: grpc.ServerUnaryCall<GetProfileRequest__Output, GetProfileResponse>, callback: grpc.sendUnaryData<GetProfileResponse>) => {
      const end = metrics.grpcDuration.startTimer({ method: 'GetProfile' });
      getProfile(call, (err, value) => {
        const code = grpc.status[err?.code ?? grpc.status.OK] ?? 'UNKNOWN';
        end({ code });
        metrics.grpcHandled.inc({ method: 'GetProfile', code });
        // One line per call at most, at a level set by the outcome (as the HTTP side's
        // requestLogLevel): OK only at debug, a deny at info, anything else at error.
        const level = err === null ? 'debug' : DENY_CODES.has(err?.code ?? grpc.status.UNKNOWN) ? 'info' : 'error';
        if (logger.isLevelEnabled(level)) {
          const md = call.metadata;
          const failure = failureOf.get(call);
          logger[level]({ grpc: { method: GRPC_SERVICE + '/GetProfile', code }, reqId: md.get('x-request-id')[0], traceparent: md.get('traceparent')[0], ...(failure === undefined ? {} : { err: failure }) }, 'gRPC call completed');
        }
        callback(err, value);
      });
    },
  });
  const health = new HealthImplementation({ '': 'NOT_SERVING', [GRPC_SERVICE]: 'NOT_SERVING' });
  health.addToServer(server);
  return { server, health };
}
