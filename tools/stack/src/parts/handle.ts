/** What `startStack` hands back: the state of the started stack (`.run/stack.json`) and the {@link Stack} handle. */
import { rmSync } from 'node:fs';
import type { DevCerts } from '@jwt-mesh/envoy';
import { REPO_ROOT } from '@jwt-mesh/testkit';
import type { StackState } from '../state.js';
import type { Stack } from '../stack.js';
import type { Launcher, Running } from './launcher.js';
import { tracingCollector } from './tracing.js';
import { audienceOf, authUrl, issuerOf, type Wiring } from './node.js';
import { serviceUrlsOf } from './services.js';
import { edgeUrls } from './edge.js';

/** The state of the started stack (`.run/stack.json`): URLs, database, Redis, issuer, users, tracing; `processes` is filled when it is written. */
export function stackState(w: Wiring): StackState {
  const { options, paths: p, plan } = w;
  const edge = edgeUrls(plan);
  const collector = tracingCollector(w.tracing);
  return {
    version: 1,
    startedAt: new Date().toISOString(),
    root: REPO_ROOT,
    runDir: p.runDir,
    logDir: p.logDir,
    certDir: p.certDir,
    supervisor: options.supervisor ?? null,
    processes: [],
    urls: {
      edge: edge.http,
      edgeHttps: edge.https,
      edgeAdmin: `http://127.0.0.1:${plan.edge.admin}`,
      auth: authUrl(plan),
      jwks: `${authUrl(plan)}/.well-known/jwks.json`,
      authzGrpc: plan.authz.map((port) => `127.0.0.1:${port}`),
      authzMetrics: plan.authzMetrics.map((port) => `http://127.0.0.1:${port}/metrics`),
      services: serviceUrlsOf(w),
    },
    database: { url: w.databaseUrl, embedded: !options.databaseUrl, dataDir: options.databaseUrl ? null : p.pgliteDataDir },
    redis: { url: w.redis.url, embedded: !options.redisUrl, prefix: w.prefix, ...(w.redis.acl ? { acl: w.redis.acl } : {}) },
    jwt: { issuer: issuerOf(plan), audience: audienceOf(options) },
    users: w.users.map((u) => ({ ...u })),
    ...(collector
      ? {
          tracing: {
            endpoint: collector.endpoint,
            receiver: w.tracing.receiverPort !== undefined ? `http://127.0.0.1:${w.tracing.receiverPort}` : null,
            edgeSamplePercent: options.tracing?.edgeSamplePercent ?? 100,
          },
        }
      : {}),
    ready: true,
  };
}

/** The {@link Stack} handle over the started parts. */
export function stackHandle(run: Launcher, state: StackState, certs: DevCerts): Stack {
  const { running, order } = run;
  const get = (part: string): Running => {
    const r = running.get(part);
    if (!r) throw new Error(`stack: no part "${part}" (parts: ${order.join(', ')})`);
    return r;
  };
  let stopping: Promise<void> | undefined;
  return {
    state,
    certs,
    redisPrefix: run.prefix,
    parts: () => [...order],
    isRunning: (part) => running.get(part)?.running() ?? false,
    logFile: (part) => running.get(part)?.record.log ?? run.logOf(part),
    async stopPart(part) {
      await get(part).stop();
    },
    async startPart(part) {
      const def = run.defs.get(part);
      if (!def) throw new Error(`stack: no part "${part}"`);
      if (running.get(part)?.running()) return;
      await run.launch(def);
    },
    signalPart(part, sig) {
      get(part).kill(sig);
    },
    envoy(part) {
      const e = run.envoys.get(part);
      if (!e) throw new Error(`stack: no Envoy part "${part}"`);
      return e;
    },
    stop() {
      stopping ??= (async () => {
        await run.stopAll();
        if (run.paths.stateFile) rmSync(run.paths.stateFile, { force: true });
      })();
      return stopping;
    },
  };
}
