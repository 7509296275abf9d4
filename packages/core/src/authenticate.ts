/**
 * The one decision every verifier makes (ext_authz server, Fastify plugin): route policy,
 * Bearer extraction, JWT verification (with a verified-token cache), revocation, and the
 * route's scope / role requirement. Returns a {@link Decision}; never throws.
 */
import type { Span, Tracer } from '@opentelemetry/api';
import { LRUCache } from 'lru-cache';
import { extractBearer } from './bearer.js';
import { AuthError, isAuthError } from './errors.js';
import { matchRoute, type Policy } from './policy.js';
import { coreTracer, JWT_MESH_ATTR, kidOfCompactJws, recordOutcome, tracingActive } from './tracing.js';
import type { AuthRequest, Decision, Identity, RevocationChecker, RouteRequirement } from './types.js';
import { identityOf, type Verifier } from './verify.js';

/** Options of {@link createAuthenticator}. */
export interface AuthenticatorOptions {
  /** From `createVerifier`. */
  verifier: Verifier;
  /** Consulted on every request, cache hit or not (e.g. `createRedisRevocation`). */
  revocation: RevocationChecker;
  /**
   * Route policy (`parsePolicy`). Used when `decide` gets no explicit requirement. Without a
   * policy and without a requirement, any valid, unrevoked token is allowed.
   */
  policy?: Policy;
  /**
   * Size of the verified-token cache (entries, keyed by the exact token string). An entry
   * expires at the token's `exp` (never later, clock tolerance not included). 0 disables the
   * cache. Default 10_000.
   */
  verifiedCacheMaxEntries?: number;
  /** Deadline for one decision, in milliseconds; past it the answer is `deadline_exceeded`. Default 1_000. */
  deadlineMs?: number;
  /** Clock in epoch milliseconds (cache expiry); pass the verifier's clock in tests. Default `Date.now`. */
  now?: () => number;
}

/** Defaults of {@link AuthenticatorOptions}. */
export const AUTHENTICATOR_DEFAULTS = Object.freeze({ verifiedCacheMaxEntries: 10_000, deadlineMs: 1_000 });

/** Makes the allow / deny decision for one request. */
export interface Authenticator {
  /**
   * Decides one request. Never throws and never rejects.
   *
   * Order: requirement (explicit, else the policy's match for `method` + `path`; `null` means
   * deny with `route_denied`) -> a public requirement allows at once (a token, if sent, is not
   * examined; identity `null`) -> `extractBearer` -> verified-token cache or `verifier.verify`
   * -> `revocation.check` (every time) -> `scopes` (all) and `anyRole` (at least one), else
   * `insufficient_scope` with `requiredScopes`.
   *
   * @param req - method, path (query ignored), lower-case headers
   * @param requirement - overrides the policy: a route's own requirement (Fastify route
   *   option); `null` = deny; `undefined` = use the policy (or "authenticated" without one)
   * @returns `{ allow: true, identity, rule? }` or `{ allow: false, error, rule? }`; any
   *   unexpected failure is `internal`, a slow one `deadline_exceeded`
   *
   * Tracing (only when an OpenTelemetry SDK is registered, see `tracingActive`): one INTERNAL
   * span `authenticate` (child of the active span: the Check or the server span) with
   * `jwt_mesh.outcome` (and `jwt_mesh.reason`, `jwt_mesh.policy.rule`), and children
   * `jwt.verify` (`jwt_mesh.verified_cache.hit`, `jwt_mesh.kid`, `jwt_mesh.outcome`),
   * `revocation.check` (`jwt_mesh.revocation.source` set by the store, `jwt_mesh.revocation.result`)
   * and `policy.authorize` (`jwt_mesh.policy.decision`, `jwt_mesh.policy.rule`). No token
   * material is ever put on a span.
   */
  decide(req: AuthRequest, requirement?: RouteRequirement | null): Promise<Decision>;
  /**
   * Verified-token cache counters since this authenticator was built (for metrics). Optional in
   * the interface so that an application's own `Authenticator` need not count; `createAuthenticator`'s has it.
   */
  stats?(): AuthenticatorStats;
}

/** Counters of the verified-token cache, as read by {@link Authenticator.stats}. */
export interface AuthenticatorStats {
  /** Tokens answered from the verified-token cache (entry present and not past its `exp`). */
  readonly verifiedCacheHits: number;
  /** Tokens that went through `verifier.verify` (signature and claims), whatever the result. */
  readonly verifiedCacheMisses: number;
}

interface CacheEntry {
  readonly identity: Identity;
  /** `kid` of the verified token's header (for the `jwt_mesh.kid` span attribute). */
  readonly kid: string;
  /** `exp` in epoch milliseconds. */
  readonly expMs: number;
}

/**
 * Builds an {@link Authenticator}.
 * @throws RangeError for a negative or non-integer cache size or deadline
 */
export function createAuthenticator(opts: AuthenticatorOptions): Authenticator {
  const { verifier, revocation, policy } = opts;
  const now = opts.now ?? Date.now;
  const maxEntries = opts.verifiedCacheMaxEntries ?? AUTHENTICATOR_DEFAULTS.verifiedCacheMaxEntries;
  const deadlineMs = opts.deadlineMs ?? AUTHENTICATOR_DEFAULTS.deadlineMs;
  if (!Number.isSafeInteger(maxEntries) || maxEntries < 0) throw new RangeError('verifiedCacheMaxEntries must be an integer >= 0');
  if (!Number.isFinite(deadlineMs) || deadlineMs <= 0) throw new RangeError('deadlineMs must be a number > 0 (milliseconds)');
  const cache = maxEntries > 0 ? new LRUCache<string, CacheEntry>({ max: maxEntries }) : null;
  const counters = { verifiedCacheHits: 0, verifiedCacheMisses: 0 };
  const deadlines = new DeadlineQueue(deadlineMs);

  /**
   * Verified-token cache or `verifier.verify`, then `revocation.check`. With a `tracer`, the two
   * steps get the `jwt.verify` and `revocation.check` spans (children of the active span).
   */
  async function identify(token: string, hit: CacheEntry | undefined, tracer: Tracer | null): Promise<Identity> {
    let entry = hit ?? cache?.get(token);
    if (entry !== undefined && now() >= entry.expMs) {
      cache!.delete(token);
      entry = undefined;
    }
    const verifySpan = tracer?.startSpan('jwt.verify');
    if (entry === undefined) {
      counters.verifiedCacheMisses++;
      entry = await verifyToken(verifier, token, verifySpan);
      const ttl = entry.expMs - now();
      // Only while the token is valid by its own exp; lru-cache also drops it on its clock.
      if (cache !== null && ttl > 0) cache.set(token, entry, { ttl });
      if (verifySpan !== undefined) endVerifySpan(verifySpan, false, entry.kid, null);
    } else {
      counters.verifiedCacheHits++;
      if (verifySpan !== undefined) endVerifySpan(verifySpan, true, entry.kid, null);
    }
    const id = entry.identity;
    const lookup = { jti: id.jti, sid: id.sid, sub: id.sub, iat: id.iat };
    const revokedBy = tracer === null ? await revocation.check(lookup) : await tracedRevocationCheck(tracer, revocation, lookup);
    if (revokedBy !== null) throw new AuthError('token_revoked', `revoked by ${revokedBy}`);
    return id;
  }

  async function decideWith(req: AuthRequest, requirement: RouteRequirement | null | undefined, span: Span | null): Promise<Decision> {
    const tracer = span === null ? null : coreTracer();
    let rule: string | undefined;
    let decision: Decision;
    try {
      const route = requirementOf(policy, req, requirement);
      rule = route.rule;
      const need = route.need;
      if (need === null) {
        decision = denied(new AuthError('route_denied'), rule);
        if (tracer !== null) policySpan(tracer, rule, decision.allow ? null : decision.error);
      } else if (need.public === true) {
        decision = rule === undefined ? { allow: true, identity: null } : { allow: true, identity: null, rule };
        if (tracer !== null) policySpan(tracer, rule, null);
      } else {
        const hit = cachedCredential(cache, req.headers);
        const token = hit?.token ?? extractBearer(req.headers);
        const identity = await withDeadline(deadlines, identify(token, hit?.entry, tracer));
        authorizeTraced(tracer, identity, need, rule);
        decision = rule === undefined ? { allow: true, identity } : { allow: true, identity, rule };
      }
    } catch (err) {
      decision = denied(isAuthError(err) ? err : new AuthError('internal', 'unexpected failure', { cause: err }), rule);
    }
    if (span !== null) {
      if (rule !== undefined) span.setAttribute(JWT_MESH_ATTR.POLICY_RULE, rule);
      recordOutcome(span, decision.allow ? null : decision.error);
    }
    return decision;
  }

  return {
    stats: () => ({ ...counters }),
    decide(req, requirement) {
      if (!tracingActive()) return decideWith(req, requirement, null);
      // An unsampled request (parent's flag off) gets a non-recording span: then no child span
      // and no attribute work either.
      return coreTracer().startActiveSpan('authenticate', (span) =>
        decideWith(req, requirement, span.isRecording() ? span : null).finally(() => span.end()),
      );
    },
  };
}

/**
 * The requirement of a request: the explicit one when given (`null` = deny), else the policy's
 * match for `method` + `path` (with its rule id), else "authenticated" (`{}`) without a policy.
 */
function requirementOf(
  policy: Policy | undefined,
  req: AuthRequest,
  requirement: RouteRequirement | null | undefined,
): { need: RouteRequirement | null; rule: string | undefined } {
  if (requirement !== undefined) return { need: requirement, rule: undefined };
  if (policy === undefined) return { need: {}, rule: undefined };
  const m = matchRoute(policy, req.method, req.path);
  return { need: m.requirement, rule: m.rule?.id };
}

/**
 * `verifier.verify(token)` as a verified-token cache entry. On a failure it ends `verifySpan`
 * (with the `kid` decoded from the token, when it has one) and rethrows the verifier's error.
 */
async function verifyToken(verifier: Verifier, token: string, verifySpan: Span | undefined): Promise<CacheEntry> {
  let verified: Awaited<ReturnType<Verifier['verify']>>;
  try {
    verified = await verifier.verify(token);
  } catch (err) {
    if (verifySpan !== undefined) endVerifySpan(verifySpan, false, kidOfCompactJws(token), err);
    throw err;
  }
  return { identity: identityOf(verified), kid: verified.header.kid, expMs: verified.claims.exp * 1000 };
}

/** `revocation.check` inside its own active span, so the store can say where it answered. */
function tracedRevocationCheck(
  tracer: Tracer,
  revocation: RevocationChecker,
  lookup: Parameters<RevocationChecker['check']>[0],
): ReturnType<RevocationChecker['check']> {
  return tracer.startActiveSpan('revocation.check', async (span) => {
    try {
      const revokedBy = await revocation.check(lookup);
      span.setAttribute(JWT_MESH_ATTR.REVOCATION_RESULT, revokedBy ?? 'none');
      recordOutcome(span, revokedBy === null ? null : new AuthError('token_revoked'));
      return revokedBy;
    } catch (err) {
      recordOutcome(span, isAuthError(err) ? err : new AuthError('internal'));
      throw err;
    } finally {
      span.end();
    }
  });
}

/** The route's `scopes` (all needed) and `anyRole` (one needed); else throws `insufficient_scope` with `requiredScopes`. */
function authorize(id: Identity, req: RouteRequirement): void {
  const scopes = req.scopes;
  if (scopes !== undefined && scopes.length > 0) {
    for (const s of scopes) {
      if (!id.scopes.includes(s)) throw new AuthError('insufficient_scope', `missing scope ${s}`, { requiredScopes: scopes });
    }
  }
  const roles = req.anyRole;
  if (roles !== undefined && roles.length > 0 && !roles.some((r) => id.roles.includes(r))) {
    throw new AuthError('insufficient_scope', 'none of the required roles', { requiredScopes: scopes ?? [] });
  }
}

/** `work`, rejected with AuthError `deadline_exceeded` when `deadlines` expires first. */
function withDeadline<T>(deadlines: DeadlineQueue, work: Promise<T>): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const entry = deadlines.add(reject);
    work.then(
      (v) => {
        deadlines.finish(entry);
        resolve(v);
      },
      (err: unknown) => {
        deadlines.finish(entry);
        reject(err);
      },
    );
  });
}

/**
 * Fast path for a repeated token: `Bearer <token>` with exactly one space, the token in the
 * verified-token cache. Everything in the cache passed `extractBearer` before (a b64token:
 * no comma, no whitespace), so the header value has the same meaning; anything else takes
 * the full path.
 */
function cachedCredential(cache: LRUCache<string, CacheEntry> | null, headers: AuthRequest['headers']): { token: string; entry: CacheEntry } | undefined {
  if (cache === null) return undefined;
  const v = headers['authorization'];
  if (typeof v !== 'string' || !v.startsWith('Bearer ')) return undefined;
  const token = v.slice(7);
  const entry = cache.get(token);
  return entry === undefined ? undefined : { token, entry };
}

/** `policy.authorize`: the route requirement applied to the identity (or to no token at all). */
function policySpan(tracer: Tracer, rule: string | undefined, err: AuthError | null): void {
  const span = tracer.startSpan('policy.authorize');
  span.setAttribute(JWT_MESH_ATTR.POLICY_DECISION, err === null ? 'allow' : 'deny');
  if (rule !== undefined) span.setAttribute(JWT_MESH_ATTR.POLICY_RULE, rule);
  recordOutcome(span, err);
  span.end();
}

/** {@link authorize}, with a `policy.authorize` span when there is a `tracer`. */
function authorizeTraced(tracer: Tracer | null, id: Identity, need: RouteRequirement, rule: string | undefined): void {
  if (tracer === null) return authorize(id, need);
  try {
    authorize(id, need);
  } catch (err) {
    policySpan(tracer, rule, isAuthError(err) ? err : new AuthError('internal'));
    throw err;
  }
  policySpan(tracer, rule, null);
}

/** Ends a `jwt.verify` span with the cache flag, the `kid` (when known) and the outcome. */
function endVerifySpan(span: Span, cacheHit: boolean, kid: string | undefined, err: unknown): void {
  span.setAttribute(JWT_MESH_ATTR.VERIFIED_CACHE_HIT, cacheHit);
  if (kid !== undefined) span.setAttribute(JWT_MESH_ATTR.KID, kid);
  recordOutcome(span, err === null ? null : isAuthError(err) ? err : new AuthError('internal'));
  span.end();
}

function denied(error: AuthError, rule: string | undefined): Decision {
  return rule === undefined ? { allow: false, error } : { allow: false, error, rule };
}

/** One pending deadline of a {@link DeadlineQueue}. */
export interface DeadlineEntry {
  readonly at: number;
  done: boolean;
  reject: ((err: AuthError) => void) | null;
}

/**
 * Deadlines of in-flight decisions with one timer instead of one per request: every entry has
 * the same duration, so entries expire in insertion order and the queue is FIFO. The timer is
 * armed for the oldest pending entry only. Finished entries are dropped from the head as soon
 * as they finish, so the queue holds roughly the decisions in flight (no garbage kept alive
 * until the timer fires). Exported for adapters that bound their own work the same way (the
 * ext_authz handler): `new DeadlineQueue(ms)` (milliseconds, every entry), `add(reject)` when
 * the work starts (`reject` is called with AuthError `deadline_exceeded` once `ms` passes
 * first), `finish(entry)` when it ends.
 */
export class DeadlineQueue {
  private entries: DeadlineEntry[] = [];
  private head = 0;
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly ms: number) {}

  add(reject: (err: AuthError) => void): DeadlineEntry {
    const entry: DeadlineEntry = { at: performance.now() + this.ms, done: false, reject };
    this.entries.push(entry);
    if (this.timer === null) this.arm(this.ms);
    return entry;
  }

  /** Marks an entry finished and drops finished entries from the head. */
  finish(entry: DeadlineEntry): void {
    entry.done = true;
    entry.reject = null;
    const q = this.entries;
    while (this.head < q.length && q[this.head]!.done) this.head++;
    if (this.head === q.length) {
      if (q.length > 0) this.entries = [];
      this.head = 0;
    } else if (this.head > 1024 && this.head * 2 > q.length) {
      this.entries = q.slice(this.head);
      this.head = 0;
    }
  }

  private arm(delay: number): void {
    // Referenced on purpose: it exists only while decisions are pending, and must fire.
    this.timer = setTimeout(() => this.fire(), Math.max(1, Math.ceil(delay)));
  }

  private fire(): void {
    this.timer = null;
    const t = performance.now();
    const q = this.entries;
    while (this.head < q.length) {
      const e = q[this.head]!;
      if (!e.done) {
        if (e.at > t) break;
        const reject = e.reject;
        e.done = true;
        e.reject = null;
        reject?.(new AuthError('deadline_exceeded'));
      }
      this.head++;
    }
    if (this.head === q.length) {
      this.entries = [];
      this.head = 0;
      return;
    }
    this.arm(q[this.head]!.at - t);
  }
}
