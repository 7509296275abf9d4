/**
 * The one place that says how `proto/profile/v1/profile.proto` is loaded: the include
 * directory, the entry file and the `@grpc/proto-loader` options. The runtime loader
 * ({@link loadProfileProto}, used by this server and by its clients such as inventory) and the
 * type generator (`scripts/generate.ts`, `npm run generate`) both read this module, so the
 * generated types describe the objects the loader really produces (CONTRIBUTING.md, "Typed protos").
 *
 * Upstream: https://github.com/grpc/grpc-node/tree/master/packages/proto-loader
 */
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { ProtoGrpcType } from './generated/profile.js';

/** The repository's `proto/` folder: the project's own .proto APIs. */
export const PROTO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'proto');

/** The profile API, relative to {@link PROTO_ROOT}. */
export const PROFILE_PROTO = 'profile/v1/profile.proto';

/**
 * Loader options shared by the runtime and the generator: `keepCase` (field names as in the
 * .proto: `display_name`, `trace_id`), `longs`/`enums` as strings, `defaults` (decoded messages
 * carry default values), `oneofs`.
 */
export const LOADER_OPTIONS = Object.freeze({
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [PROTO_ROOT],
} satisfies protoLoader.Options);

/**
 * The command-line flags of `proto-loader-gen-types` equivalent to {@link LOADER_OPTIONS}
 * (all in `--name=value` form so the array option does not swallow the file name).
 *
 * @param outDir - where the `.ts` files are written
 */
export function generatorArgs(outDir: string): string[] {
  return [
    '--keepCase',
    `--longs=${LOADER_OPTIONS.longs.name}`,
    `--enums=${LOADER_OPTIONS.enums.name}`,
    '--defaults',
    '--oneofs',
    '--grpcLib=@grpc/grpc-js',
    '--importFileExtension=.js',
    `--includeDirs=${PROTO_ROOT}`,
    `--outDir=${outDir}`,
    PROFILE_PROTO,
  ];
}

/**
 * Loads `jwtmesh.profile.v1` (synchronously; call once at start-up).
 *
 * @returns the typed package object: `.jwtmesh.profile.v1.ProfileService` is both the client
 *   constructor and (`.service`) the definition to add to a `grpc.Server`
 * @throws Error from protobufjs when the .proto cannot be found or parsed
 */
export function loadProfileProto(): ProtoGrpcType {
  const definition = protoLoader.loadSync(PROFILE_PROTO, { ...LOADER_OPTIONS, includeDirs: [...LOADER_OPTIONS.includeDirs] });
  return grpc.loadPackageDefinition(definition) as unknown as ProtoGrpcType;
}

export type { ProfileServiceClient, ProfileServiceHandlers } from './generated/jwtmesh/profile/v1/ProfileService.js';
export type { GetProfileRequest, GetProfileRequest__Output } from './generated/jwtmesh/profile/v1/GetProfileRequest.js';
export type { GetProfileResponse, GetProfileResponse__Output } from './generated/jwtmesh/profile/v1/GetProfileResponse.js';
export type { Hop, Hop__Output } from './generated/jwtmesh/profile/v1/Hop.js';
export type { Profile, Profile__Output } from './generated/jwtmesh/profile/v1/Profile.js';
