/**
 * `make loadtest` / `npm start -w @jwt-mesh/loadtest -- [options]`: the Node load runner.
 * Logs in a pool of sessions, drives the k6 scenario's route mix at a fixed arrival rate (open
 * model), prints the figures, and exits 0 when p99 < the SLO and no request failed, 1 when the
 * run violated either, 2 on a usage error, a refused (non-loopback) target or a failed login.
 */
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { DEFAULT_BASE_URL, DEFAULT_USERS, parseUsers, ROUTES } from '../k6/lib/scenario.js';
import { TargetNotAllowedError, assertLoopbackTarget } from './guard.js';
import { formatResult, runLoad } from './runner.js';
import { TokenPool } from './tokens.js';

export const HELP = `jwt-mesh load runner: the k6 route mix at a fixed arrival rate (open model), loopback only.

Usage: npm start -w @jwt-mesh/loadtest -- [options]      (make loadtest / make loadtest-smoke)

Options (each also read from the environment variable in brackets):
  --url <url>            edge base URL, loopback only [BASE_URL] (default ${DEFAULT_BASE_URL})
  --rate <n>             arrivals per second [RATE] (default 100)
  --duration <s>         arrival window in seconds [DURATION] (default 30; at most 600)
  --warmup <s>           unmeasured warm-up at the same rate before the run [WARMUP] (default 3)
  --max-requests <n>     cap on arrivals [MAX_REQUESTS] (default rate x duration; at most 1,000,000)
  --connections <n>      keep-alive connections to the edge [CONNECTIONS] (default 64)
  --max-in-flight <n>    outstanding requests before arrivals are dropped (= failures) [MAX_IN_FLIGHT] (default 4096)
  --timeout-ms <n>       per-request timeout [TIMEOUT_MS] (default 10000)
  --users <list>         name:password,... to log in as [USERS] (default: the demo users)
  --pool <n>             sessions to log in [TOKEN_POOL] (default 4)
  --refresh-margin <s>   refresh a token this long before it expires [REFRESH_MARGIN_SEC] (default 60)
  --route <name>         only this route of the mix (repeatable): ${ROUTES.map((r) => r.name).join(', ')}
  --slo-p99-ms <n>       fail when p99 >= this [SLO_P99_MS] (default 200)
  --json <file>          also write the result as JSON
  -h, --help             this text

Latency is measured from each request's scheduled send time, so queueing anywhere shows up.
Exit status: 0 pass; 1 p99 >= SLO or any failed request (non-2xx, error, dropped, failed refresh);
2 bad option, non-loopback target, or login failed.
`;

const num = (min: number, max: number) => z.coerce.number().min(min).max(max);
const optionsSchema = z.object({
  url: z.string().min(1),
  rate: num(0.1, 100_000),
  duration: num(0.1, 600),
  warmup: num(0, 60),
  maxRequests: num(1, 1_000_000).optional(),
  connections: num(1, 10_000).int(),
  maxInFlight: num(1, 100_000).int(),
  timeoutMs: num(1, 120_000).int(),
  users: z.string().min(1),
  pool: num(1, 1000).int(),
  refreshMargin: num(1, 3600),
  sloP99Ms: num(1, 60_000),
  route: z.array(z.enum(ROUTES.map((r) => r.name) as [string, ...string[]])).optional(),
  json: z.string().min(1).optional(),
});
export type CliOptions = z.infer<typeof optionsSchema>;

/**
 * Parses the command line over the environment over the defaults.
 * @returns the options, or `'help'`.
 * @throws Error naming the option (and its variable) on a bad value or an unknown option.
 */
export function parseCli(argv: string[], env: NodeJS.ProcessEnv = process.env): CliOptions | 'help' {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      url: { type: 'string' },
      rate: { type: 'string' },
      duration: { type: 'string' },
      warmup: { type: 'string' },
      'max-requests': { type: 'string' },
      connections: { type: 'string' },
      'max-in-flight': { type: 'string' },
      'timeout-ms': { type: 'string' },
      users: { type: 'string' },
      pool: { type: 'string' },
      'refresh-margin': { type: 'string' },
      route: { type: 'string', multiple: true },
      'slo-p99-ms': { type: 'string' },
      json: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) return 'help';
  const pick = (flag: string | undefined, variable: string, fallback?: string): string | undefined =>
    flag ?? (env[variable] !== undefined && env[variable] !== '' ? env[variable] : fallback);
  const raw = {
    url: pick(values.url, 'BASE_URL', DEFAULT_BASE_URL),
    rate: pick(values.rate, 'RATE', '100'),
    duration: pick(values.duration, 'DURATION', '30'),
    warmup: pick(values.warmup, 'WARMUP', '3'),
    maxRequests: pick(values['max-requests'], 'MAX_REQUESTS'),
    connections: pick(values.connections, 'CONNECTIONS', '64'),
    maxInFlight: pick(values['max-in-flight'], 'MAX_IN_FLIGHT', '4096'),
    timeoutMs: pick(values['timeout-ms'], 'TIMEOUT_MS', '10000'),
    users: pick(values.users, 'USERS', DEFAULT_USERS),
    pool: pick(values.pool, 'TOKEN_POOL', '4'),
    refreshMargin: pick(values['refresh-margin'], 'REFRESH_MARGIN_SEC', '60'),
    sloP99Ms: pick(values['slo-p99-ms'], 'SLO_P99_MS', '200'),
    route: values.route,
    json: values.json,
  };
  const parsed = optionsSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const key = String(issue?.path[0] ?? 'options');
    const flag = key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
    throw new Error(`--${flag}: ${issue?.message ?? 'invalid'} (got ${JSON.stringify((raw as Record<string, unknown>)[key])})`);
  }
  parseUsers(parsed.data.users); // throws naming USERS on a bad list
  return parsed.data;
}

/**
 * Runs the CLI. @returns the exit status (0 pass, 1 SLO violated or a request failed, 2 usage,
 * refused target or failed login). Writes to the given streams.
 */
export async function main(argv: string[], out: NodeJS.WritableStream = process.stdout, err: NodeJS.WritableStream = process.stderr): Promise<number> {
  let opts: CliOptions | 'help';
  try {
    opts = parseCli(argv);
  } catch (e) {
    err.write(`loadtest: ${(e as Error).message}\n\nRun with --help for the options.\n`);
    return 2;
  }
  if (opts === 'help') {
    out.write(HELP);
    return 0;
  }
  try {
    await assertLoopbackTarget(opts.url);
  } catch (e) {
    err.write(`loadtest: ${(e as Error).message}\n`);
    return 2;
  }
  const baseUrl = opts.url.replace(/\/+$/, '');
  const routes = opts.route ? ROUTES.filter((r) => opts.route?.includes(r.name)) : ROUTES;
  let tokens: TokenPool;
  try {
    tokens = await TokenPool.create({ baseUrl, users: parseUsers(opts.users), size: opts.pool, refreshMarginSec: opts.refreshMargin });
  } catch (e) {
    err.write(`loadtest: ${(e as Error).message}\n`);
    return 2;
  }
  try {
    const common = {
      baseUrl,
      ratePerSec: opts.rate,
      connections: opts.connections,
      maxInFlight: opts.maxInFlight,
      timeoutMs: opts.timeoutMs,
      tokens,
      routes,
      sloP99Ms: opts.sloP99Ms,
    };
    out.write(`loadtest: ${baseUrl}, ${opts.rate} req/s for ${opts.duration} s (open model), ${tokens.sessions.length} sessions, routes ${routes.map((r) => r.name).join(', ')}\n`);
    if (opts.warmup > 0) {
      out.write(`loadtest: warm-up ${opts.warmup} s (not measured)\n`);
      await runLoad({ ...common, durationSec: opts.warmup, chainCheckEvery: 0 });
    }
    const result = await runLoad({ ...common, durationSec: opts.duration, ...(opts.maxRequests ? { maxRequests: opts.maxRequests } : {}) });
    const refreshFailures = tokens.stats.refreshFailures;
    if (refreshFailures > 0) {
      result.pass = false;
      result.reasons.push(`${refreshFailures} token refresh(es) failed`);
    }
    out.write(`${formatResult(result, { refreshFailures })}\n`);
    if (opts.json) writeFileSync(opts.json, `${JSON.stringify({ ...result, tokenStats: tokens.stats }, null, 2)}\n`);
    return result.pass ? 0 : 1;
  } catch (e) {
    err.write(`loadtest: ${e instanceof TargetNotAllowedError ? e.message : (e as Error).stack ?? String(e)}\n`);
    return 2;
  } finally {
    tokens.close();
  }
}

const invokedDirectly = process.argv[1] !== undefined && /[/\\]cli\.[tj]s$/.test(process.argv[1]);
if (invokedDirectly) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (e: unknown) => {
      process.stderr.write(`loadtest: ${(e as Error).stack ?? String(e)}\n`);
      process.exitCode = 2;
    },
  );
}
