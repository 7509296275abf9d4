/**
 * The subscriber: pub/sub on `<prefix>revocations`, the invalidation of the lookup cache by its
 * messages, and the cache's trust, which lasts only while the subscription does.
 */
import type { Redis } from 'ioredis';
import type { LookupCache } from './redis-lookup.js';

/** The subscriber's counter, from {@link subscribeToRevocations}. */
export interface RevocationSubscriber {
  /** Invalidation messages received. */
  readonly invalidations: number;
}

/**
 * Keeps the lookup cache honest with the issuer's messages on `channel`: subscribes on every
 * `ready` of `sub` (then trusts the cache, emptied), distrusts and empties it whenever the
 * connection drops (so a missed message cannot keep a revoked token alive), and drops the key a
 * message names (`{"kind":"jti"|"sid"|"sub","id":"..."}`), or every key with a message it cannot
 * read (reported to `onError` as `message`). A failed SUBSCRIBE is reported as `subscriber`; the
 * next reconnect tries again.
 *
 * @param o.isClosed - whether the store was closed: a subscription that completes after that
 *   does not trust the cache again
 */
export function subscribeToRevocations(
  sub: Redis,
  o: { channel: string; prefix: string; cache: LookupCache; onError: (err: Error, context: 'subscriber' | 'message') => void; isClosed: () => boolean },
): RevocationSubscriber {
  const { channel, prefix, cache, onError, isClosed } = o;
  let invalidations = 0;
  for (const ev of ['close', 'end', 'reconnecting']) {
    sub.on(ev, () => cache.distrust());
  }
  sub.on('ready', () => {
    sub.subscribe(channel).then(
      () => {
        if (isClosed() || sub.status !== 'ready') return;
        cache.trust(); // anything cached before this point may have missed a message
      },
      (err: Error) => onError(err, 'subscriber'),
    );
  });
  sub.on('message', (ch: string, message: string) => {
    if (ch !== channel) return;
    invalidations++;
    const key = revokedKeyOf(prefix, message);
    if (key !== null) return cache.invalidate(key);
    onError(new Error('unreadable revocation message; cache cleared'), 'message');
    cache.drop();
  });
  return {
    get invalidations() {
      return invalidations;
    },
  };
}

/** The key a revocation message names (`<prefix>rv:<kind>:<id>`), or null for a message that is not one. */
function revokedKeyOf(prefix: string, message: string): string | null {
  try {
    const m = JSON.parse(message) as { kind?: unknown; id?: unknown };
    if ((m.kind === 'jti' || m.kind === 'sid' || m.kind === 'sub') && typeof m.id === 'string') return `${prefix}rv:${m.kind}:${m.id}`;
  } catch {
    // not JSON
  }
  return null;
}
