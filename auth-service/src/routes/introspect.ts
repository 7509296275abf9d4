/** RFC 7662 token introspection, POST /auth/introspect. */
import type { FastifyInstance } from 'fastify';
import { introspectRefreshToken } from '../sessions.js';
import { parseBody, tokenBody } from './bodies.js';
import { bearer, noStore, verifiedOrNull, type RouteDeps } from './shared.js';

/**
 * POST /auth/introspect, RFC 7662 token introspection: `token` (an access token or a refresh
 * token). The caller authenticates with a Bearer access token holding the `introspect` scope
 * (§2.1; RFC 6750 errors from the core's denial: 401 invalid_token, 403 insufficient_scope).
 *
 * Answers 200 (no-store) `{ active: true, scope, client_id, username, token_type, exp, iat,
 * sub, aud, iss, jti, sid }` (§2.2), or `{ active: false }` for an invalid, expired, revoked or
 * unknown token, or one whose user is gone or revoked all tokens since its `iat`. The database,
 * not Redis, decides revocation here. 400 invalid_request; 503 temporarily_unavailable.
 */
export function registerIntrospectRoutes(api: FastifyInstance, deps: RouteDeps): void {
  const { prisma, issuer } = deps;
  api.post('/auth/introspect', async (req, reply) => {
    await bearer(deps, req, { scopes: ['introspect'] });
    const body = parseBody(tokenBody, req.body);
    noStore(reply);
    const inactive = { active: false };
    if (body.token.split('.').length !== 3) return reply.send((await introspectRefreshToken(issuer, body.token)) ?? inactive);
    const verified = await verifiedOrNull(deps, body.token);
    if (!verified) return reply.send(inactive);
    const c = verified.claims;
    // The database is the source of truth for revocation.
    const [revokedJti, session, user] = await Promise.all([
      prisma.revokedAccessToken.findUnique({ where: { jti: c.jti }, select: { jti: true } }),
      c.sid ? prisma.session.findUnique({ where: { id: c.sid }, select: { revokedAt: true } }) : Promise.resolve(null),
      prisma.user.findUnique({ where: { id: c.sub }, select: { username: true, tokensRevokedBefore: true } }),
    ]);
    if (revokedJti || session?.revokedAt || !user) return reply.send(inactive);
    if (user.tokensRevokedBefore && c.iat * 1000 < user.tokensRevokedBefore.getTime()) return reply.send(inactive);
    return reply.send({
      active: true,
      scope: c.scope ?? '',
      client_id: c.client_id,
      username: user.username,
      token_type: 'Bearer',
      exp: c.exp,
      iat: c.iat,
      sub: c.sub,
      aud: c.aud,
      iss: c.iss,
      jti: c.jti,
      sid: c.sid,
    });
  });
}
