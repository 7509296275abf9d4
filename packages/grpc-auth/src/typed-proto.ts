/**
 * Typed protos, set up once per API: how a `.proto` is loaded at run time (`@grpc/proto-loader`
 * options, include directories, entry file) and the flags that make `proto-loader-gen-types`
 * generate TypeScript types for exactly those objects (CONTRIBUTING.md, "Typed protos"). The
 * loader and the generator read the same {@link TypedProto}, so the types never drift from what
 * the loader produces.
 *
 * Upstream: https://github.com/grpc/grpc-node/tree/master/packages/proto-loader (options and
 * `proto-loader-gen-types`).
 */
import { spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

/**
 * The loader options every jwt-mesh proto is loaded with:
 * - `keepCase`: field names as in the .proto (`display_name`, `ok_response`, `headers_to_remove`);
 * - `longs: String`, `enums: String` (e.g. `'OVERWRITE_IF_EXISTS_OR_ADD'`, `'Unauthorized'`);
 * - `defaults` + `oneofs`: decoded messages carry default values and the oneof case name;
 * - bytes stay `Buffer`.
 */
export const LOADER_OPTIONS = Object.freeze({
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
} satisfies protoLoader.Options);

/** One API's proto, as the loader and the generator both see it. */
export interface TypedProto {
  /** The entry file, relative to one of {@link includeDirs}, e.g. `profile/v1/profile.proto`. */
  readonly file: string;
  /** Include directories, in search order (absolute paths). */
  readonly includeDirs: readonly string[];
  /** {@link LOADER_OPTIONS} with {@link includeDirs}. */
  readonly loaderOptions: protoLoader.Options;
  /**
   * The `proto-loader-gen-types` flags equivalent to {@link loaderOptions}. Every flag uses the
   * `--name=value` form: `-I dir file.proto` would let the array option `includeDirs` swallow
   * the file name ("Not enough non-option arguments").
   * @param outDir - where the `.ts` files are written
   */
  generatorArgs(outDir: string): string[];
  /**
   * Loads the package synchronously (call once at start-up).
   * @returns the package object, typed by the caller with the generated `ProtoGrpcType`
   * @throws Error from protobufjs when a .proto cannot be found or parsed
   */
  load<T>(): T;
}

/**
 * @param file - the entry .proto, relative to one of `includeDirs`
 * @param includeDirs - absolute include directories, in search order
 */
export function typedProto(file: string, includeDirs: readonly string[]): TypedProto {
  const dirs = Object.freeze([...includeDirs]);
  return Object.freeze({
    file,
    includeDirs: dirs,
    loaderOptions: Object.freeze({ ...LOADER_OPTIONS, includeDirs: [...dirs] }),
    generatorArgs: (outDir: string) => [
      '--keepCase',
      `--longs=${LOADER_OPTIONS.longs.name}`,
      `--enums=${LOADER_OPTIONS.enums.name}`,
      '--defaults',
      '--oneofs',
      '--grpcLib=@grpc/grpc-js',
      // ESM + NodeNext: relative imports in the generated files need the `.js` suffix.
      '--importFileExtension=.js',
      ...dirs.map((d) => `--includeDirs=${d}`),
      `--outDir=${outDir}`,
      file,
    ],
    load: <T>(): T => grpc.loadPackageDefinition(protoLoader.loadSync(file, { ...LOADER_OPTIONS, includeDirs: [...dirs] })) as unknown as T,
  });
}

/**
 * `npm run generate` of a workspace: empties `outDir` and writes the TypeScript types of `proto`
 * into it with `proto-loader-gen-types` (the output is gitignored).
 *
 * @returns the generator's exit status (0 on success); a failure is also written to stderr
 */
export function generateProtoTypes(proto: TypedProto, outDir: string): number {
  const require = createRequire(import.meta.url);
  const cli = join(dirname(require.resolve('@grpc/proto-loader/package.json')), 'build', 'bin', 'proto-loader-gen-types.js');
  rmSync(outDir, { recursive: true, force: true });
  const result = spawnSync(process.execPath, [cli, ...proto.generatorArgs(outDir)], { stdio: 'inherit' });
  if (result.status !== 0) {
    process.stderr.write(`proto-loader-gen-types failed (exit ${result.status ?? result.signal})\n`);
    return 1;
  }
  process.stdout.write(`generated the types of ${proto.file} in ${outDir}\n`);
  return 0;
}
