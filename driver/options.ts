/**
 * CreateNetwork options. Docker puts the user's `-o k=v` in `com.docker.network.generic` and its
 * own flags (ipv6, internal, ...) at the top level. Unknown user options are refused by name so a
 * typo never silently does nothing.
 */
import { BadRequestError } from '../lib/errors';

export const MTU_OPTION = 'com.docker.network.driver.mtu';
export const KNOWN_OPTIONS = [MTU_OPTION] as const;

const GENERIC = 'com.docker.network.generic';
const ENABLE_IPV6 = 'com.docker.network.enable_ipv6';
const INTERNAL = 'com.docker.network.internal';

export interface NetworkOptions {
  mtu?: number;
  ipv6: boolean;
  internal: boolean;
  /** The user's `-o` options as strings. */
  generic: Record<string, string>;
}

export function parseMtu(value: unknown, ipv6: boolean, what = `-o ${MTU_OPTION}`): number {
  const n = typeof value === 'number' ? value : typeof value === 'string' && /^\d+$/.test(value.trim()) ? Number(value.trim()) : NaN;
  const min = ipv6 ? 1280 : 68;
  if (!Number.isInteger(n) || n < min || n > 65535) {
    throw new BadRequestError(
      `${what}=${String(value)} is not a valid MTU: give a whole number from ${min} to 65535${ipv6 ? ' (IPv6 needs at least 1280)' : ''}`,
    );
  }
  return n;
}

export function parseNetworkOptions(options: Record<string, unknown> | null | undefined): NetworkOptions {
  const o = options ?? {};
  const ipv6 = o[ENABLE_IPV6] === true || o[ENABLE_IPV6] === 'true';
  const internal = o[INTERNAL] === true || o[INTERNAL] === 'true';
  const rawGeneric = o[GENERIC];
  const generic: Record<string, string> = {};
  if (rawGeneric != null) {
    if (typeof rawGeneric !== 'object' || Array.isArray(rawGeneric)) {
      throw new BadRequestError(`invalid NetworkDriver.CreateNetwork request: field "Options.${GENERIC}" must be an object of strings`);
    }
    for (const [k, v] of Object.entries(rawGeneric as Record<string, unknown>)) generic[k] = typeof v === 'string' ? v : JSON.stringify(v);
  }
  const unknown = Object.keys(generic)
    .filter((k) => !(KNOWN_OPTIONS as readonly string[]).includes(k))
    .sort();
  if (unknown.length) {
    throw new BadRequestError(
      `calico does not support the option${unknown.length > 1 ? 's' : ''} ${unknown.join(', ')}; known options: ${KNOWN_OPTIONS.join(', ')}`,
    );
  }
  const out: NetworkOptions = { ipv6, internal, generic };
  if (generic[MTU_OPTION] !== undefined) out.mtu = parseMtu(generic[MTU_OPTION], ipv6);
  return out;
}
