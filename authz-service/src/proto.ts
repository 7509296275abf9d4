/**
 * The one place that says how Envoy's ext_authz protos are loaded: the include directories
 * (Envoy's own protos shipped in `@grpc/grpc-js-xds`'s `deps/` folder, never copied here), the
 * entry file (loaded with the options of `@jwt-mesh/grpc-auth/proto`). The runtime loader ({@link loadAuthorizationProto})
 * and the type generator (`scripts/generate.ts`, `npm run generate`) both read this module, so the
 * generated TypeScript types always describe the objects the loader really produces (CONTRIBUTING.md, "Typed protos").
 *
 * Upstream: https://github.com/grpc/grpc-node/tree/master/packages/proto-loader (options and
 * `proto-loader-gen-types`), Envoy `envoy/service/auth/v3/external_auth.proto`.
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { typedProto } from '@jwt-mesh/grpc-auth/proto';
import type { ProtoGrpcType } from './generated/external_auth.js';

const require = createRequire(import.meta.url);
const xdsRoot = dirname(require.resolve('@grpc/grpc-js-xds/package.json'));

/** Include directories, in search order: Envoy API, xDS (udpa/xds annotations), googleapis, PGV. */
export const PROTO_INCLUDE_DIRS: readonly string[] = Object.freeze(
  ['envoy-api', 'xds', 'googleapis', 'protoc-gen-validate'].map((d) => join(xdsRoot, 'deps', d)),
);

/** The ext_authz v3 service definition, relative to {@link PROTO_INCLUDE_DIRS}. */
export const EXTERNAL_AUTH_PROTO = 'envoy/service/auth/v3/external_auth.proto';

/** The ext_authz API as the loader and the generator (`npm run generate`) both see it. */
export const EXTERNAL_AUTH_TYPED_PROTO = typedProto(EXTERNAL_AUTH_PROTO, PROTO_INCLUDE_DIRS);

/**
 * Loads `envoy.service.auth.v3` at runtime (synchronously; call once at start-up).
 *
 * @returns the typed gRPC package object; `.envoy.service.auth.v3.Authorization.service` is
 *   the service definition to add to a `grpc.Server`
 * @throws Error from protobufjs when a proto file cannot be found or parsed
 */
export function loadAuthorizationProto(): ProtoGrpcType {
  return EXTERNAL_AUTH_TYPED_PROTO.load<ProtoGrpcType>();
}
