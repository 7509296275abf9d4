/**
 * The gRPC server: `envoy.service.auth.v3.Authorization/Check` plus `grpc.health.v1.Health`.
 * Built apart from listening (CONTRIBUTING.md, "Build apart from listen"): {@link buildServer} takes its dependencies, and
 * `start(port, host)` binds (port 0 = any free port, as the tests do).
 *
 * Upstream: grpc-node `@grpc/grpc-js` Server / ServerCredentials, `grpc-health-check`
 * (https://github.com/grpc/grpc/blob/master/doc/health-checking.md).
 */
import * as grpc from '@grpc/grpc-js';
import { HealthImplementation, type ServingStatus } from 'grpc-health-check';
import { buildCheckHandler, type CheckDeps } from './check.js';
import { loadAuthorizationProto } from './proto.js';
import { decodeCheckRequest } from './wire.js';
import type { CheckResponse } from './generated/envoy/service/auth/v3/CheckResponse.js';

/** The fully qualified service name, also used as a health-check service name. */
export const AUTHORIZATION_SERVICE = 'envoy.service.auth.v3.Authorization';

/** PEM material for the mTLS listener (file contents, not paths). */
export interface TlsMaterial {
  /** The mesh CA that signs client certificates (Envoy's). */
  readonly ca: Buffer;
  /** This server's certificate chain. */
  readonly cert: Buffer;
  readonly key: Buffer;
}

/** What {@link buildServer} needs: the Check dependencies, plus how to listen. */
export interface ServerDeps extends CheckDeps {
  /**
   * `TlsMaterial`: TLS with client certificates required and verified against `ca`.
   * `'insecure-plaintext'`: no TLS, only for the explicit development setting.
   */
  readonly tls: TlsMaterial | 'insecure-plaintext';
  /** `grpc.Server` channel options (e.g. `grpc.max_receive_message_length`). */
  readonly serverOptions?: grpc.ServerOptions;
}

/** A built, not yet listening, ext_authz server. */
export interface AuthzServer {
  readonly server: grpc.Server;
  readonly health: HealthImplementation;
  /**
   * Binds and starts serving.
   * @param port - TCP port, 0 for any free one
   * @param host - listen address (default `127.0.0.1`)
   * @returns the bound port
   * @throws Error from grpc-js when the address cannot be bound
   */
  start(port: number, host?: string): Promise<number>;
  /** Sets the health status of `''` (whole server) and `envoy.service.auth.v3.Authorization`. */
  setHealth(status: ServingStatus): void;
  /**
   * Graceful drain: health NOT_SERVING, stop accepting calls, wait up to `timeoutMs`
   * (milliseconds) for in-flight calls, then force-close.
   * @returns `'graceful'` or `'forced'`
   */
  drain(timeoutMs: number): Promise<'graceful' | 'forced'>;
}

const DEFAULT_SERVER_OPTIONS: grpc.ServerOptions = {
  // A CheckRequest carries headers (and no body unless with_request_body is configured).
  'grpc.max_receive_message_length': 1024 * 1024,
  'grpc.max_send_message_length': 64 * 1024,
};

/**
 * Builds the gRPC server with the Authorization and Health services. Health starts at
 * NOT_SERVING; the caller sets SERVING once the revocation subscriber and the JWKS are ready.
 * Check requests are read by the lean wire decoder (`decodeCheckRequest`, wire.ts), which keeps
 * only the fields the decision needs; undecodable bytes get a deny CheckResponse. Responses are
 * encoded once per verified identity / public allow / denial and reused.
 */
export function buildServer(deps: ServerDeps): AuthzServer {
  const proto = loadAuthorizationProto();
  const server = new grpc.Server({ ...DEFAULT_SERVER_OPTIONS, ...deps.serverOptions });
  const definition = proto.envoy.service.auth.v3.Authorization.service;
  const encode = definition.Check.responseSerialize;
  // The same method (path, unary), with the lean request decoder (wire.ts) and a response
  // serializer that passes the handler's pre-encoded responses through.
  const check = {
    ...definition.Check,
    requestDeserialize: decodeCheckRequest,
    responseSerialize: (r: CheckResponse | Buffer): Buffer => (Buffer.isBuffer(r) ? r : encode(r)),
  };
  server.addService({ Check: check }, { Check: buildCheckHandler(deps, encode) });
  const health = new HealthImplementation({ '': 'NOT_SERVING', [AUTHORIZATION_SERVICE]: 'NOT_SERVING' });
  health.addToServer(server);

  const credentials =
    deps.tls === 'insecure-plaintext'
      ? grpc.ServerCredentials.createInsecure()
      : grpc.ServerCredentials.createSsl(deps.tls.ca, [{ cert_chain: deps.tls.cert, private_key: deps.tls.key }], true);

  const setHealth = (status: ServingStatus): void => {
    health.setStatus('', status);
    health.setStatus(AUTHORIZATION_SERVICE, status);
  };

  return {
    server,
    health,
    setHealth,
    start(port, host = '127.0.0.1') {
      const address = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
      return new Promise<number>((resolve, reject) => {
        server.bindAsync(address, credentials, (err, bound) => (err ? reject(err) : resolve(bound)));
      });
    },
    drain(timeoutMs) {
      setHealth('NOT_SERVING');
      return new Promise((resolve) => {
        const timer = setTimeout(() => {
          server.forceShutdown();
          resolve('forced');
        }, timeoutMs);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve('graceful');
        });
      });
    },
  };
}
