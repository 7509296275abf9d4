/**
 * W3C Trace Context (https://www.w3.org/TR/trace-context/) parsing shared by every hop.
 */
const ALL_ZERO = /^0+$/;
const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;

/**
 * Parses a `traceparent` value (W3C Trace Context §3.2). Version `00` must be exactly 55
 * characters; a higher version is read by its first four fields (§3.2.4); version `ff`, upper
 * case hex and all-zero ids are invalid.
 *
 * @returns the fields, or `null` when the value is missing or invalid (the caller then starts
 *   a new trace and drops `tracestate`, §3.3.1)
 */
export function parseTraceparent(value: string | undefined): { version: string; traceId: string; parentId: string; flags: string } | null {
  if (value === undefined) return null;
  const m = TRACEPARENT.exec(value.trim());
  if (m === null) return null;
  const [, version, traceId, parentId, flags, rest] = m as unknown as [string, string, string, string, string, string | undefined];
  if (version === 'ff') return null;
  if (version === '00' && rest !== undefined) return null;
  if (ALL_ZERO.test(traceId) || ALL_ZERO.test(parentId)) return null;
  return { version, traceId, parentId, flags };
}
