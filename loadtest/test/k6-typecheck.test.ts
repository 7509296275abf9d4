/**
 * The k6 scripts are type-checked against @types/k6 with their own tsconfig (k6 runtime: no Node
 * types, `.ts` import suffixes): k6 runs TypeScript by stripping the types, so a wrong call would
 * only show at run time, in the branch that makes it. The second test proves the check bites: a
 * copy with one wrong call must fail. (k6-smoke.test.ts and k6-config.test.ts run the real k6.)
 */
import { execFile } from 'node:child_process';
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';

const here = dirname(fileURLToPath(import.meta.url));
const k6Dir = resolve(here, '..', 'k6');
const require = createRequire(import.meta.url);
const tsc = require.resolve('typescript/bin/tsc');
const k6Types = dirname(require.resolve('@types/k6/package.json'));

function runTsc(project: string, extra: string[] = []): Promise<{ code: number; output: string }> {
  return new Promise((done) => {
    execFile(process.execPath, [tsc, '-p', project, '--pretty', 'false', ...extra], { timeout: 170_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : 1) : 0;
      done({ code, output: `${stdout}${stderr}` });
    });
  });
}

t.test('loadtest/k6 type-checks against @types/k6', async (t) => {
  const { code, output } = await runTsc(join(k6Dir, 'tsconfig.json'));
  t.equal(code, 0, output || 'tsc passed');
});

t.test('every k6 script and library module is in the checked project', async (t) => {
  const { code, output } = await runTsc(join(k6Dir, 'tsconfig.json'), ['--listFilesOnly']);
  t.equal(code, 0, code === 0 ? 'tsc lists the files' : output.slice(-500));
  const listed = new Set(output.split('\n').map((l) => resolve(l.trim())));
  const scripts = [
    ...readdirSync(k6Dir).filter((f) => f.endsWith('.ts')).map((f) => join(k6Dir, f)),
    ...readdirSync(join(k6Dir, 'lib')).filter((f) => f.endsWith('.ts')).map((f) => join(k6Dir, 'lib', f)),
  ];
  t.ok(scripts.some((f) => f.endsWith('login-burst.ts')), 'the login burst is among the scripts');
  for (const file of scripts) t.ok(listed.has(file), `${file.slice(k6Dir.length + 1)} is type-checked`);
});

t.test('a type error in a k6 script fails the check', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'jwt-mesh-k6-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  cpSync(k6Dir, dir, { recursive: true });
  // Outside the repo there is no node_modules: point k6's module names at @types/k6 explicitly.
  const config = JSON.parse(readFileSync(join(k6Dir, 'tsconfig.json'), 'utf8')) as { compilerOptions: Record<string, unknown> };
  config.compilerOptions.typeRoots = [dirname(k6Types)];
  config.compilerOptions.paths = { k6: [k6Types], 'k6/*': [`${k6Types}/*`] };
  writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify(config));
  const clean = await runTsc(join(dir, 'tsconfig.json'));
  t.equal(clean.code, 0, clean.output || 'the untouched copy passes');
  // http.get takes (url, params); a number is not a URL.
  writeFileSync(join(dir, 'smoke.ts'), `${readFileSync(join(dir, 'smoke.ts'), 'utf8')}\nimport http from 'k6/http';\nexport function broken(): void { http.get(42); }\n`);
  const broken = await runTsc(join(dir, 'tsconfig.json'));
  t.not(broken.code, 0, 'tsc fails');
  t.match(broken.output, /smoke\.ts\(\d+,\d+\): error TS2345/);
});
