/**
 * Password logins per CPU-second of the auth-service: starts the real entry point (src/main.ts)
 * on a free loopback port, logs in the users of a `seed-users` file from a few concurrent
 * clients for a bounded time, and reads the server process's CPU time (user + system, from
 * /proc/<pid>/stat) over the window. CPU time per login, not latency, is the figure that survives
 * a busy machine; the load average is printed beside it.
 *
 * Usage: DATABASE_URL=... npm run login-rate -w @jwt-mesh/auth-service -- --users users.json
 *          [--duration 20] [--concurrency 8] [--max-requests 20000]
 *
 * Linux only (/proc). The rate limits are raised for the run (one client address); everything
 * else is the service's default configuration, including the hash limiter.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';

const AUTH_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const CLK_TCK = 100; // USER_HZ on Linux

/** utime + stime of a process, milliseconds (/proc/<pid>/stat fields 14 and 15). */
function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLK_TCK;
}

/** CLI entry point; returns the exit code. */
export async function main(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      users: { type: 'string' },
      duration: { type: 'string', default: '20' },
      concurrency: { type: 'string', default: '8' },
      'max-requests': { type: 'string', default: '20000' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help || !values.users) {
    console.log('Usage: login-rate --users FILE [--duration SEC (1-300)] [--concurrency N (1-256)] [--max-requests N]');
    return values.help ? 0 : 2;
  }
  const durationSec = Number(values.duration);
  const concurrency = Number(values.concurrency);
  const maxRequests = Number(values['max-requests']);
  if (!Number.isInteger(durationSec) || durationSec < 1 || durationSec > 300) return fail('--duration must be 1-300 seconds');
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 256) return fail('--concurrency must be 1-256');
  if (!Number.isInteger(maxRequests) || maxRequests < 1) return fail('--max-requests must be a whole number >= 1');
  const usersFile = path.resolve(env['INIT_CWD'] ?? process.cwd(), values.users);
  const users = JSON.parse(readFileSync(usersFile, 'utf8')) as Array<{ username: string; password: string }>;
  if (!Array.isArray(users) || users.length === 0) return fail(`${usersFile}: expected [{username, password}]`);

  const redisUrl = env['REDIS_URL'] || 'redis://127.0.0.1:6379/0';
  const prefix = `jwtmesh:login-rate:${randomBytes(4).toString('hex')}:`;
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(AUTH_DIR, 'src/main.ts')], {
    cwd: AUTH_DIR,
    env: {
      ...env,
      PORT: '0',
      HOST: '127.0.0.1',
      REDIS_URL: redisUrl,
      REDIS_PREFIX: prefix,
      LOGIN_RATE_LIMIT_PER_MIN: '1000000',
      LOGIN_USERNAME_RATE_LIMIT_PER_MIN: '1000000',
      CLEANUP_INTERVAL_SEC: '0',
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  try {
    const base = await new Promise<string>((resolve, reject) => {
      let out = '';
      child.stdout.on('data', (c: Buffer) => {
        out += c.toString();
        const m = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(out);
        if (m) resolve(m[1]!);
        if (out.length > 1_000_000) out = out.slice(-10_000);
      });
      child.once('exit', (code) => reject(new Error(`auth-service exited ${code} before listening`)));
    });
    child.stdout.resume();
    const statuses = new Map<number, number>();
    let next = 0;
    let sent = 0;
    const login = async (): Promise<void> => {
      const u = users[next++ % users.length]!;
      sent++;
      const res = await fetch(`${base}/auth/login`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(u),
        signal: AbortSignal.timeout(30_000),
      }).catch(() => null);
      const status = res?.status ?? 0;
      await res?.arrayBuffer().catch(() => undefined);
      statuses.set(status, (statuses.get(status) ?? 0) + 1);
    };
    for (let i = 0; i < concurrency; i++) await login(); // warm-up: dummy hash, JIT, pool
    statuses.clear();
    const cpu0 = cpuMs(child.pid!);
    const t0 = performance.now();
    const end = t0 + durationSec * 1000;
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (performance.now() < end && sent < maxRequests + concurrency) await login();
      }),
    );
    const wallSec = (performance.now() - t0) / 1000;
    const cpuSec = (cpuMs(child.pid!) - cpu0) / 1000;
    const ok = statuses.get(200) ?? 0;
    const la = loadavg().map((x) => x.toFixed(2)).join(' ');
    console.log(
      JSON.stringify({
        logins_ok: ok,
        statuses: Object.fromEntries(statuses),
        wall_sec: Number(wallSec.toFixed(2)),
        server_cpu_sec: Number(cpuSec.toFixed(2)),
        logins_per_sec: Number((ok / wallSec).toFixed(1)),
        cpu_ms_per_login: Number(((cpuSec * 1000) / Math.max(1, ok)).toFixed(1)),
        logins_per_cpu_sec: Number((ok / Math.max(cpuSec, 1e-9)).toFixed(1)),
        concurrency,
        loadavg: la,
      }),
    );
    return 0;
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
    const redis = new Redis(redisUrl, { maxRetriesPerRequest: 1 });
    let cursor = '0';
    do {
      const [c, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 500);
      cursor = c;
      if (keys.length) await redis.del(...keys);
    } while (cursor !== '0');
    await redis.quit();
  }
}

function fail(message: string): number {
  console.error(`login-rate: ${message}`);
  return 2;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = await main(process.argv.slice(2));
}
