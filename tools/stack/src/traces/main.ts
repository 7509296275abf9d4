/**
 * The OTLP receiver as a process (the stack's `traces` part under `make up TRACING=on`):
 *
 *   tsx tools/stack/src/traces/main.ts --port 4318 [--max-traces 200] [--max-spans-per-trace 2000] [--max-body-bytes 4194304]
 *
 * Listens on 127.0.0.1 only (see ./receiver.ts). Logs one line at start and one per export
 * request (counts only, never span content); stops on SIGTERM / SIGINT.
 */
import { parseArgs } from 'node:util';
import { DEFAULT_MAX_BODY_BYTES, startOtlpReceiver } from './receiver.js';

function positiveInt(name: string, v: string | undefined, fallback: number): number {
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be a positive integer (got ${JSON.stringify(v)})`);
  return n;
}

async function main(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      port: { type: 'string' },
      'max-traces': { type: 'string' },
      'max-spans-per-trace': { type: 'string' },
      'max-body-bytes': { type: 'string' },
    },
    strict: true,
  });
  const port = Number(values.port);
  if (values.port === undefined || !Number.isInteger(port) || port < 0 || port > 65535) throw new Error('--port <0..65535> is required');
  const log = (line: string) => process.stdout.write(`${new Date().toISOString()} ${line}\n`);
  const receiver = await startOtlpReceiver({
    port,
    maxTraces: positiveInt('max-traces', values['max-traces'], 200),
    maxSpansPerTrace: positiveInt('max-spans-per-trace', values['max-spans-per-trace'], 2000),
    maxBodyBytes: positiveInt('max-body-bytes', values['max-body-bytes'], DEFAULT_MAX_BODY_BYTES),
    onExport: (e) => log(`export: ${e.spans} span(s) stored, ${e.rejected} rejected, ${e.dropped} dropped, ${e.evicted} trace(s) evicted`),
  });
  log(`otlp-receiver listening on ${receiver.url} (POST /v1/traces; GET /api/traces); keeps the last ${receiver.store.maxTraces} traces`);
  const stop = (signal: string) => {
    log(`${signal}: stopping`);
    void receiver.close().then(() => process.exit(0));
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
}

main(process.argv.slice(2)).catch((err: unknown) => {
  process.stderr.write(`otlp-receiver: ${(err as Error).message}\n`);
  process.exit(1);
});
