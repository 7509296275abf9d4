/**
 * `npm run generate`: writes TypeScript types for `jwtmesh.profile.v1` into `src/generated/`
 * with `proto-loader-gen-types`, using the loader options of the runtime (`src/proto.ts`).
 * The output is gitignored.
 */
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { generateProtoTypes } from '@jwt-mesh/grpc-auth/proto';
import { PROFILE_TYPED_PROTO } from '../src/proto.js';

process.exitCode = generateProtoTypes(PROFILE_TYPED_PROTO, join(dirname(fileURLToPath(import.meta.url)), '..', 'src', 'generated'));
