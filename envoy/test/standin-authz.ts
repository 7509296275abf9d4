/**
 * A stand-in ext_authz server for the edge Envoy tests in this folder ONLY: it lets these tests
 * check Envoy's side of the contract (what reaches ext_authz, what happens when it is slow, down
 * or denies) before and independently of the real authz-service, whose own end-to-end suite drives
 * the same edge config later. It speaks the real `envoy.service.auth.v3.Authorization/Check`
 * (Envoy's protos from @grpc/grpc-js-xds) over mTLS with the `authz` mesh certificate, and
 * `grpc.health.v1` for Envoy's health checks.
 *
 * Decisions, by the Authorization header only:
 *   `Bearer good`  -> OK, sets `x-jwt-mesh-sub: user-1` (overwriting);
 *   `Bearer slow`  -> OK after 1 s (past Envoy's 250 ms timeout);
 *   no header and a public path (/healthz, /auth, /.well-known) -> OK without identity;
 *   anything else  -> denied 401 with `WWW-Authenticate: Bearer`.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { REPO_ROOT } from '@jwt-mesh/testkit';
import { HealthImplementation } from 'grpc-health-check';

const deps = join(REPO_ROOT, 'node_modules', '@grpc', 'grpc-js-xds', 'deps');

let cachedDefinition: grpc.ServiceDefinition | undefined;
function authorizationService(): grpc.ServiceDefinition {
  if (cachedDefinition) return cachedDefinition;
  const def = protoLoader.loadSync('envoy/service/auth/v3/external_auth.proto', {
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
    includeDirs: ['envoy-api', 'xds', 'googleapis', 'protoc-gen-validate'].map((d) => join(deps, d)),
  });
  const pkg = grpc.loadPackageDefinition(def) as unknown as {
    envoy: { service: { auth: { v3: { Authorization: grpc.ServiceClientConstructor } } } };
  };
  cachedDefinition = pkg.envoy.service.auth.v3.Authorization.service;
  return cachedDefinition;
}

/** The parts of a CheckRequest these tests look at. */
export interface SeenCheck {
  path: string;
  method: string;
  headers: Record<string, string>;
}

export interface StandinAuthz {
  port: number;
  checks: SeenCheck[];
  stop(): Promise<void>;
}

const PUBLIC = ['/healthz', '/auth', '/.well-known'];

/**
 * Starts one stand-in replica on 127.0.0.1:0 with the `authz` mesh certificate, requiring a mesh client certificate.
 * Every CheckRequest is recorded in `checks`, and also in `sink` when given (one ordered record
 * across replicas).
 */
export async function startStandinAuthz(certs: { ca: string; cert: string; key: string }, sink?: SeenCheck[]): Promise<StandinAuthz> {
  const checks: SeenCheck[] = [];
  const server = new grpc.Server();
  server.addService(authorizationService(), {
    Check(call: grpc.ServerUnaryCall<any, any>, callback: grpc.sendUnaryData<any>) {
      const http = call.request?.attributes?.request?.http ?? {};
      const seen: SeenCheck = { path: String(http.path ?? ''), method: String(http.method ?? ''), headers: { ...(http.headers ?? {}) } };
      checks.push(seen);
      sink?.push(seen);
      const auth = seen.headers.authorization;
      const allow = (identity: boolean) => ({
        status: { code: 0 },
        ok_response: identity
          ? { headers: [{ header: { key: 'x-jwt-mesh-sub', value: 'user-1' }, append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' }] }
          : {},
      });
      if (auth === 'Bearer good') return callback(null, allow(true));
      if (auth === 'Bearer slow') {
        setTimeout(() => callback(null, allow(true)), 1000);
        return;
      }
      const path = seen.path.split('?')[0] ?? '';
      if (auth === undefined && PUBLIC.some((p) => path === p || path.startsWith(`${p}/`))) return callback(null, allow(false));
      return callback(null, {
        status: { code: 16 },
        denied_response: {
          status: { code: 'Unauthorized' },
          headers: [
            { header: { key: 'www-authenticate', value: 'Bearer' } },
            { header: { key: 'content-type', value: 'application/json' } },
          ],
          body: '{"error":"unauthorized"}',
        },
      });
    },
  });
  new HealthImplementation({ '': 'SERVING' }).addToServer(server);
  const creds = grpc.ServerCredentials.createSsl(
    readFileSync(certs.ca),
    [{ cert_chain: readFileSync(certs.cert), private_key: readFileSync(certs.key) }],
    true,
  );
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', creds, (err, p) => (err ? reject(err) : resolve(p))),
  );
  return {
    port,
    checks,
    stop: () =>
      new Promise<void>((resolve) => {
        server.forceShutdown();
        resolve();
      }),
  };
}
