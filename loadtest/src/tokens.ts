/**
 * The Node runner's token pool: `size` sessions logged in once (POST /auth/login), handed out
 * round-robin to requests, each refreshed (POST /auth/token, grant_type=refresh_token, RFC 6749 §6)
 * `refreshMarginSec` before its access token expires. One process holds the pool, so a rotated
 * refresh token is never used twice (reuse would revoke the family, RFC 9700 §4.14).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
import { tokenAnswerProblem, type TokenAnswer, type UserCredentials } from '../k6/lib/scenario.js';

/** A session of the pool. `expiresAt` is epoch milliseconds on the local clock. */
export interface PoolSession {
  readonly username: string;
  access: string;
  refresh: string;
  expiresAt: number;
}

/** Logging in or refreshing failed; `status` is the HTTP status when there was an answer. */
export class TokenError extends Error {
  readonly status: number | undefined;
  constructor(message: string, status?: number, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.status = status;
  }
}

/** Options of {@link TokenPool.create}. */
export interface TokenPoolOptions {
  /** The edge (or auth-service) base URL, e.g. `http://127.0.0.1:8080`. */
  baseUrl: string;
  users: readonly UserCredentials[];
  /** Sessions to log in (round-robin over `users`). */
  size: number;
  /** Refresh when less than this many seconds of an access token's lifetime are left. Default 60. */
  refreshMarginSec?: number;
  /** Attempts per login when the answer is 429/503 (waiting `Retry-After`, at most 10 s). Default 3. */
  loginAttempts?: number;
  /** Per request, ms. Default 30000 (logins hash passwords on purpose and may be slow). */
  timeoutMs?: number;
}

async function postToken(url: string, body: string, contentType: string, timeoutMs: number): Promise<{ status: number; retryAfterSec: number; json: unknown }> {
  const res = await request(url, {
    method: 'POST',
    headers: { 'content-type': contentType, accept: 'application/json' },
    body,
    signal: AbortSignal.timeout(timeoutMs),
  });
  const text = await res.body.text();
  let json: unknown = null;
  try {
    json = JSON.parse(text);
  } catch {
    json = null;
  }
  const ra = Number(res.headers['retry-after'] ?? '1');
  return { status: res.statusCode, retryAfterSec: Math.min(Math.max(Number.isFinite(ra) ? ra : 1, 1), 10), json };
}

/**
 * `POST <baseUrl>/auth/login {username, password}`, retrying 429/503 after `Retry-After`.
 * @returns the token answer.
 * @throws TokenError naming the user and the status (or the network error) when it fails.
 */
export async function login(baseUrl: string, user: UserCredentials, opts: { attempts?: number; timeoutMs?: number } = {}): Promise<TokenAnswer> {
  const attempts = opts.attempts ?? 3;
  for (let attempt = 1; ; attempt++) {
    let r: Awaited<ReturnType<typeof postToken>>;
    try {
      r = await postToken(`${baseUrl}/auth/login`, JSON.stringify(user), 'application/json', opts.timeoutMs ?? 30_000);
    } catch (err) {
      throw new TokenError(`login as ${user.username} at ${baseUrl}/auth/login failed: ${(err as Error).message}`, undefined, { cause: err });
    }
    if ((r.status === 429 || r.status === 503) && attempt < attempts) {
      await sleep(r.retryAfterSec * 1000);
      continue;
    }
    const problem = r.status === 200 ? tokenAnswerProblem(r.json) : `status ${r.status} ${JSON.stringify(r.json)}`;
    if (problem) throw new TokenError(`login as ${user.username} at ${baseUrl}/auth/login failed: ${problem}`, r.status);
    return r.json as TokenAnswer;
  }
}

/**
 * `POST <baseUrl>/auth/token` with `grant_type=refresh_token` (form-encoded, RFC 6749 §6).
 * @returns the rotated token answer. @throws TokenError on any other answer.
 */
export async function refreshTokens(baseUrl: string, refreshToken: string, timeoutMs = 30_000): Promise<TokenAnswer> {
  const body = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: refreshToken }).toString();
  let r: Awaited<ReturnType<typeof postToken>>;
  try {
    r = await postToken(`${baseUrl}/auth/token`, body, 'application/x-www-form-urlencoded', timeoutMs);
  } catch (err) {
    throw new TokenError(`refresh at ${baseUrl}/auth/token failed: ${(err as Error).message}`, undefined, { cause: err });
  }
  const problem = r.status === 200 ? tokenAnswerProblem(r.json) : `status ${r.status} ${JSON.stringify(r.json)}`;
  if (problem) throw new TokenError(`refresh at ${baseUrl}/auth/token failed: ${problem}`, r.status);
  return r.json as TokenAnswer;
}

/** A pool of logged-in sessions that refreshes itself until {@link TokenPool.close}. */
export class TokenPool {
  readonly sessions: PoolSession[];
  /** Successful refreshes, and refreshes that failed even after a fresh login. */
  readonly stats = { logins: 0, refreshes: 0, refreshFailures: 0 };
  private readonly timers = new Set<NodeJS.Timeout>();
  private closed = false;
  private next = 0;

  private constructor(
    private readonly opts: Required<Omit<TokenPoolOptions, 'users'>> & { users: readonly UserCredentials[] },
    sessions: PoolSession[],
  ) {
    this.sessions = sessions;
  }

  /**
   * Logs in `size` sessions (sequentially: logins are rate-limited per address and per user) and
   * schedules their refreshes.
   * @throws TokenError when a login fails (the message names the user and the answer).
   */
  static async create(options: TokenPoolOptions): Promise<TokenPool> {
    if (options.users.length === 0) throw new TokenError('no users to log in as');
    const opts = { refreshMarginSec: 60, loginAttempts: 3, timeoutMs: 30_000, ...options, size: Math.max(1, Math.floor(options.size)) };
    const sessions: PoolSession[] = [];
    for (let i = 0; i < opts.size; i++) {
      const user = opts.users[i % opts.users.length] as UserCredentials;
      const t = await login(opts.baseUrl, user, { attempts: opts.loginAttempts, timeoutMs: opts.timeoutMs });
      sessions.push({ username: user.username, access: t.access_token, refresh: t.refresh_token, expiresAt: Date.now() + t.expires_in * 1000 });
    }
    const pool = new TokenPool(opts, sessions);
    pool.stats.logins = sessions.length;
    for (const s of sessions) pool.schedule(s);
    return pool;
  }

  /** The access token for request `seq` (round-robin over the sessions). */
  accessToken(seq?: number): string {
    const i = seq ?? this.next++;
    return (this.sessions[i % this.sessions.length] as PoolSession).access;
  }

  private schedule(s: PoolSession): void {
    if (this.closed) return;
    const delay = Math.max(0, s.expiresAt - this.opts.refreshMarginSec * 1000 - Date.now());
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      void this.refreshOne(s);
    }, delay);
    timer.unref();
    this.timers.add(timer);
  }

  private async refreshOne(s: PoolSession): Promise<void> {
    try {
      const t = await refreshTokens(this.opts.baseUrl, s.refresh, this.opts.timeoutMs).catch(async () => {
        const user = this.opts.users.find((u) => u.username === s.username) ?? (this.opts.users[0] as UserCredentials);
        return login(this.opts.baseUrl, user, { attempts: this.opts.loginAttempts, timeoutMs: this.opts.timeoutMs });
      });
      s.access = t.access_token;
      s.refresh = t.refresh_token;
      s.expiresAt = Date.now() + t.expires_in * 1000;
      this.stats.refreshes += 1;
    } catch {
      this.stats.refreshFailures += 1;
      // Keep the old token; the requests using it will fail visibly once it expires.
      s.expiresAt = Date.now() + this.opts.refreshMarginSec * 1000 + 5_000;
    }
    this.schedule(s);
  }

  /** Refreshes every session now (used by tests and by long benchmark runs between steps). */
  async refreshAll(): Promise<void> {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    await Promise.all(this.sessions.map((s) => this.refreshOne(s)));
  }

  /** Stops the refresh timers. Idempotent. */
  close(): void {
    this.closed = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
  }
}
