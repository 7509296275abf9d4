/**
 * A verifier's lookup: the MGET of one token's revocation keys (and the sync marker), the
 * in-process cache of lookups, and the fail mode when Redis cannot answer.
 */
import type { Redis } from 'ioredis';
import { trace } from '@opentelemetry/api';
import { LRUCache } from 'lru-cache';
import { AuthError } from '../errors.js';
import { JWT_MESH_ATTR, tracingActive } from '../tracing.js';
import type { RevocationChecker } from '../types.js';
import { markerMismatch } from './redis-sync-marker.js';

/** Cached "no key" marker (lru-cache cannot hold null). */
const ABSENT = '';

/** The revocation keys of one token: `<prefix>rv:jti:<jti>`, `...sid:<sid>` (null without a `sid`), `...sub:<sub>`. */
export interface RevocationKeys {
  readonly jti: string;
  readonly sid: string | null;
  readonly sub: string;
}

/** The values of {@link RevocationKeys} (epoch seconds as text; null: no such key, or no `sid`). */
export interface RevocationValues {
  readonly jti: string | null;
  readonly sid: string | null;
  readonly sub: string | null;
}

/**
 * The in-process cache of lookups (lru-cache, `ttlMs` milliseconds, at most `maxEntries` keys;
 * either 0 turns it off). It is trusted only while the subscriber is subscribed
 * (`subscribeToRevocations` in redis-subscriber.ts calls {@link LookupCache.trust} and
 * {@link LookupCache.distrust}); an `epoch`, bumped on every invalidation and every change of
 * that state, keeps a lookup that straddles one out of it.
 */
export class LookupCache {
  private readonly lru: LRUCache<string, string> | null;
  private currentEpoch = 0;
  private isSubscribed = false;

  /**
   * @param ttlMs - lifetime of a cached lookup, milliseconds
   * @param maxEntries - largest number of cached keys
   */
  constructor(ttlMs: number, maxEntries: number) {
    this.lru = ttlMs > 0 && maxEntries > 0 ? new LRUCache<string, string>({ max: maxEntries, ttl: ttlMs }) : null;
  }

  /** Bumped on every invalidation and subscriber state change; a lookup that straddles one is not cached. */
  get epoch(): number {
    return this.currentEpoch;
  }

  /** Whether the subscriber is subscribed (the cache is read and filled only then). */
  get subscribed(): boolean {
    return this.isSubscribed;
  }

  /** Every value of `keys` from the cache, or undefined when the cache is off, not trusted, or misses one. */
  read(keys: RevocationKeys): RevocationValues | undefined {
    if (this.lru === null || !this.isSubscribed) return undefined;
    const jti = this.get(keys.jti);
    const sub = this.get(keys.sub);
    const sid = keys.sid === null ? null : this.get(keys.sid);
    if (jti === undefined || sid === undefined || sub === undefined) return undefined;
    return { jti, sid, sub };
  }

  /** Caches a lookup's values, unless the cache is not trusted or `epoch` moved since `startEpoch`. */
  store(startEpoch: number, keys: RevocationKeys, values: RevocationValues): void {
    if (this.lru === null || !this.isSubscribed || startEpoch !== this.currentEpoch) return;
    this.lru.set(keys.jti, values.jti ?? ABSENT);
    this.lru.set(keys.sub, values.sub ?? ABSENT);
    if (keys.sid !== null) this.lru.set(keys.sid, values.sid ?? ABSENT);
  }

  /** Drops one key (a revocation message, or the issuer's own `revoke`). */
  invalidate(key: string): void {
    this.currentEpoch++;
    this.lru?.delete(key);
  }

  /** Drops every key (anything cached may have missed a message). */
  drop(): void {
    this.currentEpoch++;
    this.lru?.clear();
  }

  /** The subscriber is subscribed: drops what was cached before (it may have missed a message), then trusts the cache. */
  trust(): void {
    this.drop();
    this.isSubscribed = true;
  }

  /** The subscriber dropped (or the store closes): drops everything and stops using the cache. */
  distrust(): void {
    this.isSubscribed = false;
    this.drop();
  }

  private get(key: string): string | null | undefined {
    const v = this.lru!.get(key);
    return v === undefined ? undefined : v === ABSENT ? null : v;
  }
}

/** What {@link createRedisLookup} needs. */
export interface RedisLookupOptions {
  /** The command connection. */
  readonly cmd: Redis;
  /** Key prefix, e.g. `jwtmesh:`. */
  readonly prefix: string;
  readonly cache: LookupCache;
  /** Deadline of one MGET, milliseconds. */
  readonly lookupTimeoutMs: number;
  /** `onUnavailable: 'allow'`: a lookup Redis cannot answer resolves null instead of throwing. */
  readonly failOpen: boolean;
  /**
   * With `requireSyncMarker`: the marker's key, read in the same MGET, and the identity of the
   * server the connection is on, which it must name. null: the marker is not read.
   */
  readonly syncMarker: { readonly key: string; readonly serverId: () => string | null } | null;
  /** Every failed lookup (`lookup`) and every refused marker (`sync`). */
  readonly onError: (err: Error, context: 'lookup' | 'sync') => void;
}

/** The lookup's counters (the fields of the same names in `RedisRevocationStats`). */
export interface RedisLookupStats {
  /** `check` calls answered entirely from the in-process cache. */
  readonly cacheHits: number;
  /** Round trips to Redis made by `check`. */
  readonly lookups: number;
  /** Lookups that failed or timed out, or whose sync marker was refused. */
  readonly failures: number;
  /** Lookups refused because the sync marker was missing or named another server. */
  readonly unsynced: number;
  /** Whether the latest lookup found the sync marker for the server answering (true without `syncMarker`). */
  readonly synced: boolean;
}

/** The verifier's side of the store, from {@link createRedisLookup}. */
export interface RedisLookup {
  /** `RevocationChecker.check`, as `createRedisRevocation` describes it. */
  check: RevocationChecker['check'];
  /** The lookup's counters. */
  stats(): RedisLookupStats;
}

/**
 * The lookup of one token: from the cache when it holds every key of the token, else one MGET
 * (with the sync marker when `syncMarker` is given) within `lookupTimeoutMs`. When Redis cannot
 * answer (error, timeout, marker refused by {@link markerMismatch}) it calls `onError` and
 * fails closed (AuthError `revocation_unavailable`, 503) or, with `failOpen`, resolves null.
 */
export function createRedisLookup(o: RedisLookupOptions): RedisLookup {
  const { cmd, prefix, cache, syncMarker, onError } = o;
  let synced = syncMarker === null;
  const counters = { cacheHits: 0, lookups: 0, failures: 0, unsynced: 0 };

  function unavailable(err: unknown, context: 'lookup' | 'sync' = 'lookup'): null {
    counters.failures++;
    const e = err instanceof Error ? err : new Error(String(err));
    onError(e, context);
    if (o.failOpen) return null;
    throw new AuthError('revocation_unavailable', 'the revocation store could not be read', { cause: err });
  }

  return {
    async check({ jti, sid, sub: subject, iat }) {
      const keys: RevocationKeys = { jti: `${prefix}rv:jti:${jti}`, sid: sid === undefined ? null : `${prefix}rv:sid:${sid}`, sub: `${prefix}rv:sub:${subject}` };
      const cached = cache.read(keys);
      if (cached !== undefined) {
        counters.cacheHits++;
        if (tracingActive()) trace.getActiveSpan()?.setAttribute(JWT_MESH_ATTR.REVOCATION_SOURCE, 'cache');
        return evaluate(cached, iat);
      }
      const mgetKeys = keys.sid === null ? [keys.jti, keys.sub] : [keys.jti, keys.sub, keys.sid];
      if (syncMarker !== null) mgetKeys.push(syncMarker.key);
      const startEpoch = cache.epoch;
      counters.lookups++;
      if (tracingActive()) trace.getActiveSpan()?.setAttribute(JWT_MESH_ATTR.REVOCATION_SOURCE, 'redis');
      let values: Array<string | null>;
      try {
        values = await mgetWithTimeout(cmd, mgetKeys, o.lookupTimeoutMs);
      } catch (err) {
        return unavailable(err);
      }
      const found: RevocationValues = { jti: values[0] ?? null, sub: values[1] ?? null, sid: keys.sid === null ? null : (values[2] ?? null) };
      if (syncMarker !== null) {
        const mismatch = markerMismatch(syncMarker.key, values[mgetKeys.length - 1] ?? null, syncMarker.serverId());
        synced = mismatch === null;
        if (mismatch !== null) {
          counters.unsynced++;
          return unavailable(mismatch, 'sync');
        }
      }
      cache.store(startEpoch, keys, found);
      return evaluate(found, iat);
    },
    stats: () => ({ ...counters, synced }),
  };
}

/** MGET of `keys`, rejected after `timeoutMs` milliseconds. */
function mgetWithTimeout(cmd: Redis, keys: string[], timeoutMs: number): Promise<Array<string | null>> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`revocation lookup slower than ${timeoutMs} ms`)), timeoutMs);
    cmd.mget(keys).then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (err: unknown) => {
        clearTimeout(timer);
        reject(err);
      },
    );
  });
}

/** The first entry that revokes a token issued at `iat` (epoch seconds): `jti`, `sid`, `sub` (when `iat < before`), or null. */
function evaluate(values: RevocationValues, iat: number): 'jti' | 'sid' | 'sub' | null {
  if (values.jti !== null) return 'jti';
  if (values.sid !== null) return 'sid';
  if (values.sub !== null) {
    const before = Number(values.sub);
    if (!Number.isFinite(before) || iat < before) return 'sub'; // unreadable: fail closed
  }
  return null;
}
