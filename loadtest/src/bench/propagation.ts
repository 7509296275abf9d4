/**
 * Revocation propagation: how long after `POST /auth/revoke` is sent each verifier starts to
 * reject the revoked access token. Verifiers: every authz-service replica (asked directly with an
 * ext_authz `Check` over mTLS, as Envoy asks) and every service (asked directly on its own port,
 * local verification, no gateway in front).
 *
 * One trial: take a fresh access token (refresh grant), make every verifier accept it once (which
 * also fills its verified-token cache and its short revocation-lookup cache, the case pub/sub
 * invalidation exists for), then send the revocation and, at the same moment, start probing every
 * verifier back to back. A verifier's figure is the time from sending the revocation to the answer
 * of its first rejecting probe (an upper bound; the probe before it was still accepted). The
 * lower bound (that probe's send time) is kept too, so the probing resolution is visible.
 */
import { performance } from 'node:perf_hooks';
import * as grpc from '@grpc/grpc-js';
import { Client } from 'undici';
import { loadAuthorizationProto } from '@jwt-mesh/authz-service/src/proto.js';
import type { AuthorizationClient } from '@jwt-mesh/authz-service/src/generated/envoy/service/auth/v3/Authorization.js';
import { LatencyRecorder, type LatencySummary } from '../stats.js';

/** What a verifier said about a token. */
export type ProbeAnswer = 'allow' | 'deny' | 'error';

/** A verifier to probe. */
export interface Verifier {
  name: string;
  probe(token: string): Promise<ProbeAnswer>;
  close(): Promise<void> | void;
}

/**
 * A service probed over HTTP on its own port: `deny` on 401, `allow` on `allowStatus`.
 * @param path a route that verifies the token and then does no downstream call (e.g. an unknown id: 404).
 */
export function httpVerifier(name: string, origin: string, path: string, allowStatus: number): Verifier {
  const client = new Client(origin, { keepAliveTimeout: 30_000, pipelining: 1 });
  return {
    name,
    async probe(token) {
      try {
        const res = await client.request({ method: 'GET', path, headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(5000) });
        await res.body.dump();
        if (res.statusCode === 401) return 'deny';
        return res.statusCode === allowStatus ? 'allow' : 'error';
      } catch {
        return 'error';
      }
    },
    close: () => client.close(),
  };
}

/** mTLS material for calling an authz replica as the edge does (PEM contents). */
export interface GrpcTls {
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
  /** The name the server certificate is checked against (`authz.jwt-mesh.svc.cluster.local`). */
  serverName: string;
}

/**
 * An authz-service replica probed with `envoy.service.auth.v3.Authorization/Check`: `allow` when
 * the CheckResponse status is OK (0), `deny` for UNAUTHENTICATED (16) / PERMISSION_DENIED (7).
 */
export function authzVerifier(name: string, address: string, tls: GrpcTls, request: { method: string; path: string }): Verifier {
  const proto = loadAuthorizationProto();
  const creds = grpc.credentials.createSsl(tls.ca, tls.key, tls.cert);
  const client = new proto.envoy.service.auth.v3.Authorization(address, creds, {
    'grpc.ssl_target_name_override': tls.serverName,
    'grpc.default_authority': tls.serverName,
  }) as AuthorizationClient;
  return {
    name,
    probe(token) {
      return new Promise<ProbeAnswer>((resolve) => {
        client.Check(
          {
            attributes: {
              request: {
                http: { method: request.method, path: request.path, host: 'localhost', scheme: 'http', protocol: 'HTTP/1.1', headers: { authorization: `Bearer ${token}` } },
              },
            },
          },
          { deadline: Date.now() + 5000 },
          (err, res) => {
            if (err || !res) return resolve('error');
            const code = res.status?.code ?? -1;
            resolve(code === 0 ? 'allow' : code === 16 || code === 7 ? 'deny' : 'error');
          },
        );
      });
    },
    close: () => client.close(),
  };
}

/** One trial: per verifier, milliseconds from sending the revocation to the first rejection. */
export interface PropagationTrial {
  /** Upper bound (answer of the first rejecting probe), ms; null when not seen within the timeout. */
  seenMs: Record<string, number | null>;
  /** Lower bound (send time of that probe), ms. */
  lowerMs: Record<string, number | null>;
  /** How long `POST /auth/revoke` itself took, ms. */
  revokeMs: number;
  /** The largest `seenMs` over the verifiers (null when any was not seen). */
  allMs: number | null;
}

/**
 * Runs one trial.
 * @param token a valid access token that nobody has revoked.
 * @param revoke sends the revocation; must resolve when the issuer answered 200.
 * @throws Error when a verifier does not accept the token before the revocation (the trial would
 *   measure nothing), naming the verifier.
 */
export async function propagationTrial(verifiers: readonly Verifier[], token: string, revoke: () => Promise<void>, timeoutMs = 3000): Promise<PropagationTrial> {
  for (const v of verifiers) {
    const a = await v.probe(token);
    if (a !== 'allow') throw new Error(`propagation: ${v.name} did not accept the fresh token before revocation (${a})`);
  }
  const t0 = performance.now();
  let revokeMs = 0;
  const revoking = revoke().then(() => {
    revokeMs = performance.now() - t0;
  });
  const per = await Promise.all(
    verifiers.map(async (v) => {
      for (;;) {
        const sent = performance.now();
        const a = await v.probe(token);
        const now = performance.now();
        if (a === 'deny') return { seen: now - t0, lower: Math.max(0, sent - t0) };
        if (now - t0 > timeoutMs) return { seen: null, lower: null };
      }
    }),
  );
  await revoking;
  const seenMs: Record<string, number | null> = {};
  const lowerMs: Record<string, number | null> = {};
  verifiers.forEach((v, i) => {
    const p = per[i] as { seen: number | null; lower: number | null };
    seenMs[v.name] = p.seen === null ? null : round3(p.seen);
    lowerMs[v.name] = p.lower === null ? null : round3(p.lower);
  });
  const values = Object.values(seenMs);
  const allMs = values.some((x) => x === null) ? null : Math.max(...(values as number[]));
  return { seenMs, lowerMs, revokeMs: round3(revokeMs), allMs };
}

/** Summary over trials: per verifier and for "all verifiers" (the slowest per trial). */
export interface PropagationSummary {
  trials: number;
  /** Trials in which some verifier did not reject within the timeout. */
  notSeen: number;
  perVerifier: Record<string, LatencySummary>;
  /** The lower bounds (probe send times), per verifier: the probing resolution. */
  perVerifierLower: Record<string, LatencySummary>;
  all: LatencySummary;
  revoke: LatencySummary;
  /**
   * The slowest verifier's rejection measured from the moment the revoke call *answered* (ms; may
   * be negative: verifiers can reject before the issuer's answer reaches the client). Separates
   * the propagation (Redis publish -> every subscriber) from the issuer's own work (database write).
   */
  sinceRevokeAnswer: { p50: number; p99: number; max: number };
}

/** Nearest-rank percentile of signed values (0 for an empty list). */
export function nearestRank(values: readonly number[], p: number): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i] as number;
}

/** Summarises trials (a verifier that never rejected counts in `notSeen`, not in the percentiles). */
export function summarisePropagation(trials: readonly PropagationTrial[]): PropagationSummary {
  const names = [...new Set(trials.flatMap((t) => Object.keys(t.seenMs)))];
  const perVerifier: Record<string, LatencySummary> = {};
  const perVerifierLower: Record<string, LatencySummary> = {};
  for (const n of names) {
    const r = new LatencyRecorder();
    const l = new LatencyRecorder();
    for (const t of trials) {
      const v = t.seenMs[n];
      if (v !== null && v !== undefined) r.record(v);
      const w = t.lowerMs[n];
      if (w !== null && w !== undefined) l.record(w);
    }
    perVerifier[n] = r.summary();
    perVerifierLower[n] = l.summary();
  }
  const all = new LatencyRecorder();
  const revoke = new LatencyRecorder();
  let notSeen = 0;
  for (const t of trials) {
    if (t.allMs === null) notSeen += 1;
    else all.record(t.allMs);
    revoke.record(t.revokeMs);
  }
  const since = trials.filter((t) => t.allMs !== null).map((t) => round3((t.allMs as number) - t.revokeMs));
  return {
    trials: trials.length,
    notSeen,
    perVerifier,
    perVerifierLower,
    all: all.summary(),
    revoke: revoke.summary(),
    sinceRevokeAnswer: { p50: nearestRank(since, 50), p99: nearestRank(since, 99), max: nearestRank(since, 100) },
  };
}

function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}
