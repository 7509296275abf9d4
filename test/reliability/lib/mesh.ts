/**
 * What the fault tests do against a running stack: log a demo user in through the edge, call
 * the protected chain (orders -> inventory -> profile), read an authz replica's decision count.
 */
import type { StackState } from '@jwt-mesh/stack';
import { postJson, request, type Answer } from './http.js';
import { passwordOf } from './stack.js';

/** RFC 6749 §5.1 token response of the auth-service. */
export interface Tokens {
  access_token: string;
  refresh_token: string;
  expires_in: number;
  scope: string;
}

/**
 * POST /auth/login through the edge (or `base`).
 * @throws Error with the status and body when the login does not answer 200
 */
export async function login(state: StackState, username = 'alice', base = state.urls.edge, headers: Record<string, string> = {}): Promise<Tokens> {
  const a = await postJson(`${base}/auth/login`, { username, password: passwordOf(state, username) }, headers);
  if (a.status !== 200) throw new Error(`login ${username}: ${a.status ?? a.error} ${a.status !== undefined ? a.body : ''}`);
  return a.json as Tokens;
}

/** POST /auth/token grant_type=refresh_token (form-encoded), through the edge (or `base`). */
export function refresh(state: StackState, refreshToken: string, base = state.urls.edge, headers: Record<string, string> = {}): Promise<Answer> {
  return request(`${base}/auth/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
    body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: refreshToken }).toString(),
  });
}

/** The protected chain through the edge: GET /api/orders/ord-1001 (orders -> inventory -> profile). */
export const CHAIN_PATH = '/api/orders/ord-1001';

/** GET the chain with a Bearer token, through the edge (or `base`). */
export function callChain(state: StackState, token: string, opts: { base?: string; signal?: AbortSignal; timeoutMs?: number } = {}): Promise<Answer> {
  return request(`${opts.base ?? state.urls.edge}${CHAIN_PATH}`, {
    headers: { authorization: `Bearer ${token}` },
    ...(opts.signal ? { signal: opts.signal } : {}),
    timeoutMs: opts.timeoutMs ?? 10_000,
  });
}

/** Sum of `jwtmesh_authz_decisions_total` on one authz replica's /metrics, or null when it does not answer. */
export async function authzDecisions(metricsUrl: string): Promise<number | null> {
  const a = await request(metricsUrl, { timeoutMs: 2000 });
  if (a.status !== 200) return null;
  let sum = 0;
  for (const line of a.body.split('\n')) {
    const m = /^jwtmesh_authz_decisions_total(?:\{[^}]*\})? ([0-9.e+]+)$/.exec(line);
    if (m) sum += Number(m[1]);
  }
  return sum;
}
