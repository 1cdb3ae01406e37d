/**
 * Docker's port map (`com.docker.network.portmap`, libnetwork's []types.PortBinding as JSON) read
 * into binding records, checked field by field. Pure: the host's addresses come in as a list, so
 * a refused request names the field, the value and what is allowed, and nothing was changed yet.
 *
 * Docker sends one entry per published port (a `-p 8000-8002:80-82` range is three entries), a
 * host port range when one container port may take any host port of it (`-p 8000-8010:80`), and
 * HostPort 0 for `-P` and `-p 80`: any free port (chosen in ports/allocate.ts).
 */
import { isIP } from 'node:net';
import { BadRequestError } from '../lib/errors';
import type { PortBindingRecord } from '../lib/datastore/records';

export const PORTMAP_OPTION = 'com.docker.network.portmap';

/** IANA numbers Docker sends in Proto, to the names the records and rules use. */
export const PROTO_BY_NUMBER: Readonly<Record<number, PortBindingRecord['protocol']>> = { 6: 'tcp', 17: 'udp', 132: 'sctp' };

/** Addresses that mean "every address of the host" (of a family, for the last two). */
const WILDCARDS = new Set(['', '0.0.0.0', '::']);

/** Canonical text of an IP (lower case, IPv4-mapped IPv6 left as given by Docker). */
function canonicalIp(ip: string): string {
  return isIP(ip) === 6 ? ip.toLowerCase() : ip;
}

function bad(i: number, field: string, value: unknown, allowed: string): BadRequestError {
  return new BadRequestError(
    `invalid port mapping ${i + 1} (${PORTMAP_OPTION}): field "${field}": ${JSON.stringify(value)} is not allowed; allowed values: ${allowed}`,
  );
}

function portField(entry: Record<string, unknown>, i: number, field: string, allowZero: boolean): number {
  const v = entry[field] ?? 0;
  const ok = typeof v === 'number' && Number.isInteger(v) && v >= (allowZero ? 0 : 1) && v <= 65535;
  if (!ok) throw bad(i, field, v, allowZero ? '1-65535, or 0 for any free port' : '1-65535');
  return v;
}

/**
 * The bindings of a port map, or [] when there is none. `hostAddresses` are this host's own
 * addresses: a binding to any other address could never receive a packet, so it is refused.
 * Loopback addresses are refused too (see docs/ports.md): DNAT cannot send 127.0.0.1 traffic out
 * of a container's interface without opening the host's loopback to every container.
 */
export function parsePortMap(value: unknown, hostAddresses: readonly string[]): PortBindingRecord[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) throw new BadRequestError(`invalid ${PORTMAP_OPTION}: expected a list of port bindings, got ${typeof value}`);
  const own = new Set(hostAddresses.map(canonicalIp));
  return value.map((raw: unknown, i): PortBindingRecord => {
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
      throw bad(i, '(entry)', raw, 'an object with Proto, Port, HostIP, HostPort, HostPortEnd');
    const e = raw as Record<string, unknown>;
    const protocol = PROTO_BY_NUMBER[e.Proto as number];
    if (!protocol) throw bad(i, 'Proto', e.Proto, '6 (tcp), 17 (udp), 132 (sctp)');
    const port = portField(e, i, 'Port', false);
    const hostPort = portField(e, i, 'HostPort', true);
    // Docker leaves HostPortEnd 0 when only HostPort is given.
    const end = portField(e, i, 'HostPortEnd', true);
    const hostPortEnd = end === 0 ? hostPort : end;
    if (hostPort === 0 && hostPortEnd !== 0) throw bad(i, 'HostPort', hostPort, `1-${hostPortEnd} when HostPortEnd is ${hostPortEnd}`);
    if (hostPortEnd < hostPort) throw bad(i, 'HostPortEnd', end, `${hostPort}-65535 (not below HostPort ${hostPort})`);
    const ip = e.HostIP ?? '';
    if (typeof ip !== 'string' || (ip !== '' && !isIP(ip))) throw bad(i, 'HostIP', ip, '"", 0.0.0.0, :: or an address of this host');
    const hostIp = canonicalIp(ip);
    if (!WILDCARDS.has(hostIp)) {
      const allowed = `"", 0.0.0.0, :: (every address of this host) or one of this host's addresses: ${[...own].filter((a) => !isLoopback(a)).join(', ') || 'none'}`;
      if (isLoopback(hostIp)) throw bad(i, 'HostIP', ip, `${allowed} (loopback addresses cannot be published on calico networks)`);
      if (!own.has(hostIp)) throw bad(i, 'HostIP', ip, allowed);
    }
    return { protocol, port, ...(hostIp ? { hostIp } : {}), hostPort, hostPortEnd };
  });
}

export function isLoopback(ip: string): boolean {
  return ip === '::1' || /^127\./.test(ip);
}

/** The families a binding publishes on, for an endpoint with addresses of `families`. */
export function bindingFamilies(b: Pick<PortBindingRecord, 'hostIp'>, families: ReadonlySet<4 | 6>): Array<4 | 6> {
  const fam: Array<4 | 6> = b.hostIp === undefined ? [4, 6] : b.hostIp === '0.0.0.0' ? [4] : b.hostIp === '::' ? [6] : [isIP(b.hostIp) as 4 | 6];
  return fam.filter((f) => families.has(f));
}

/** The requested part of two binding lists is the same (what a replay must repeat). */
export function sameRequest(a: readonly PortBindingRecord[] | undefined, b: readonly PortBindingRecord[] | undefined): boolean {
  const key = (l: readonly PortBindingRecord[] | undefined) =>
    JSON.stringify((l ?? []).map((x) => [x.protocol, x.port, x.hostIp ?? '', x.hostPort, x.hostPortEnd]));
  return key(a) === key(b);
}

/** How `calico endpoint ls` and logs show a binding: `[IP:]HOSTPORT->PORT/PROTO`. */
export function describeBinding(b: PortBindingRecord): string {
  const host = b.published ?? (b.hostPort === 0 ? 'any' : b.hostPort === b.hostPortEnd ? b.hostPort : `${b.hostPort}-${b.hostPortEnd}`);
  const ip = b.hostIp === undefined ? '' : isIP(b.hostIp) === 6 ? `[${b.hostIp}]:` : `${b.hostIp}:`;
  return `${ip}${host}->${b.port}/${b.protocol}`;
}
