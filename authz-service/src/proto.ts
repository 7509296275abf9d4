/**
 * The one place that says how Envoy's ext_authz protos are loaded: the include directories
 * (Envoy's own protos shipped in `@grpc/grpc-js-xds`'s `deps/` folder, never copied here), the
 * entry file and the `@grpc/proto-loader` options. The runtime loader ({@link loadAuthorizationProto})
 * and the type generator (`scripts/generate.ts`, `npm run generate`) both read this module, so the
 * generated TypeScript types always describe the objects the loader really produces (CONTRIBUTING.md, "Typed protos").
 *
 * Upstream: https://github.com/grpc/grpc-node/tree/master/packages/proto-loader (options and
 * `proto-loader-gen-types`), Envoy `envoy/service/auth/v3/external_auth.proto`.
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { ProtoGrpcType } from './generated/external_auth.js';

const require = createRequire(import.meta.url);
const xdsRoot = dirname(require.resolve('@grpc/grpc-js-xds/package.json'));

/** Include directories, in search order: Envoy API, xDS (udpa/xds annotations), googleapis, PGV. */
export const PROTO_INCLUDE_DIRS: readonly string[] = Object.freeze(
  ['envoy-api', 'xds', 'googleapis', 'protoc-gen-validate'].map((d) => join(xdsRoot, 'deps', d)),
);

/** The ext_authz v3 service definition, relative to {@link PROTO_INCLUDE_DIRS}. */
export const EXTERNAL_AUTH_PROTO = 'envoy/service/auth/v3/external_auth.proto';

/**
 * `@grpc/proto-loader` options shared by the runtime and the generator:
 * - `keepCase`: field names as in the .proto (`ok_response`, `headers_to_remove`, `append_action`);
 * - `longs: String`, `enums: String` (e.g. `'OVERWRITE_IF_EXISTS_OR_ADD'`, `'Unauthorized'`);
 * - `defaults` + `oneofs`: decoded messages carry default values and the oneof case name;
 * - bytes stay `Buffer` (`HeaderValue.raw_value`).
 */
export const LOADER_OPTIONS = Object.freeze({
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [...PROTO_INCLUDE_DIRS],
} satisfies protoLoader.Options);

/**
 * The command-line flags of `proto-loader-gen-types` equivalent to {@link LOADER_OPTIONS}.
 * Every flag uses the `--name=value` form: `-I dir file.proto` would let the array option
 * `includeDirs` swallow the file name (the reason the old `generate` script failed with
 * "Not enough non-option arguments").
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
    // ESM + NodeNext: relative imports in the generated files need the `.js` suffix.
    '--importFileExtension=.js',
    ...PROTO_INCLUDE_DIRS.map((d) => `--includeDirs=${d}`),
    `--outDir=${outDir}`,
    EXTERNAL_AUTH_PROTO,
  ];
}

/**
 * Loads `envoy.service.auth.v3` at runtime (synchronously; call once at start-up).
 *
 * @returns the typed gRPC package object; `.envoy.service.auth.v3.Authorization.service` is
 *   the service definition to add to a `grpc.Server`
 * @throws Error from protobufjs when a proto file cannot be found or parsed
 */
export function loadAuthorizationProto(): ProtoGrpcType {
  const definition = protoLoader.loadSync(EXTERNAL_AUTH_PROTO, { ...LOADER_OPTIONS, includeDirs: [...PROTO_INCLUDE_DIRS] });
  return grpc.loadPackageDefinition(definition) as unknown as ProtoGrpcType;
}
