/**
 * `npm run generate`: writes TypeScript types for `envoy.service.auth.v3` (and everything it
 * imports) into `src/generated/` with `proto-loader-gen-types`, using the same include dirs and
 * loader options as the runtime (`src/proto.ts`). The output is gitignored.
 */
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { generateProtoTypes } from '@jwt-mesh/grpc-auth/proto';
import { EXTERNAL_AUTH_TYPED_PROTO } from '../src/proto.js';

process.exitCode = generateProtoTypes(EXTERNAL_AUTH_TYPED_PROTO, join(dirname(fileURLToPath(import.meta.url)), '..', 'src', 'generated'));
