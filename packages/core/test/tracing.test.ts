// The core's API-only tracing helpers: W3C Trace Context in and out, the outcome vocabulary,
// the kid of a compact JWS, and tracingActive() before and after an SDK provider is registered.
import t from 'tap';
import { ROOT_CONTEXT, trace, TraceFlags } from '@opentelemetry/api';
import { installTestTracing } from '@jwt-mesh/tracing/testing';
import { AuthError, kidOfCompactJws, outcomeOf, remoteParentContext, traceparentOf, tracestateOf, tracingActive, withClientSpan } from '../src/index.js';

const TP = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';

t.test('remoteParentContext: a valid traceparent becomes a remote parent; anything else the root', async (t) => {
  const sc = trace.getSpanContext(remoteParentContext(TP, 'congo=t61rcWkgMzE'));
  t.match(sc, { traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7', traceFlags: TraceFlags.SAMPLED, isRemote: true });
  t.equal(sc?.traceState?.get('congo'), 't61rcWkgMzE');
  t.equal(trace.getSpanContext(remoteParentContext(TP.replace(/-01$/, '-00'), undefined))?.traceFlags, TraceFlags.NONE, 'unsampled kept');
  t.equal(trace.getSpanContext(remoteParentContext(TP.replace(/-01$/, '-03'), undefined))?.traceFlags, TraceFlags.SAMPLED, 'only the sampled bit');
  for (const bad of [undefined, '', 'garbage', TP.toUpperCase(), '00-00000000000000000000000000000000-00f067aa0ba902b7-01', 'ff' + TP.slice(2), `${TP}-extra`]) {
    t.equal(remoteParentContext(bad, 'a=b'), ROOT_CONTEXT, `invalid: ${String(bad)}`);
  }
  t.equal(trace.getSpanContext(remoteParentContext(TP, 'x'.repeat(513)))?.traceState, undefined, 'an oversized tracestate is dropped');
});

t.test('traceparentOf / tracestateOf: version 00 from a span context', async (t) => {
  const sc = trace.getSpanContext(remoteParentContext(TP, 'a=1'))!;
  t.equal(traceparentOf(sc), TP);
  t.equal(traceparentOf({ ...sc, traceFlags: TraceFlags.NONE }), TP.replace(/-01$/, '-00'));
  t.equal(tracestateOf(sc), 'a=1');
  t.equal(traceparentOf(trace.wrapSpanContext({ traceId: '0'.repeat(32), spanId: '0'.repeat(16), traceFlags: 0 }).spanContext()), undefined, 'an invalid context gives none');
});

t.test('outcomeOf: ok, the RFC 6750 code, or the fixed words for the rows without one', async (t) => {
  t.equal(outcomeOf(null), 'ok');
  t.equal(outcomeOf(new AuthError('token_expired')), 'invalid_token');
  t.equal(outcomeOf(new AuthError('credentials_multiple')), 'invalid_request');
  t.equal(outcomeOf(new AuthError('insufficient_scope')), 'insufficient_scope');
  t.equal(outcomeOf(new AuthError('credentials_missing')), 'unauthenticated');
  t.equal(outcomeOf(new AuthError('route_denied')), 'forbidden');
  t.equal(outcomeOf(new AuthError('revocation_unavailable')), 'unavailable');
  t.equal(outcomeOf(new AuthError('internal')), 'unavailable');
});

t.test('kidOfCompactJws: the kid only, cut to 128 characters, undefined for anything else', async (t) => {
  const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
  t.equal(kidOfCompactJws(`${b64({ alg: 'RS256', kid: 'k-1' })}.e30.sig`), 'k-1');
  t.equal(kidOfCompactJws(`${b64({ kid: 'k'.repeat(500) })}.e30.sig`)?.length, 128);
  t.equal(kidOfCompactJws(`${b64({ kid: 42 })}.e30.sig`), undefined);
  t.equal(kidOfCompactJws(`${b64([1])}.e30.sig`), undefined);
  t.equal(kidOfCompactJws('not-base64-json.e30.sig'), undefined);
  t.equal(kidOfCompactJws('no-dots-at-all'), undefined);
});

t.test('tracingActive and withClientSpan: off with no SDK, on once a provider is registered', async (t) => {
  t.equal(tracingActive(), false, 'no provider registered yet');
  let seen: unknown = 'unset';
  t.equal(await withClientSpan({ tracerName: 't', name: 'c', attributes: {} }, async (span) => ((seen = span), 7)), 7);
  t.equal(seen, null, 'off: fn gets no span');

  const tracing = installTestTracing('core-test');
  t.teardown(() => tracing.uninstall());
  t.equal(tracingActive(), true);
  const parent = trace.getTracer('t').startSpan('server');
  await trace.getTracer('t').startActiveSpan('server-active', async (server) => {
    await withClientSpan({ tracerName: 't', name: 'call', attributes: { 'http.request.method': 'GET' } }, async (span) => {
      t.ok(span, 'on: fn gets the CLIENT span');
      t.equal(trace.getActiveSpan(), span, 'and runs in its context');
    });
    await t.rejects(
      withClientSpan({ tracerName: 't', name: 'failing', attributes: {}, onError: (s) => s.setAttribute('x.status', 502) }, async () => {
        throw new TypeError('the message stays out of the span');
      }),
      TypeError,
    );
    server.end();
  });
  parent.end();
  const [call] = tracing.named('call');
  t.equal(call?.parentSpanContext?.spanId, tracing.named('server-active')[0]?.spanContext().spanId, 'child of the active span');
  const [failing] = tracing.named('failing');
  t.match(failing?.attributes, { 'error.type': 'TypeError', 'x.status': 502 });
  t.equal(failing?.status.code, 2, 'ERROR');
  t.equal(failing?.status.message, undefined, 'no message copied');
  t.equal(tracing.dump().includes('the message stays out'), false);
  await tracing.uninstall();
  t.equal(tracingActive(), false, 'off again after uninstall');
});
