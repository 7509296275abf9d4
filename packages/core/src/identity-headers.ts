/**
 * The identity headers: the one list of their names, shared by the ext_authz server (which sets
 * them on an allowed request, `OkHttpResponse.headers`) and the Envoy configs (which remove every
 * one of them from the client's request BEFORE ext_authz runs, on every route). Only verified
 * values can reach a service; services still derive identity from the JWT itself and treat these
 * as informational.
 *
 * - `x-jwt-mesh-sub`: `sub`
 * - `x-jwt-mesh-scope`: the granted scopes, space-separated (as in the `scope` claim)
 * - `x-jwt-mesh-sid`: `sid` (session / refresh-token family)
 * - `x-jwt-mesh-jti`: `jti`
 * - `x-jwt-mesh-roles`: `roles`, comma-separated
 * - `x-jwt-mesh-client-id`: `client_id`
 */
export const IDENTITY_HEADERS = Object.freeze([
  'x-jwt-mesh-sub',
  'x-jwt-mesh-scope',
  'x-jwt-mesh-sid',
  'x-jwt-mesh-jti',
  'x-jwt-mesh-roles',
  'x-jwt-mesh-client-id',
] as const);

/** One of {@link IDENTITY_HEADERS}. */
export type IdentityHeader = (typeof IDENTITY_HEADERS)[number];
