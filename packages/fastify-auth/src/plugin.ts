/**
 * The Fastify verification plugin: a thin adapter over `@jwt-mesh/core` (CONTRIBUTING.md, "A pure core, thin adapters"). It turns
 * a Fastify request into the core's plain {@link AuthRequest}, asks the core's
 * {@link Authenticator} for a {@link Decision}, and either puts the verified {@link Identity} on
 * `request.identity` or answers with the core's {@link toDenial} (status, `WWW-Authenticate`,
 * JSON body). It picks no status and checks no claim itself.
 *
 * Upstream: RFC 6750 §2.1 (Authorization header only), §3 (challenges), Fastify plugin guide
 * (https://fastify.dev/docs/latest/Reference/Plugins/) and hooks (`onRequest`, `preHandler`).
 */
import {
  AuthError,
  createAuthenticator,
  toDenial,
  type AuthErrorCode,
  type AuthRequest,
  type Authenticator,
  type Identity,
  type RevocationChecker,
  type RouteRequirement,
  type Verifier,
} from '@jwt-mesh/core';
import type { FastifyPluginAsync, FastifyReply, FastifyRequest, preHandlerAsyncHookHandler } from 'fastify';
import fp from 'fastify-plugin';

/**
 * Per-route setting, `config: { auth: ... }` in the route options:
 * - absent: the plugin's `defaultRequirement` (by default: any valid, unrevoked token);
 * - `false`: no token is read at all (health, readiness, metrics);
 * - a {@link RouteRequirement}: `{ scopes: [...] }` (every one needed), `{ anyRole: [...] }`
 *   (at least one needed), or both.
 */
export type RouteAuthConfig = false | RouteRequirement;

/** What the plugin reports per checked request: `'allow'` or the core's error code. */
export type AuthOutcome = 'allow' | AuthErrorCode;

declare module 'fastify' {
  interface FastifyRequest {
    /**
     * The verified identity, derived only from the verified JWT (never from `x-jwt-mesh-*`
     * or any other identity header). `null` on routes with `config: { auth: false }`.
     */
    identity: Identity | null;
  }
  interface FastifyContextConfig {
    /** See {@link RouteAuthConfig}. */
    auth?: RouteAuthConfig;
  }
  interface FastifyInstance {
    /**
     * Checks `request` against `requirement` through the core and, on a deny, sends the
     * RFC 6750 answer. Resolves `true` when allowed (and sets `request.identity`), `false`
     * when the reply was sent. Used by the `onRequest` hook and by {@link requireScope}.
     */
    authorize(request: FastifyRequest, reply: FastifyReply, requirement: RouteRequirement): Promise<boolean>;
  }
}

/** Options of the plugin. Give either `authenticator`, or `verifier` and `revocation`. */
export interface FastifyAuthOptions {
  /** The core's decision maker (`createAuthenticator(...)`). Takes precedence over the parts. */
  readonly authenticator?: Authenticator;
  /** The core verifier (`createVerifier(...)`); with `revocation`, used to build an Authenticator. */
  readonly verifier?: Verifier;
  /** The revocation checker (`createRedisRevocation(...)`); with `verifier`. */
  readonly revocation?: RevocationChecker;
  /** `realm` auth-param of the `WWW-Authenticate` challenge (RFC 6750 §3), e.g. the service name. */
  readonly realm?: string;
  /**
   * Requirement of routes whose config has no `auth` key. Default `{}`: any valid, unrevoked
   * token. Use `{ public: true }` to make routes public unless they opt in (not recommended).
   */
  readonly defaultRequirement?: RouteRequirement;
  /**
   * Called once per decision with its outcome (for metrics such as auth outcomes by reason).
   * Must not throw.
   */
  readonly onDecision?: (outcome: AuthOutcome, request: FastifyRequest) => void;
  /**
   * Log each denial on its own line (`request denied` at info, with the error code and policy
   * rule). Default true. A host that writes one line per request itself (the mesh services'
   * runtime package) turns it off and puts the code from `onDecision` on that line.
   */
  readonly logDenials?: boolean;
}

/**
 * The plain request the core reads. The path has no query string. `authorization` is taken from
 * the raw header list, so two `Authorization` headers stay two values (Node's parser keeps only
 * the first one in `request.headers`) and the core answers `credentials_multiple` (400).
 */
export function authRequestOf(request: FastifyRequest): AuthRequest {
  const raw = request.raw.rawHeaders;
  const authorization: string[] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) {
    if (raw[i]!.toLowerCase() === 'authorization') authorization.push(raw[i + 1]!);
  }
  const headers: Record<string, string | readonly string[] | undefined> = { ...request.headers };
  if (authorization.length > 1) headers['authorization'] = authorization;
  const q = request.url.indexOf('?');
  return { method: request.method, path: q === -1 ? request.url : request.url.slice(0, q), headers };
}

const plugin: FastifyPluginAsync<FastifyAuthOptions> = async (fastify, opts) => {
  let authenticator: Authenticator;
  if (opts.authenticator !== undefined) authenticator = opts.authenticator;
  else if (opts.verifier !== undefined && opts.revocation !== undefined) {
    authenticator = createAuthenticator({ verifier: opts.verifier, revocation: opts.revocation });
  } else {
    throw new TypeError('@jwt-mesh/fastify-auth needs `authenticator`, or both `verifier` and `revocation`');
  }
  const realm = opts.realm;
  const defaultRequirement: RouteRequirement = opts.defaultRequirement ?? {};
  const onDecision = opts.onDecision;
  const logDenials = opts.logDenials ?? true;

  fastify.decorateRequest('identity', null);

  fastify.decorate('authorize', async function authorize(request: FastifyRequest, reply: FastifyReply, requirement: RouteRequirement): Promise<boolean> {
    let decision;
    try {
      decision = await authenticator.decide(authRequestOf(request), requirement);
    } catch (err) {
      // The core never throws; if it ever does, the request is denied (fail closed).
      decision = { allow: false as const, error: new AuthError('internal', 'the authenticator threw', { cause: err }) };
    }
    if (decision.allow) {
      if (decision.identity !== null) request.identity = decision.identity;
      onDecision?.('allow', request);
      return true;
    }
    onDecision?.(decision.error.code, request);
    if (logDenials) request.log.info({ auth: { code: decision.error.code, rule: decision.rule } }, 'request denied');
    const denial = toDenial(decision.error, realm);
    await reply.code(denial.httpStatus).headers(denial.headers).send(denial.body);
    return false;
  });

  fastify.addHook('onRequest', async (request, reply) => {
    const auth = request.routeOptions.config?.auth;
    if (auth === false) return;
    await fastify.authorize(request, reply, auth ?? defaultRequirement);
  });
};

/**
 * The plugin. Register it once on the root instance (it is wrapped with `fastify-plugin`, so
 * its hook and decorators apply to every route):
 *
 * ```ts
 * await app.register(fastifyAuth, { authenticator, realm: 'orders' });
 * app.get('/healthz', { config: { auth: false } }, ...);
 * app.get('/api/orders/:id', { config: { auth: { scopes: ['orders:read'] } } }, ...);
 * ```
 */
export const fastifyAuth = fp(plugin, { fastify: '5.x', name: '@jwt-mesh/fastify-auth' });

/**
 * A `preHandler` that additionally requires every scope in `scopes` (and, with `anyRole`, one of
 * those roles), through the core. Use on routes whose requirement is not known from the route
 * config alone, e.g. `{ preHandler: requireScope('orders:write') }`. Answers 403
 * `insufficient_scope` (with `scope="..."` in the challenge) when a scope is missing.
 *
 * @param scopes - scope names, e.g. `'orders:write'`
 */
export function requireScope(...scopes: string[]): preHandlerAsyncHookHandler {
  return requirement({ scopes });
}

/**
 * A `preHandler` for any {@link RouteRequirement} (`scopes`, `anyRole`), checked by the core.
 */
export function requirement(req: RouteRequirement): preHandlerAsyncHookHandler {
  return async function (this: unknown, request: FastifyRequest, reply: FastifyReply): Promise<void> {
    await request.server.authorize(request, reply, req);
  };
}

/**
 * The verified identity of `request`, for handlers of authenticated routes.
 *
 * @throws AuthError `internal` when the route opted out of authentication (`auth: false`): a
 *   programming error that must fail closed, never fall back to an anonymous identity
 */
export function identityOfRequest(request: FastifyRequest): Identity {
  if (request.identity === null) throw new AuthError('internal', 'no verified identity on this route (config.auth is false?)');
  return request.identity;
}
