/** Discovery: the RFC 7517 JWK Set and the RFC 8414 metadata, under /.well-known/. */
import type { FastifyInstance } from 'fastify';
import type { RouteDeps } from './shared.js';

/**
 * GET /.well-known/jwks.json, the RFC 7517 JWK Set (`application/jwk-set+json`, public for 60 s):
 * every unretired signing key, pending ones included, public members only, with `kid`, `alg`,
 * `use: "sig"` (keys.ts). GET /.well-known/openid-configuration, RFC 8414 authorization-server
 * metadata (public for 300 s): issuer, jwks_uri and the endpoints, all under JWT_ISSUER.
 * Neither fails: no error beyond the app's 503 when the process is closing.
 */
export function registerJwksRoutes(api: FastifyInstance, deps: RouteDeps): void {
  const { config, keys } = deps;
  api.get('/.well-known/jwks.json', async (_req, reply) => {
    return reply.header('cache-control', 'public, max-age=60').type('application/jwk-set+json').send(keys.jwks());
  });
  api.get('/.well-known/openid-configuration', async (_req, reply) => {
    const base = config.jwt.issuer.replace(/\/+$/, '');
    return reply.header('cache-control', 'public, max-age=300').send({
      issuer: config.jwt.issuer,
      jwks_uri: `${base}/.well-known/jwks.json`,
      token_endpoint: `${base}/auth/token`,
      revocation_endpoint: `${base}/auth/revoke`,
      introspection_endpoint: `${base}/auth/introspect`,
      grant_types_supported: ['password', 'refresh_token'],
      response_types_supported: [],
      token_endpoint_auth_methods_supported: ['none'],
      revocation_endpoint_auth_methods_supported: ['none'],
      scopes_supported: [...new Set([...config.defaultUserScopes, 'introspect'])],
      access_token_signing_alg_values_supported: [...new Set([config.signingKey.alg, ...config.jwt.algorithms])],
      claims_supported: ['iss', 'sub', 'aud', 'exp', 'iat', 'jti', 'client_id', 'scope', 'sid', 'roles'],
    });
  });
}
