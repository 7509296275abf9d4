// tracingSettingsFromEnv: the on/off decision from the standard OTEL_* variables.
import t from 'tap';
import { tracingSettingsFromEnv } from '../src/index.js';

t.test('no endpoint: off', async (t) => {
  t.match(tracingSettingsFromEnv({}), { enabled: false, tracesUrl: null });
  t.match(tracingSettingsFromEnv({ OTEL_EXPORTER_OTLP_ENDPOINT: '', OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: '  ' }), { enabled: false }, 'empty counts as unset');
  t.match(tracingSettingsFromEnv({ OTEL_SERVICE_NAME: 'x', OTEL_TRACES_SAMPLER: 'always_on' }), { enabled: false }, 'other variables alone do not turn it on');
});

t.test('OTEL_EXPORTER_OTLP_ENDPOINT: on, /v1/traces appended', async (t) => {
  t.same(tracingSettingsFromEnv({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4318' }), { enabled: true, tracesUrl: 'http://127.0.0.1:4318/v1/traces', offReason: null });
  t.equal(tracingSettingsFromEnv({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318/' }).tracesUrl, 'http://collector:4318/v1/traces');
});

t.test('OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: on, used as is, wins over the base endpoint', async (t) => {
  t.equal(
    tracingSettingsFromEnv({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://a:4318/custom', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://b:4318' }).tracesUrl,
    'http://a:4318/custom',
  );
});

t.test('OTEL_SDK_DISABLED=true and OTEL_TRACES_EXPORTER=none turn it off', async (t) => {
  const endpoint = { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4318' };
  t.match(tracingSettingsFromEnv({ ...endpoint, OTEL_SDK_DISABLED: 'true' }), { enabled: false, offReason: 'OTEL_SDK_DISABLED=true' });
  t.match(tracingSettingsFromEnv({ ...endpoint, OTEL_SDK_DISABLED: 'TRUE' }), { enabled: false }, 'case-insensitive');
  t.match(tracingSettingsFromEnv({ ...endpoint, OTEL_SDK_DISABLED: 'false' }), { enabled: true });
  t.match(tracingSettingsFromEnv({ ...endpoint, OTEL_SDK_DISABLED: '1' }), { enabled: true }, 'only "true" disables (spec)');
  t.match(tracingSettingsFromEnv({ ...endpoint, OTEL_TRACES_EXPORTER: 'none' }), { enabled: false, offReason: 'OTEL_TRACES_EXPORTER=none' });
  t.match(tracingSettingsFromEnv({ ...endpoint, OTEL_TRACES_EXPORTER: 'otlp' }), { enabled: true });
});

t.test('credentials in the endpoint are not echoed in tracesUrl', async (t) => {
  t.equal(tracingSettingsFromEnv({ OTEL_EXPORTER_OTLP_ENDPOINT: 'https://user:s3cret@collector:4318' }).tracesUrl, 'https://***@collector:4318/v1/traces');
});
