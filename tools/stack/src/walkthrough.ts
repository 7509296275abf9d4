/**
 * What `make up` prints once the stack is ready: the URLs (a table of parts, ports and log
 * files) and a copy-paste walkthrough with curl.
 */
import { join, relative } from 'node:path';
import type { StackState } from './state.js';

function rel(state: StackState, file: string): string {
  const r = relative(process.cwd(), file);
  return r.startsWith('..') ? file : r || '.';
}

/** The parts table: name, address, log file. */
export function partsTable(state: StackState): string {
  const rows: Array<[string, string, string]> = [];
  const log = (name: string) => rel(state, `${state.logDir}/${name}.log`);
  rows.push(['edge (HTTP)', state.urls.edge, log('edge')]);
  rows.push(['edge (HTTPS)', `${state.urls.edgeHttps}  (dev CA: ${rel(state, `${state.certDir}/ca.crt`)})`, log('edge')]);
  rows.push(['edge admin', state.urls.edgeAdmin, '']);
  rows.push(['auth-service', `${state.urls.auth}  (JWKS ${state.urls.jwks})`, log('auth')]);
  state.urls.authzGrpc.forEach((a, i) => rows.push([`authz-${i + 1}`, `grpcs://${a}  (metrics ${state.urls.authzMetrics[i] ?? ''})`, log(`authz-${i + 1}`)]));
  for (const [name, u] of Object.entries(state.urls.services)) {
    if (!state.processes.some((p) => p.name === name)) continue;
    if (name !== 'auth') rows.push([name, `${u.app}${u.grpc ? `  (gRPC ${u.grpc})` : ''}`, log(name)]); // auth-service: its own row above
    rows.push([`sidecar-${name}`, `inbound ${u.inbound} (mTLS), outbound ${u.outbound}, admin ${u.admin}`, log(`sidecar-${name}`)]);
  }
  rows.push([
    'postgres',
    state.database.embedded ? `${state.database.url}  (embedded PGlite, data ${rel(state, state.database.dataDir ?? '')})` : redact(state.database.url),
    state.database.embedded ? log('postgres') : '',
  ]);
  const acl = state.redis.acl ? `; ACL users ${state.redis.acl.issuer.username} (auth-service), ${state.redis.acl.verifier.username} (read-only, verifiers), passwords in ${rel(state, join(state.runDir, 'redis'))}` : '';
  rows.push(['redis', `${redact(state.redis.url)}${state.redis.embedded ? `  (local redis-server${acl})` : ''}`, state.redis.embedded ? log('redis') : '']);
  if (state.tracing) {
    rows.push(
      state.tracing.receiver
        ? ['traces', `${state.tracing.receiver}/v1/traces  (OTLP receiver, loopback; make trace)`, log('traces')]
        : ['traces', `${state.tracing.endpoint}  (your collector: every process and proxy exports OTLP/HTTP there)`, ''],
    );
  }
  const w0 = Math.max(...rows.map((r) => r[0].length));
  return rows.map(([a, b, c]) => `  ${a.padEnd(w0)}  ${b}${c ? `\n  ${''.padEnd(w0)}  log: ${c}` : ''}`).join('\n');
}

function redact(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return url;
  }
}

/** The copy-paste walkthrough (bash + curl; no jq needed). */
export function walkthrough(state: StackState): string {
  const edge = state.urls.edge;
  const alice = state.users.find((u) => u.username === 'alice') ?? state.users[0];
  const bob = state.users.find((u) => u.username === 'bob');
  const orders = state.urls.services['orders']?.app ?? 'http://127.0.0.1:3001';
  const pick = (field: string) => `sed -E 's/.*"${field}":"([^"]+)".*/\\1/'`;
  const lines = [
    '# 1. Log in once (through the edge; /auth/login is a public route of the authz policy)',
    `LOGIN=$(curl -s -X POST ${edge}/auth/login -H 'content-type: application/json' \\`,
    `  -d '{"username":"${alice?.username}","password":"${alice?.password}"}')`,
    `TOKEN=$(echo "$LOGIN" | ${pick('access_token')}); REFRESH=$(echo "$LOGIN" | ${pick('refresh_token')})`,
    '',
    '# 2. One JWT through the chain edge -> orders -> inventory -> profile (gRPC); every hop reports what it verified',
    `curl -s ${edge}/api/orders/ord-1001 -H "authorization: Bearer $TOKEN" \\`,
    `  -H 'traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'; echo`,
    '',
    '# 3. No token, or a forged identity header: the edge answers 401 and strips x-jwt-mesh-* before ext_authz',
    `curl -si ${edge}/api/orders/ord-1001 -H 'x-jwt-mesh-sub: mallory' | head -n 1`,
    '',
  ];
  if (bob) {
    lines.push(
      `# 4. ${bob.username} has orders:read only: the edge and orders let him in, inventory (hop 2) answers 403`,
      `BOB=$(curl -s -X POST ${edge}/auth/login -H 'content-type: application/json' \\`,
      `  -d '{"username":"${bob.username}","password":"${bob.password}"}' | ${pick('access_token')})`,
      `curl -si ${edge}/api/orders/ord-1001 -H "authorization: Bearer $BOB" | grep -iE '^(HTTP|www-authenticate)'`,
      '',
    );
  }
  lines.push(
    '# 5. Refresh: a new access token; the refresh token is rotated (reusing the old one revokes the family)',
    `NEW=$(curl -s -X POST ${edge}/auth/token -d grant_type=refresh_token -d "refresh_token=$REFRESH")`,
    `TOKEN=$(echo "$NEW" | ${pick('access_token')}); REFRESH=$(echo "$NEW" | ${pick('refresh_token')})`,
    '',
    '# 6. Log out: the session (sid) and this token (jti) are revoked; Redis pub/sub tells every verifier',
    `curl -si -X POST ${edge}/auth/logout -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' \\`,
    `  -d "{\\"refresh_token\\":\\"$REFRESH\\"}" | head -n 1`,
    '',
    '# 7. The same token is now rejected at the edge (ext_authz) ...',
    `curl -si ${edge}/api/orders/ord-1001 -H "authorization: Bearer $TOKEN" | grep -iE '^(HTTP|www-authenticate)'`,
    "# ... and by orders itself, called on its own port without any Envoy (local verification)",
    `curl -si ${orders}/api/orders/ord-1001 -H "authorization: Bearer $TOKEN" | grep -iE '^(HTTP|www-authenticate)'`,
    '',
    '# Or run all of this with checks: make demo',
  );
  return lines.join('\n');
}

/** The whole "stack is up" message. */
export function readyMessage(state: StackState): string {
  const users = state.users.map((u) => `  ${u.username.padEnd(6)} password ${u.password.padEnd(22)} ${u.note}`).join('\n');
  return [
    '',
    'jwt-mesh is up.',
    '',
    partsTable(state),
    '',
    'Demo users (local demo only):',
    users,
    '',
    'Walkthrough (copy and paste):',
    '',
    walkthrough(state),
    '',
    'make demo   runs the walkthrough with checks',
    ...(state.tracing?.receiver
      ? ['make trace  prints the latest request through the edge as a waterfall (TRACE_ID=<32 hex> for one trace)']
      : state.tracing
        ? [`traces      go to your collector at ${state.tracing.endpoint} (edge samples ${state.tracing.edgeSamplePercent} %)`]
        : []),
    'make ps     shows the processes; make logs shows the last log lines',
    'make down   stops everything make up started',
    '',
  ].join('\n');
}
