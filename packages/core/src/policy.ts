/**
 * Route policy: which method + path needs which scopes or roles, which routes are public, and
 * what happens to a route no rule names. Validated once at start-up (zod), then matched on
 * every request by longest path prefix on a segment boundary.
 *
 * Envoy normalises paths at the edge (`normalize_path`, `merge_slashes`), but the core does not
 * rely on it: a path with dot segments, encoded `/` `\` `.`, NUL, a backslash or an empty
 * segment is denied as a path trick, because a backend could resolve it to a different route
 * than the one the policy matched.
 */
import { z } from 'zod';
import type { RouteRequirement } from './types.js';

/** One policy rule. */
export interface PolicyRule {
  /** Unique rule id (reported in decisions, logs and metrics). */
  id: string;
  /** Upper-case HTTP methods this rule applies to; absent = every method. */
  methods?: string[];
  /** Path prefix, starting with `/`, matched on a segment boundary. */
  pathPrefix: string;
  /** No token needed (login, token endpoint, JWKS, health). Cannot be combined with scopes/roles. */
  public?: boolean;
  /** Every one of these scopes is required. */
  scopes?: string[];
  /** At least one of these roles is required. */
  anyRole?: string[];
}

/** A validated policy. */
export interface Policy {
  rules: PolicyRule[];
  /** For a route no rule matches: `deny` (403 `route_denied`), or `authenticated` (any valid token). */
  default: 'deny' | 'authenticated';
}

const METHOD = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/; // RFC 9110 token
const SCOPE_TOKEN = /^[\x21\x23-\x5B\x5D-\x7E]+$/; // RFC 6749 §3.3 scope-token

const ruleSchema = z
  .strictObject({
    id: z.string().min(1, 'must be a non-empty string'),
    methods: z
      .array(z.string().regex(METHOD, 'must be an HTTP method token'))
      .min(1, 'must list at least one method (omit it for every method)')
      .transform((ms) => [...new Set(ms.map((m) => m.toUpperCase()))])
      .optional(),
    pathPrefix: z
      .string()
      .startsWith('/', 'must start with "/"')
      .refine((p) => !/[?#\\\u0000%]/.test(p), 'must not contain "?", "#", "\\", "%" or NUL')
      .refine((p) => !p.split('/').some((seg) => seg === '.' || seg === '..'), 'must not contain "." or ".." segments')
      .refine((p) => !p.slice(0, -1).includes('//'), 'must not contain empty segments'),
    public: z.boolean().optional(),
    scopes: z.array(z.string().regex(SCOPE_TOKEN, 'must be a scope token (RFC 6749 §3.3)')).optional(),
    anyRole: z.array(z.string().min(1, 'must be a non-empty string')).min(1, 'must list at least one role').optional(),
  })
  .refine((r) => !(r.public === true && ((r.scopes?.length ?? 0) > 0 || r.anyRole !== undefined)), {
    message: 'a public rule cannot require scopes or roles',
    path: ['public'],
  });

const policySchema = z
  .strictObject({
    rules: z.array(ruleSchema),
    default: z.enum(['deny', 'authenticated']).default('deny'),
  })
  .superRefine((p, ctx) => {
    const seen = new Set<string>();
    p.rules.forEach((r, i) => {
      if (seen.has(r.id)) ctx.addIssue({ code: 'custom', message: `duplicate rule id "${r.id}"`, path: ['rules', i, 'id'] });
      seen.add(r.id);
    });
  });

function fieldPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : out === '' ? String(p) : `.${String(p)}`;
  return out === '' ? '(policy)' : out;
}

/**
 * Validates a policy document (already parsed from YAML or JSON).
 *
 * Shape: `{ rules: [{ id, methods?, pathPrefix, public?, scopes?, anyRole? }], default? }`.
 * Rule ids must be unique; `pathPrefix` starts with `/` and contains no dot segments, `%`,
 * `\`, `?`, `#` or empty segments; methods are upper-cased; `default` is `deny` (the default)
 * or `authenticated`. Unknown keys are errors (a typo such as `scope:` must not silently
 * drop a requirement).
 *
 * @returns a frozen {@link Policy}
 * @throws Error whose message names each bad field, e.g. `rules[2].pathPrefix: must start with "/"`
 */
export function parsePolicy(doc: unknown): Policy {
  const res = policySchema.safeParse(doc);
  if (!res.success) {
    const lines = res.error.issues.map((i) => `${fieldPath(i.path)}: ${i.message}`);
    throw new Error(`invalid policy: ${lines.join('; ')}`);
  }
  const rules = res.data.rules.map((r) => {
    const rule: PolicyRule = { id: r.id, pathPrefix: r.pathPrefix };
    if (r.methods !== undefined) rule.methods = Object.freeze(r.methods) as string[];
    if (r.public !== undefined) rule.public = r.public;
    if (r.scopes !== undefined) rule.scopes = Object.freeze([...r.scopes]) as string[];
    if (r.anyRole !== undefined) rule.anyRole = Object.freeze([...r.anyRole]) as string[];
    return Object.freeze(rule);
  });
  return Object.freeze({ rules: Object.freeze(rules) as PolicyRule[], default: res.data.default });
}

/** RFC 3986 §2.3 unreserved characters other than `.` (an encoded `.` is a trick). */
const UNRESERVED_NO_DOT = /^[A-Za-z0-9\-_~]$/;

/**
 * Normalises a request path for matching, or returns `null` for a path trick.
 * Strips the query and fragment; decodes percent-encoded unreserved characters (RFC 3986
 * §6.2.2.2) so `/api/%6frders` cannot slip past a rule for `/api/orders`; refuses encoded
 * `/`, `\`, `.`, NUL, any other encoded byte that would change routing, raw `\` or NUL,
 * `.`/`..` segments and empty segments (`//`).
 */
export function normalizeRequestPath(rawPath: string): string | null {
  let path = rawPath;
  const q = path.search(/[?#]/);
  if (q !== -1) path = path.slice(0, q);
  if (!path.startsWith('/')) return null; // '*', absolute-form, empty
  if (path.includes('\\') || path.includes('\u0000')) return null;
  if (path.includes('%')) {
    let bad = false;
    path = path.replace(/%(?:([0-9A-Fa-f]{2})|)/g, (match, hex: string | undefined) => {
      if (hex === undefined) {
        bad = true; // "%" not followed by two hex digits
        return match;
      }
      const ch = String.fromCharCode(parseInt(hex, 16));
      if (UNRESERVED_NO_DOT.test(ch)) return ch;
      // Encoded "/", "\\", ".", NUL and control characters are tricks; other reserved or
      // non-ASCII bytes stay encoded (they cannot create a segment boundary).
      if (ch === '/' || ch === '\\' || ch === '.' || ch.charCodeAt(0) < 0x20 || ch.charCodeAt(0) === 0x7f) bad = true;
      return match.toUpperCase();
    });
    if (bad) return null;
  }
  const segments = path.split('/');
  for (let i = 1; i < segments.length; i++) {
    const seg = segments[i]!;
    if (seg === '.' || seg === '..') return null;
    if (seg === '' && i !== segments.length - 1) return null; // "//" (a trailing "/" is fine)
  }
  return path;
}

function prefixMatches(prefix: string, path: string): boolean {
  if (!path.startsWith(prefix)) return false;
  return path.length === prefix.length || prefix.endsWith('/') || path.charCodeAt(prefix.length) === 47; /* '/' */
}

const requirements = new WeakMap<PolicyRule, RouteRequirement>();

function requirementOf(rule: PolicyRule): RouteRequirement {
  let req = requirements.get(rule);
  if (req === undefined) {
    req = Object.freeze(buildRequirement(rule));
    requirements.set(rule, req);
  }
  return req;
}

function buildRequirement(rule: PolicyRule): RouteRequirement {
  if (rule.public === true) return { public: true };
  const req: { scopes?: readonly string[]; anyRole?: readonly string[] } = {};
  if (rule.scopes !== undefined && rule.scopes.length > 0) req.scopes = rule.scopes;
  if (rule.anyRole !== undefined) req.anyRole = rule.anyRole;
  return req;
}

/**
 * Finds the rule for a request.
 *
 * Among rules whose `methods` include `method` (or that list none), the one with the longest
 * `pathPrefix` that matches on a segment boundary wins (`/api/orders` matches `/api/orders`
 * and `/api/orders/1`, not `/api/ordersX`); ties go to the rule listed first. The query
 * string and fragment are ignored. A path trick (see {@link normalizeRequestPath}) matches no
 * rule and is denied whatever the default.
 *
 * @param method - HTTP method (compared upper-cased)
 * @param path - request path, possibly with a query string
 * @returns `rule`: the matched rule or `null`; `requirement`: what the token must satisfy, or
 *   `null` meaning deny (`route_denied`). No rule + default `authenticated` gives `{}`.
 */
export function matchRoute(policy: Policy, method: string, path: string): { rule: PolicyRule | null; requirement: RouteRequirement | null } {
  const normalized = normalizeRequestPath(path);
  if (normalized === null) return { rule: null, requirement: null };
  const m = method.toUpperCase();
  let best: PolicyRule | null = null;
  for (const rule of policy.rules) {
    if (rule.methods !== undefined && !rule.methods.includes(m)) continue;
    if (best !== null && rule.pathPrefix.length <= best.pathPrefix.length) continue;
    if (prefixMatches(rule.pathPrefix, normalized)) best = rule;
  }
  if (best !== null) return { rule: best, requirement: requirementOf(best) };
  return { rule: null, requirement: policy.default === 'authenticated' ? {} : null };
}
