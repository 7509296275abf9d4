/** RFC 7009 token revocation, POST /auth/revoke. */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Span } from '@opentelemetry/api';
import { revokeAccessToken, revokeRefreshToken } from '../sessions.js';
import { AUTH_ATTR, inSpan, oneOf } from '../tracing.js';
import { parseBody, tokenBody } from './bodies.js';
import { noStore, propagated, verifiedOrNull, type RouteDeps } from './shared.js';

/**
 * POST /auth/revoke, RFC 7009 token revocation: `token` (an access token or a refresh token),
 * optional `token_type_hint` (§2.1; tried first, the other kind after). An access token's `jti`
 * is revoked; a refresh token revokes its whole refresh-token family (`sid`).
 *
 * Answers 200 with no body whether or not the token was valid (§2.2: an invalid, expired or
 * unknown token is not an error); 400 invalid_request (missing or malformed `token`);
 * 503 temporarily_unavailable (saved but not yet propagated to Redis, JWKS unavailable,
 * database down). No client authentication (public clients, §2.1).
 */
export function registerRevokeRoutes(api: FastifyInstance, deps: RouteDeps): void {
  api.post('/auth/revoke', async (req, reply) => {
    await inSpan('auth.revoke', (span) => revoke(deps, req, span));
    return noStore(reply).code(200).send();
  });
}

async function revoke(deps: RouteDeps, req: FastifyRequest, span: Span | null): Promise<void> {
  const { metrics, issuer } = deps;
  if (span?.isRecording()) {
    const hint = (req.body as { token_type_hint?: unknown } | undefined)?.token_type_hint;
    span.setAttribute(AUTH_ATTR.TOKEN_TYPE_HINT, hint === undefined || hint === '' ? 'none' : oneOf(hint, ['access_token', 'refresh_token']));
    span.setAttribute(AUTH_ATTR.REVOKED, 'none');
  }
  const body = parseBody(tokenBody, req.body);
  const looksLikeJwt = body.token.split('.').length === 3;
  const order = body.token_type_hint === 'refresh_token' || !looksLikeJwt ? ['refresh_token', 'access_token'] : ['access_token', 'refresh_token'];
  for (const kind of order) {
    if (kind === 'access_token') {
      if (!looksLikeJwt) continue;
      const verified = await verifiedOrNull(deps, body.token);
      if (!verified) continue; // invalid or expired: nothing to revoke (RFC 7009 §2.2)
      const c = verified.claims;
      propagated(await revokeAccessToken(issuer, { jti: c.jti, sub: c.sub, sid: c.sid, exp: c.exp }));
      metrics.revocations.inc({ kind: 'jti' });
      if (span?.isRecording()) span.setAttribute(AUTH_ATTR.REVOKED, 'jti');
      break;
    } else {
      const r = await revokeRefreshToken(issuer, body.token, 'revoke');
      if (!r.found) continue;
      propagated(r.error);
      metrics.revocations.inc({ kind: 'sid' });
      if (span?.isRecording()) span.setAttribute(AUTH_ATTR.REVOKED, 'sid');
      break;
    }
  }
}
