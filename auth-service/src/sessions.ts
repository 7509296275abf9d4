/**
 * Sessions and tokens: login (a new refresh-token family = `sid`), refresh-token rotation with
 * reuse detection (RFC 6749 §6, RFC 9700 §4.14.2), and revocation of families and access tokens
 * (database first, the source of truth; then Redis through the core's RevocationPublisher).
 * No HTTP here: every failure is an {@link OAuthError}.
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { RevocationPublisher } from '@jwt-mesh/core';
import { nowSec, type Clock } from './clock.js';
import type { Config } from './config.js';
import type { PrismaClient } from './db.js';
import { OAuthError } from './errors.js';
import type { KeyStore } from './keys.js';
import type { Metrics } from './metrics.js';
import {
  accessTokenClaims,
  hashRefreshToken,
  newRefreshToken,
  openSuccessor,
  parseScope,
  REFRESH_TOKEN_PATTERN,
  sameHash,
  sealSuccessor,
} from './tokens.js';

/** What the issuer needs. */
export interface IssuerDeps {
  readonly prisma: PrismaClient;
  readonly keys: KeyStore;
  readonly config: Config;
  readonly clock: Clock;
  readonly revocation: RevocationPublisher;
  readonly logger: Logger;
  readonly metrics: Metrics;
  /**
   * Called when a revocation could not be published to Redis (the database holds it): asks the
   * revocation re-sync to run now and until it succeeds, instead of at the next interval.
   */
  readonly onPublishFailed?: () => void;
}

/** RFC 6749 §5.1 successful token response. */
export interface TokenResponse {
  access_token: string;
  token_type: 'Bearer';
  /** Access-token lifetime, seconds. */
  expires_in: number;
  refresh_token: string;
  /** Granted scopes, space-separated (RFC 6749 §3.3). */
  scope: string;
}

/** Why a session was revoked (stored in `revoked_reason`). */
export type RevokeReason = 'logout' | 'revoke' | 'reuse_detected';

interface UserForToken {
  id: string;
  roles: string[];
  scopes: string[];
}

/**
 * Chooses the granted scopes: the requested ones (all must be held), else everything held.
 * @throws OAuthError invalid_scope naming nothing secret
 */
export function grantScope(requested: string | undefined, held: readonly string[]): string[] {
  if (requested === undefined) return [...held];
  const want = parseScope(requested);
  const missing = want.filter((s) => !held.includes(s));
  if (missing.length > 0) throw new OAuthError('invalid_scope', 'the requested scope exceeds the scope granted');
  return want;
}

async function issueAccessToken(
  deps: IssuerDeps,
  user: UserForToken,
  sid: string,
  clientId: string,
  scope: readonly string[],
): Promise<{ token: string; expiresIn: number }> {
  const ttl = deps.config.jwt.accessTokenTtlSec;
  const claims = accessTokenClaims({
    issuer: deps.config.jwt.issuer,
    audience: deps.config.jwt.audience,
    subject: user.id,
    clientId,
    scope,
    roles: user.roles,
    sid,
    iat: nowSec(deps.clock),
    ttlSec: ttl,
  });
  return { token: await deps.keys.signAccessToken(claims), expiresIn: ttl };
}

/**
 * Starts a session for an authenticated user: a new family (`sid`), its first refresh token and
 * an access token.
 *
 * @param opts.clientId - the public client's id (goes into `client_id` and the family)
 * @param opts.scope - requested scopes (space-separated), default all the user's scopes
 * @throws OAuthError invalid_scope; Prisma errors (mapped to 503 by the app)
 */
export async function startSession(
  deps: IssuerDeps,
  user: UserForToken,
  opts: { clientId: string; scope?: string },
): Promise<TokenResponse> {
  const scope = grantScope(opts.scope, user.scopes);
  const now = new Date(deps.clock.now());
  const expiresAt = new Date(now.getTime() + deps.config.refreshTokenTtlSec * 1000);
  const refreshToken = newRefreshToken();
  const sid = randomUUID();
  await deps.prisma.session.create({
    data: {
      id: sid,
      userId: user.id,
      clientId: opts.clientId,
      createdAt: now,
      expiresAt,
      refreshTokens: {
        create: {
          id: randomUUID(),
          tokenHash: hashRefreshToken(refreshToken),
          userId: user.id,
          clientId: opts.clientId,
          scope: scope.join(' '),
          expiresAt,
          createdAt: now,
        },
      },
    },
  });
  const access = await issueAccessToken(deps, user, sid, opts.clientId, scope);
  return { access_token: access.token, token_type: 'Bearer', expires_in: access.expiresIn, refresh_token: refreshToken, scope: scope.join(' ') };
}

const invalidGrant = (description: string) => new OAuthError('invalid_grant', description);

/**
 * Finds a refresh token's row by hash; `null` for anything that is not one of ours.
 */
async function findRefreshRow(deps: IssuerDeps, token: string) {
  if (!REFRESH_TOKEN_PATTERN.test(token)) return null;
  const hash = hashRefreshToken(token);
  const row = await deps.prisma.refreshToken.findUnique({
    where: { tokenHash: hash },
    include: { session: true, user: { select: { id: true, roles: true, scopes: true, tokensRevokedBefore: true } } },
  });
  if (!row || !sameHash(row.tokenHash, hash)) return null;
  return row;
}

/**
 * RFC 6749 §6 refresh with rotation.
 *
 * - Unused token: atomically marks it rotated (conditional update `rotatedAt IS NULL` inside a
 *   transaction that also creates the successor), and returns the successor.
 * - Token rotated less than REFRESH_REUSE_GRACE_SEC ago (concurrent refreshes, e.g. two tabs,
 *   or a lost response): returns the SAME successor, which is stored sealed under a key derived
 *   from the old token, plus a fresh access token. The family never forks.
 * - Token rotated longer ago: reuse. The whole family and its `sid` are revoked (DB, then Redis),
 *   an audit line is logged (`event: refresh_token_reuse`), and the answer is invalid_grant.
 *
 * @param opts.clientId - if given, must equal the family's client (else invalid_grant)
 * @param opts.scope - optional narrowing for the access token (RFC 6749 §6); the new refresh
 *   token keeps the family's scope
 * @throws OAuthError invalid_grant | invalid_scope; Prisma errors (503 in the app)
 */
export async function refreshSession(
  deps: IssuerDeps,
  refreshToken: string,
  opts: { clientId?: string; scope?: string; clientAddress?: string } = {},
): Promise<TokenResponse> {
  try {
    return await rotate(deps, refreshToken, opts);
  } catch (err) {
    if (err instanceof OAuthError && err.code !== 'temporarily_unavailable' && !(err.cause instanceof ReuseDetected)) {
      deps.metrics.refreshOutcomes.inc({ outcome: 'invalid' });
    }
    throw err;
  }
}

/** Marks the invalid_grant answered for reuse (metrics count it apart). */
class ReuseDetected extends Error {}

async function rotate(
  deps: IssuerDeps,
  refreshToken: string,
  opts: { clientId?: string; scope?: string; clientAddress?: string },
): Promise<TokenResponse> {
  let row = await findRefreshRow(deps, refreshToken);
  if (!row) throw invalidGrant('the refresh token is invalid');
  if (opts.clientId !== undefined && opts.clientId !== row.clientId) throw invalidGrant('the refresh token was issued to another client');
  const now = new Date(deps.clock.now());
  const checkUsable = (r: NonNullable<typeof row>): void => {
    if (r.revokedAt || r.session.revokedAt) throw invalidGrant('the refresh token has been revoked');
    if (r.expiresAt <= now) throw invalidGrant('the refresh token has expired');
    if (r.user.tokensRevokedBefore && r.createdAt < r.user.tokensRevokedBefore) throw invalidGrant('the refresh token has been revoked');
  };
  checkUsable(row);
  const familyScope = parseScope(row.scope);
  const granted = grantScope(opts.scope, familyScope).filter((s) => row!.user.scopes.includes(s));

  const respond = async (r: NonNullable<typeof row>, successor: string): Promise<TokenResponse> => {
    const access = await issueAccessToken(deps, r.user, r.familyId, r.clientId, granted);
    return { access_token: access.token, token_type: 'Bearer', expires_in: access.expiresIn, refresh_token: successor, scope: granted.join(' ') };
  };

  if (row.rotatedAt === null) {
    const successor = newRefreshToken();
    const successorId = randomUUID();
    const expiresAt = new Date(now.getTime() + deps.config.refreshTokenTtlSec * 1000);
    const current = row;
    const won = await deps.prisma.$transaction(
      async (tx) => {
        const claimed = await tx.refreshToken.updateMany({
          where: { id: current.id, rotatedAt: null, revokedAt: null },
          data: { rotatedAt: now, replacedById: successorId, successorSealed: sealSuccessor(refreshToken, successor, current.id) },
        });
        if (claimed.count !== 1) return false;
        await tx.refreshToken.create({
          data: {
            id: successorId,
            tokenHash: hashRefreshToken(successor),
            familyId: current.familyId,
            parentId: current.id,
            userId: current.userId,
            clientId: current.clientId,
            scope: current.scope,
            expiresAt,
            createdAt: now,
          },
        });
        await tx.session.update({ where: { id: current.familyId }, data: { expiresAt } });
        return true;
      },
      { maxWait: 5000, timeout: 10_000 },
    );
    if (won) {
      deps.metrics.refreshOutcomes.inc({ outcome: 'rotated' });
      return respond(current, successor);
    }
    // Lost the race: another request rotated it just now. Read what it stored.
    row = await findRefreshRow(deps, refreshToken);
    if (!row) throw invalidGrant('the refresh token is invalid');
    checkUsable(row);
  }

  const rotatedAt = row.rotatedAt!;
  const withinGrace = now.getTime() - rotatedAt.getTime() <= deps.config.refreshReuseGraceSec * 1000;
  if (withinGrace && row.successorSealed && row.replacedById) {
    const successor = openSuccessor(refreshToken, row.successorSealed, row.id);
    if (successor !== null) {
      const next = await deps.prisma.refreshToken.findUnique({ where: { id: row.replacedById }, select: { revokedAt: true, expiresAt: true } });
      if (!next || next.revokedAt || next.expiresAt <= now) throw invalidGrant('the refresh token has been revoked');
      deps.metrics.refreshOutcomes.inc({ outcome: 'grace_successor' });
      return respond(row, successor);
    }
  }

  // Reuse of a rotated token after the grace window: the family is compromised.
  await revokeFamily(deps, row.familyId, 'reuse_detected');
  deps.metrics.refreshOutcomes.inc({ outcome: 'reuse_detected' });
  deps.logger.warn(
    {
      event: 'refresh_token_reuse',
      family: row.familyId,
      user: row.userId,
      client_id: row.clientId,
      rotated_at: rotatedAt.toISOString(),
      client_address: opts.clientAddress,
    },
    'refresh token reuse detected: family and sid revoked',
  );
  throw new OAuthError('invalid_grant', 'the refresh token was already used; the session has been revoked', { cause: new ReuseDetected() });
}

/**
 * Publishes a revocation to Redis; a failure is logged and returned (the database already holds
 * the revocation; callers decide whether the client must retry).
 */
async function publish(deps: IssuerDeps, target: Parameters<RevocationPublisher['revoke']>[0], expiresAt: number): Promise<Error | null> {
  try {
    await deps.revocation.revoke(target, expiresAt);
    return null;
  } catch (err) {
    deps.logger.error({ err, kind: target.kind, id: target.id }, 'revocation not published to Redis; verifiers will not see it until it is published again');
    deps.onPublishFailed?.();
    return err instanceof Error ? err : new Error(String(err));
  }
}

/**
 * Revokes a session: the family's session row and all its refresh tokens (one transaction),
 * then `sid` in Redis with `expiresAt = now + ACCESS_TOKEN_TTL_SEC + JWT_CLOCK_TOLERANCE_SEC`
 * (no access token of the family can outlive that). Idempotent: publishes again every time.
 *
 * @returns `null`, or the Redis error when the database was written but Redis was not
 */
export async function revokeFamily(deps: IssuerDeps, sid: string, reason: RevokeReason): Promise<Error | null> {
  const now = new Date(deps.clock.now());
  await deps.prisma.$transaction([
    deps.prisma.session.updateMany({ where: { id: sid, revokedAt: null }, data: { revokedAt: now, revokedReason: reason } }),
    deps.prisma.refreshToken.updateMany({ where: { familyId: sid, revokedAt: null }, data: { revokedAt: now, revokedReason: reason } }),
  ]);
  const until = nowSec(deps.clock) + deps.config.jwt.accessTokenTtlSec + deps.config.jwt.clockToleranceSec;
  return publish(deps, { kind: 'sid', id: sid }, until);
}

/**
 * Revokes one access token by `jti`: a `revoked_access_tokens` row kept until the token's `exp`,
 * then the Redis entry with `expiresAt = exp + JWT_CLOCK_TOLERANCE_SEC` (verifiers accept a token
 * until exp + tolerance, so the entry must live that long). Idempotent.
 *
 * @param token - verified claims: `jti`, `sub`, `sid` (optional), `exp` (epoch seconds)
 * @returns `null`, or the Redis error when the database was written but Redis was not
 */
export async function revokeAccessToken(
  deps: IssuerDeps,
  token: { jti: string; sub: string; sid?: string | undefined; exp: number },
): Promise<Error | null> {
  const expiresAt = new Date(token.exp * 1000);
  await deps.prisma.revokedAccessToken.upsert({
    where: { jti: token.jti },
    create: { jti: token.jti, sub: token.sub, sid: token.sid ?? null, expiresAt, revokedAt: new Date(deps.clock.now()) },
    update: {},
  });
  return publish(deps, { kind: 'jti', id: token.jti }, token.exp + deps.config.jwt.clockToleranceSec);
}

/**
 * Revokes the family of a refresh token (RFC 7009 §2.1: revoking a refresh token also
 * invalidates the access tokens of the same grant).
 *
 * @param opts.onlyForUser - revoke only if the token belongs to this user (logout)
 * @returns whether a family was found, and the Redis error if publishing failed
 */
export async function revokeRefreshToken(
  deps: IssuerDeps,
  refreshToken: string,
  reason: RevokeReason,
  opts: { onlyForUser?: string } = {},
): Promise<{ found: boolean; error: Error | null }> {
  const row = await findRefreshRow(deps, refreshToken);
  if (!row || (opts.onlyForUser !== undefined && row.userId !== opts.onlyForUser)) return { found: false, error: null };
  return { found: true, error: await revokeFamily(deps, row.familyId, reason) };
}

/** RFC 7662 §2.2 answer for a refresh token (`{ active: false }` unless usable now). */
export async function introspectRefreshToken(deps: IssuerDeps, refreshToken: string): Promise<Record<string, unknown> | null> {
  const row = await findRefreshRow(deps, refreshToken);
  if (!row) return null;
  const now = new Date(deps.clock.now());
  const active =
    !row.rotatedAt &&
    !row.revokedAt &&
    !row.session.revokedAt &&
    row.expiresAt > now &&
    !(row.user.tokensRevokedBefore && row.createdAt < row.user.tokensRevokedBefore);
  if (!active) return { active: false };
  const user = await deps.prisma.user.findUnique({ where: { id: row.userId }, select: { username: true } });
  if (!user) return { active: false };
  return {
    active: true,
    token_type: 'refresh_token',
    scope: row.scope,
    client_id: row.clientId,
    username: user.username,
    sub: row.userId,
    sid: row.familyId,
    iss: deps.config.jwt.issuer,
    iat: Math.floor(row.createdAt.getTime() / 1000),
    exp: Math.floor(row.expiresAt.getTime() / 1000),
  };
}
