/**
 * The one place that says how `proto/profile/v1/profile.proto` is loaded: the include
 * directory and the entry file (loaded with the options of `@jwt-mesh/grpc-auth/proto`). The runtime loader
 * ({@link loadProfileProto}, used by this server and by its clients such as inventory) and the
 * type generator (`scripts/generate.ts`, `npm run generate`) both read this module, so the
 * generated types describe the objects the loader really produces (CONTRIBUTING.md, "Typed protos").
 *
 * Upstream: https://github.com/grpc/grpc-node/tree/master/packages/proto-loader
 */
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { typedProto } from '@jwt-mesh/grpc-auth/proto';
import type { ProtoGrpcType } from './generated/profile.js';

/** The repository's `proto/` folder: the project's own .proto APIs. */
export const PROTO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'proto');

/** The profile API, relative to {@link PROTO_ROOT}. */
export const PROFILE_PROTO = 'profile/v1/profile.proto';

/** The profile API as the loader and the generator (`npm run generate`) both see it. */
export const PROFILE_TYPED_PROTO = typedProto(PROFILE_PROTO, [PROTO_ROOT]);

/**
 * Loads `jwtmesh.profile.v1` (synchronously; call once at start-up).
 *
 * @returns the typed package object: `.jwtmesh.profile.v1.ProfileService` is both the client
 *   constructor and (`.service`) the definition to add to a `grpc.Server`
 * @throws Error from protobufjs when the .proto cannot be found or parsed
 */
export function loadProfileProto(): ProtoGrpcType {
  return PROFILE_TYPED_PROTO.load<ProtoGrpcType>();
}

export type { ProfileServiceClient, ProfileServiceHandlers } from './generated/jwtmesh/profile/v1/ProfileService.js';
export type { GetProfileRequest, GetProfileRequest__Output } from './generated/jwtmesh/profile/v1/GetProfileRequest.js';
export type { GetProfileResponse, GetProfileResponse__Output } from './generated/jwtmesh/profile/v1/GetProfileResponse.js';
export type { Hop, Hop__Output } from './generated/jwtmesh/profile/v1/Hop.js';
export type { Profile, Profile__Output } from './generated/jwtmesh/profile/v1/Profile.js';
