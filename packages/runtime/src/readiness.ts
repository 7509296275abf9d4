/**
 * Readiness of a verifying service: it can decide requests only once the JWK Set has been
 * fetched at least once and the revocation subscriber (Redis pub/sub) is ready. Until then
 * `/readyz` answers 503, so neither Kubernetes nor `make up` sends it traffic.
 */

/** A remote key source as the core builds it (`createRemoteKeySource`). */
export interface ProbedKeySource {
  getKey(header: { kid: string; alg: string }): Promise<unknown>;
  stats(): { readonly lastSuccessAt: number | null };
}

/** The revocation checker's lifecycle side (`createRedisRevocation`). */
export interface ReadyRevocation {
  ready(): Promise<void>;
}

/** Named checks and the overall answer. */
export interface ReadinessReport {
  readonly ready: boolean;
  readonly checks: Readonly<Record<string, boolean>>;
}

/** What `/readyz` asks. */
export interface Readiness {
  /** The current state; never throws. */
  report(): ReadinessReport;
  /** Stops background retries (at shutdown). */
  stop(): void;
}

/** Options of {@link createReadiness}. */
export interface ReadinessOptions {
  readonly keys: ProbedKeySource;
  readonly revocation: ReadyRevocation;
  /** Extra named checks (e.g. the gRPC server is bound). Each must not throw. */
  readonly extra?: Readonly<Record<string, () => boolean>>;
  /** Delay between two JWKS warm-up attempts while none has succeeded, in ms. Default 1000. */
  readonly retryMs?: number;
  /** Called with a failed warm-up attempt (for logs). */
  readonly onRetry?: (err: unknown, what: 'jwks' | 'revocation') => void;
}

/** A `kid` no issuer uses: asking for it makes the key source fetch the JWK Set. */
const PROBE_KID = 'jwt-mesh-readiness-probe';

/**
 * Starts warming up (fetch the JWK Set; wait for the revocation subscriber) and returns the
 * readiness state. The key source's own cooldown bounds the fetch rate.
 */
export function createReadiness(opts: ReadinessOptions): Readiness {
  const retryMs = opts.retryMs ?? 1000;
  let revocationReady = false;
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;

  const jwksReady = (): boolean => opts.keys.stats().lastSuccessAt !== null;

  const warmJwks = (): void => {
    if (stopped || jwksReady()) return;
    opts.keys.getKey({ kid: PROBE_KID, alg: 'RS256' }).then(
      () => undefined,
      (err: unknown) => {
        if (!jwksReady()) opts.onRetry?.(err, 'jwks');
      },
    ).finally(() => {
      if (!stopped && !jwksReady()) {
        timer = setTimeout(warmJwks, retryMs);
        timer.unref();
      }
    });
  };

  const waitRevocation = (): void => {
    if (stopped) return;
    opts.revocation.ready().then(
      () => {
        revocationReady = true;
      },
      (err: unknown) => {
        opts.onRetry?.(err, 'revocation');
        if (!stopped) setTimeout(waitRevocation, retryMs).unref();
      },
    );
  };

  warmJwks();
  waitRevocation();

  return {
    report() {
      const checks: Record<string, boolean> = { jwks: jwksReady(), revocation: revocationReady };
      for (const [name, check] of Object.entries(opts.extra ?? {})) checks[name] = check();
      return { ready: Object.values(checks).every(Boolean), checks };
    },
    stop() {
      stopped = true;
      if (timer !== undefined) clearTimeout(timer);
    },
  };
}
