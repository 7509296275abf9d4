/**
 * Whether tracing is on, decided from the standard OpenTelemetry SDK variables alone
 * (https://opentelemetry.io/docs/specs/otel/configuration/sdk-environment-variables/ and
 * https://opentelemetry.io/docs/specs/otel/protocol/exporter/). Pure: reads only the `env`
 * it is given, loads nothing.
 */

/** Environment as `process.env` gives it. */
export type Env = Readonly<Record<string, string | undefined>>;

/** The on/off decision and why. */
export interface TracingSettings {
  /** `true` when spans are to be recorded and exported over OTLP. */
  readonly enabled: boolean;
  /**
   * The OTLP/HTTP traces URL spans go to (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as is, else
   * `OTEL_EXPORTER_OTLP_ENDPOINT` + `/v1/traces`), or `null` when tracing is off. For logs:
   * a `user:password@` part is replaced by `***@`.
   */
  readonly tracesUrl: string | null;
  /** Why tracing is off (for the start-up log line), or `null` when it is on. */
  readonly offReason: string | null;
}

function nonEmpty(v: string | undefined): string | undefined {
  const t = v?.trim();
  return t === undefined || t === '' ? undefined : t;
}

/**
 * Decides whether tracing is on.
 *
 * Off when any of:
 * - `OTEL_SDK_DISABLED` is `true` (case-insensitive; the spec's only value that disables);
 * - `OTEL_TRACES_EXPORTER` is `none` (any other value is treated as `otlp`, the only exporter here);
 * - neither `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` nor `OTEL_EXPORTER_OTLP_ENDPOINT` is set
 *   (unset or empty): unlike the spec's default of `http://localhost:4318`, jwt-mesh does not
 *   trace unless told where to send spans.
 *
 * The endpoint is not validated here: the OTLP exporter does that (an unusable URL makes it
 * log a warning and drop spans; requests are never affected).
 *
 * @param env - the environment to read (default `process.env`)
 */
export function tracingSettingsFromEnv(env: Env = process.env): TracingSettings {
  if (nonEmpty(env['OTEL_SDK_DISABLED'])?.toLowerCase() === 'true') {
    return { enabled: false, tracesUrl: null, offReason: 'OTEL_SDK_DISABLED=true' };
  }
  if (nonEmpty(env['OTEL_TRACES_EXPORTER'])?.toLowerCase() === 'none') {
    return { enabled: false, tracesUrl: null, offReason: 'OTEL_TRACES_EXPORTER=none' };
  }
  const specific = nonEmpty(env['OTEL_EXPORTER_OTLP_TRACES_ENDPOINT']);
  if (specific !== undefined) return { enabled: true, tracesUrl: withoutUserinfo(specific), offReason: null };
  const base = nonEmpty(env['OTEL_EXPORTER_OTLP_ENDPOINT']);
  if (base !== undefined) {
    return { enabled: true, tracesUrl: withoutUserinfo(`${base.replace(/\/+$/, '')}/v1/traces`), offReason: null };
  }
  return { enabled: false, tracesUrl: null, offReason: 'no OTEL_EXPORTER_OTLP_ENDPOINT / OTEL_EXPORTER_OTLP_TRACES_ENDPOINT' };
}

/** `url` with any `user:password@` replaced by `***@` (the text is for logs only). */
function withoutUserinfo(url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^/?#@]*@/i, '$1***@');
}
