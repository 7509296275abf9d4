/**
 * The loopback guard: the load runner and the benchmark send traffic only to this machine
 * (127.0.0.0/8, ::1). A target is refused before any request is sent when its host is not a
 * loopback literal or when any address its name resolves to is not loopback.
 */
import { lookup as dnsLookup } from 'node:dns/promises';
import { BlockList, isIP } from 'node:net';

/** The target is not on loopback (or not an http(s) URL). */
export class TargetNotAllowedError extends Error {
  readonly target: string;
  constructor(target: string, why: string) {
    super(`refusing target ${target}: ${why} (the load runner only sends to loopback: 127.0.0.0/8 or [::1])`);
    this.name = new.target.name;
    this.target = target;
  }
}

const loopback = new BlockList();
loopback.addSubnet('127.0.0.0', 8, 'ipv4');
loopback.addAddress('::1', 'ipv6');
loopback.addSubnet('::ffff:127.0.0.0', 104, 'ipv6');

/** True when `address` (an IP literal, IPv6 with or without brackets) is a loopback address. */
export function isLoopbackAddress(address: string): boolean {
  const a = address.replace(/^\[|\]$/g, '');
  const family = isIP(a);
  if (family === 4) return loopback.check(a, 'ipv4');
  if (family === 6) return loopback.check(a, 'ipv6');
  return false;
}

/** Resolves a host name to every address (as `dns.promises.lookup(host, { all: true })` does). */
export type Resolver = (host: string) => Promise<Array<{ address: string }>>;

const systemResolver: Resolver = (host) => dnsLookup(host, { all: true, verbatim: true });

/**
 * Checks that `target` is an http(s) URL whose host is loopback.
 * @param target the base URL, e.g. `http://127.0.0.1:8080`
 * @param resolve name resolution (injected in tests); IP literals are never resolved.
 * @returns the parsed URL.
 * @throws TargetNotAllowedError when the scheme is not http(s), the host is not loopback, or a name
 *   resolves to nothing or to any non-loopback address.
 */
export async function assertLoopbackTarget(target: string | URL, resolve: Resolver = systemResolver): Promise<URL> {
  let url: URL;
  try {
    url = new URL(String(target));
  } catch {
    throw new TargetNotAllowedError(String(target), 'not a URL');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new TargetNotAllowedError(url.href, `scheme ${url.protocol} is not http or https`);
  const host = url.hostname.replace(/^\[|\]$/g, '');
  if (isIP(host) !== 0) {
    if (!isLoopbackAddress(host)) throw new TargetNotAllowedError(url.href, `${host} is not a loopback address`);
    return url;
  }
  let addresses: Array<{ address: string }>;
  try {
    addresses = await resolve(host);
  } catch (err) {
    throw new TargetNotAllowedError(url.href, `${host} does not resolve (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  if (addresses.length === 0) throw new TargetNotAllowedError(url.href, `${host} resolves to no address`);
  const outside = addresses.find((a) => !isLoopbackAddress(a.address));
  if (outside) throw new TargetNotAllowedError(url.href, `${host} resolves to ${outside.address}, which is not loopback`);
  return url;
}
