/**
 * An in-memory revocation store FOR TESTS ONLY: it is per-process, so a revocation made in one
 * process never reaches another. Production verifiers use `@jwt-mesh/core/redis`.
 */
import { AuthError } from '../errors.js';
import type { RevocationChecker, RevocationPublisher, RevocationTarget } from '../types.js';

/** The in-memory test store; `failing = true` makes `check` throw `revocation_unavailable`. */
export interface MemoryRevocationForTests extends RevocationChecker, RevocationPublisher {
  /** Injected fault: while true, `check` throws AuthError `revocation_unavailable`. */
  failing: boolean;
  /** Number of `check` calls so far. */
  readonly checks: number;
}

/**
 * Builds an in-memory {@link RevocationChecker} + {@link RevocationPublisher} for unit tests.
 * Same semantics as the Redis store: a revoked `jti` or `sid` rejects; a `sub` entry rejects
 * tokens whose `iat` is strictly before `before` (epoch seconds). `expiresAt` is ignored.
 */
export function createMemoryRevocationForTests(): MemoryRevocationForTests {
  const jtis = new Set<string>();
  const sids = new Set<string>();
  const subs = new Map<string, number>();
  let checks = 0;
  const store: MemoryRevocationForTests = {
    failing: false,
    get checks() {
      return checks;
    },
    async check({ jti, sid, sub, iat }) {
      checks++;
      if (store.failing) throw new AuthError('revocation_unavailable', 'injected fault');
      if (jtis.has(jti)) return 'jti';
      if (sid !== undefined && sids.has(sid)) return 'sid';
      const before = subs.get(sub);
      if (before !== undefined && iat < before) return 'sub';
      return null;
    },
    async revoke(target: RevocationTarget) {
      if (target.kind === 'jti') jtis.add(target.id);
      else if (target.kind === 'sid') sids.add(target.id);
      else subs.set(target.id, Math.max(subs.get(target.id) ?? 0, target.before));
    },
  };
  return store;
}
