#!/usr/bin/env node
// Runs the whole tap suite once and ends with the plain closing line CI reads:
//   "N passed, N failed, N skipped"
// Usage: node scripts/test.mjs [tap args...]   (e.g. a single file: node scripts/test.mjs auth-service/test/login.test.ts)
// Exit code: tap's own (non-zero when any test failed).
import { spawn } from 'node:child_process';

const args = ['tap', '--reporter=tap', ...process.argv.slice(2)];
const child = spawn('npx', args, { stdio: ['ignore', 'pipe', 'inherit'] });
let summary = null;
let tail = '';
child.stdout.on('data', (chunk) => {
  process.stdout.write(chunk);
  tail = (tail + chunk.toString('utf8')).slice(-4096);
  const m = /# \{ total: (\d+), pass: (\d+)(?:, fail: (\d+))?(?:, skip: (\d+))?(?:, todo: (\d+))?/.exec(tail);
  if (m) summary = m;
});
child.on('close', (code, signal) => {
  if (!summary) {
    console.log(`0 passed, 1 failed (tap printed no summary; exit ${code ?? signal})`);
    process.exit(code || 1);
  }
  const [, , pass, fail = '0', skip = '0', todo = '0'] = summary;
  const skipped = Number(skip) + Number(todo);
  console.log(`\n${pass} passed, ${fail} failed${skipped ? `, ${skipped} skipped` : ''}`);
  process.exit(code ?? 1);
});
