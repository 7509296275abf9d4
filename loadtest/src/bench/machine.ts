/**
 * The machine's raw RS256 rate: how many `node:crypto` RSA-2048 / SHA-256 (RS256, RFC 7518
 * §3.3) signature verifications one core does per second, on a JWT-sized signing input. Machines
 * of one kind differ by up to 3x per core, so every bench prints this beside its figures: read
 * absolute numbers against it, and compare ratios measured in one run.
 */
import { generateKeyPairSync, sign, verify } from 'node:crypto';

/**
 * Measures the raw RS256 verify rate on the calling thread (one core).
 *
 * @param durationMs - how long to measure, milliseconds (default 1000; after a 100 ms warm-up)
 * @returns verifications per second, rounded
 */
export function rawRs256PerSec(durationMs = 1000): number {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  // A typical access token's signing input (header.payload, base64url): ~350 bytes.
  const data = Buffer.from('eyJhbGciOiJSUzI1NiIsInR5cCI6ImF0K2p3dCIsImtpZCI6ImsxIn0.'.padEnd(350, 'x'));
  const sig = sign('sha256', data, privateKey);
  const run = (ms: number): number => {
    let n = 0;
    const end = performance.now() + ms;
    while (performance.now() < end) {
      for (let i = 0; i < 50; i++) if (!verify('sha256', data, publicKey, sig)) throw new Error('raw RS256 verify failed');
      n += 50;
    }
    return n;
  };
  run(100);
  const t0 = performance.now();
  const n = run(durationMs);
  return Math.round((n * 1000) / (performance.now() - t0));
}
