/**
 * A source of many distinct access tokens (`--many-tokens`, default 1,000) for the bench modes
 * that show what the 16-token pool hides: the first request of each token is verified cold (no
 * verified-token cache entry), and each request's `jti` misses the verifiers' short revocation
 * cache, so a Redis MGET runs per request.
 *
 * Tokens come from `families` logins (each one a refresh-token family, with its own `sid`), each
 * followed by refresh grants (RFC 6749 §6; the refresh token rotates, every grant issues a new
 * access token with a new `jti`): logins hash passwords on purpose (scrypt) and would take
 * minutes for 1,000 sessions, refreshes do not. Earlier access tokens of a family stay valid until
 * their `exp` (rotation revokes nothing while no rotated refresh token is reused).
 */
import type { TokenSource } from '../runner.js';
import type { UserCredentials } from '../../k6/lib/scenario.js';
import { login, refreshTokens } from '../tokens.js';

/** Options of {@link createManyTokens}. */
export interface ManyTokensOptions {
  /** The auth service's base URL (login and token endpoints). */
  readonly baseUrl: string;
  readonly user: UserCredentials;
  /** Distinct access tokens wanted (>= 1). */
  readonly count: number;
  /** Logins (refresh-token families, distinct `sid`s). Default min(count, 20). */
  readonly families?: number;
}

/** The tokens, handed out round-robin. */
export interface ManyTokens extends TokenSource {
  /** Every token, in issue order. */
  readonly tokens: readonly string[];
  /** Distinct `sid`s among them (= logins). */
  readonly families: number;
  /** Earliest `exp` among the tokens, epoch milliseconds. */
  readonly expiresAt: number;
}

/**
 * Logs in `families` times and refreshes each family until `count` access tokens exist.
 * The families run in parallel; each family's refreshes run one after another (a refresh token
 * is used once).
 * @throws TokenError (from `login` / `refreshTokens`) naming the failing call
 */
export async function createManyTokens(opts: ManyTokensOptions): Promise<ManyTokens> {
  const count = Math.max(1, Math.floor(opts.count));
  const families = Math.max(1, Math.min(count, Math.floor(opts.families ?? 20)));
  const per = Array.from({ length: families }, (_, i) => Math.floor(count / families) + (i < count % families ? 1 : 0));
  let expiresAt = Number.POSITIVE_INFINITY;
  const chains = await Promise.all(
    per.map(async (n) => {
      const out: string[] = [];
      let t = await login(opts.baseUrl, opts.user);
      out.push(t.access_token);
      expiresAt = Math.min(expiresAt, Date.now() + t.expires_in * 1000);
      while (out.length < n) {
        t = await refreshTokens(opts.baseUrl, t.refresh_token);
        out.push(t.access_token);
      }
      return out;
    }),
  );
  // Interleave the families so consecutive requests carry different sessions.
  const tokens: string[] = [];
  for (let i = 0; tokens.length < count; i++) for (const c of chains) if (i < c.length) tokens.push(c[i] as string);
  let next = 0;
  return {
    tokens,
    families,
    expiresAt,
    accessToken(seq?: number) {
      const i = seq ?? next++;
      return tokens[i % tokens.length] as string;
    },
  };
}
