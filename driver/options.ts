/**
 * CreateNetwork options. Docker puts the user's `-o k=v` in `com.docker.network.generic` and its
 * own flags (ipv6, internal, ...) at the top level. Unknown user options are refused by name so a
 * typo never silently does nothing.
 */
import { BadRequestError } from '../lib/errors';
import { shown } from '../lib/ip';

/** How many unknown option names an error message lists. */
const MAX_NAMED = 5;

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
      `${what}=${shown(value)} is not a valid MTU: give a whole number from ${min} to 65535${ipv6 ? ' (IPv6 needs at least 1280)' : ''}`,
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
    const entries = Object.entries(rawGeneric as Record<string, unknown>);
    // Unknown names are refused below; checked first so thousands of them cost one pass.
    const unknown = entries
      .map(([k]) => k)
      .filter((k) => !(KNOWN_OPTIONS as readonly string[]).includes(k))
      .sort();
    if (unknown.length) {
      // Named, but only the first few: 50,000 unknown options must not make a megabyte message.
      const named = unknown.slice(0, MAX_NAMED).map(shown);
      const more = unknown.length > MAX_NAMED ? ` and ${unknown.length - MAX_NAMED} more` : '';
      throw new BadRequestError(
        `calico does not support the option${unknown.length > 1 ? 's' : ''} ${named.join(', ')}${more}; known options: ${KNOWN_OPTIONS.join(', ')}`,
      );
    }
    for (const [k, v] of entries) {
      // Docker's -o values are strings; a nested value is no option anyone can give.
      if (typeof v === 'string') generic[k] = v;
      else if (typeof v === 'number' || typeof v === 'boolean') generic[k] = String(v);
      else throw new BadRequestError(`invalid -o ${k}: its value must be a string, not ${v === null ? 'null' : Array.isArray(v) ? 'a list' : typeof v}`);
    }
  }
  const out: NetworkOptions = { ipv6, internal, generic };
  if (generic[MTU_OPTION] !== undefined) out.mtu = parseMtu(generic[MTU_OPTION], ipv6);
  return out;
}
