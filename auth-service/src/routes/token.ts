/** The RFC 6749 token endpoint, POST /auth/token: the refresh_token (§6) and password (§4.3) grants. */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { OAuthError } from '../errors.js';
import { refreshSession } from '../sessions.js';
import { AUTH_ATTR, inSpan, oneOf } from '../tracing.js';
import { grantTypeBody, parseBody, refreshBody } from './bodies.js';
import { passwordLogin } from './login.js';
import { noStore, perMinute, type LoginLimits, type RouteDeps } from './shared.js';

/**
 * POST /auth/token, the RFC 6749 token endpoint (§3.2), with two grants:
 * - `grant_type=refresh_token` (§6): rotation (each refresh token is used once and replaced)
 *   with reuse detection (a used token presented again revokes its whole refresh-token
 *   family), sessions.ts `refreshSession`;
 * - `grant_type=password` (§4.3): the same check as /auth/login, under the same login limits.
 *
 * Answers a §5.1 token response (no-store), or a §5.2 error: 400 invalid_request,
 * invalid_grant (unknown, expired, revoked or reused refresh token; wrong password),
 * invalid_scope, unsupported_grant_type; 401 invalid_client (`client_id` other than the
 * family's); 429 too_many_requests; 503 temporarily_unavailable.
 */
export function registerTokenRoutes(api: FastifyInstance, deps: RouteDeps, limits: LoginLimits): void {
  const { config } = deps;
  api.post(
    '/auth/token',
    { config: { rateLimit: perMinute(config.rateLimit.refreshPerAddressPerMin, 'token-addr') } },
    async (req, reply) => {
      const tokens = await inSpan('auth.token', async (span) => {
        if (span?.isRecording()) span.setAttribute(AUTH_ATTR.GRANT_TYPE, oneOf((req.body as { grant_type?: unknown } | undefined)?.grant_type, ['refresh_token', 'password']));
        const { grant_type } = parseBody(grantTypeBody, req.body);
        if (grant_type === 'refresh_token') return refreshGrant(deps, req);
        if (grant_type === 'password') {
          await limits.addressLimit(req);
          await limits.usernameLimit(req);
          return inSpan('auth.login', () => passwordLogin(deps, req));
        }
        throw new OAuthError('unsupported_grant_type', 'grant_type must be refresh_token or password');
      });
      return noStore(reply).send(tokens);
    },
  );
}

async function refreshGrant(deps: RouteDeps, req: FastifyRequest) {
  const body = parseBody(refreshBody, req.body);
  return refreshSession(deps.issuer, body.refresh_token, {
    ...(body.client_id !== undefined ? { clientId: body.client_id } : {}),
    ...(body.scope !== undefined ? { scope: body.scope } : {}),
    clientAddress: req.ip,
  });
}
