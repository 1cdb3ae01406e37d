/**
 * Address math on BigInt so IPv4 and IPv6 share one code path. Parsing is delegated to
 * ipaddr.js; everything else (containment, blocks, ordinals) is plain integer arithmetic.
 */
import ipaddr from 'ipaddr.js';
import { BadRequestError } from './errors';

export type Family = 4 | 6;

export interface IP {
  family: Family;
  value: bigint;
}

/** A network in canonical form: `base` has no host bits set. */
export interface Cidr {
  family: Family;
  base: bigint;
  prefix: number;
}

export function bits(family: Family): number {
  return family === 4 ? 32 : 128;
}

function bytesToBigInt(bytes: number[]): bigint {
  let v = 0n;
  for (const b of bytes) v = (v << 8n) | BigInt(b);
  return v;
}

export function isIP(s: string): boolean {
  return typeof s === 'string' && ipaddr.isValid(s) && (s.includes(':') || ipaddr.IPv4.isValidFourPartDecimal(s));
}

/** A request value quoted in an error message, cut short: a message must never echo megabytes. */
export function shown(s: unknown): string {
  const t = typeof s === 'string' ? s : String(s);
  return t.length > 80 ? `${t.slice(0, 80)}... (${t.length} characters)` : t;
}

/**
 * Parses a plain address; `what` names the field in the error message. A zone (`%eth0`) and an
 * IPv4-mapped IPv6 address are refused rather than silently dropped or turned into IPv4: either
 * would make the address stored differ from the address asked for.
 */
export function parseIP(s: string, what = 'address'): IP {
  if (typeof s === 'string' && s.includes(':') && s.includes('%')) {
    throw new BadRequestError(`${what} "${shown(s)}" has an IPv6 zone (%...); container and pool addresses are global: give it without the zone`);
  }
  if (!isIP(s)) throw new BadRequestError(`${what} "${shown(s)}" is not an IP address; give an address like 10.1.2.3 or fd00::3`);
  const a = ipaddr.parse(s);
  if (a.kind() === 'ipv6' && (a as ipaddr.IPv6).isIPv4MappedAddress()) {
    const v4 = (a as ipaddr.IPv6).toIPv4Address().toString();
    throw new BadRequestError(`${what} "${shown(s)}" is an IPv4-mapped IPv6 address; give the IPv4 address ${v4} itself (or a real IPv6 address)`);
  }
  return { family: a.kind() === 'ipv4' ? 4 : 6, value: bytesToBigInt(a.toByteArray()) };
}

export function formatIP(ip: IP): string {
  const n = ip.family === 4 ? 4 : 16;
  const bytes: number[] = [];
  let v = ip.value;
  for (let i = 0; i < n; i++) {
    bytes.unshift(Number(v & 0xffn));
    v >>= 8n;
  }
  return ipaddr.fromByteArray(bytes).toString();
}

export function hostMask(family: Family, prefix: number): bigint {
  return (1n << BigInt(bits(family) - prefix)) - 1n;
}

/**
 * Parses `addr/len`. With `strict`, host bits must be zero (a subnet or a pool); otherwise they
 * are dropped. Returns also the address as written, for interface addresses like 10.0.0.5/32.
 */
export function parseCidr(s: string, what = 'subnet', strict = false): Cidr {
  const m = typeof s === 'string' ? /^([^/]+)\/(\d{1,3})$/.exec(s) : null;
  if (!m || !isIP(m[1])) {
    if (m && m[1].includes(':') && m[1].includes('%')) parseIP(m[1], what);
    throw new BadRequestError(`${what} "${shown(s)}" is not a CIDR; give a network like 10.10.0.0/16 or fd00:1::/64`);
  }
  const ip = parseIP(m[1], what);
  const prefix = Number(m[2]);
  if (prefix > bits(ip.family)) {
    throw new BadRequestError(`${what} "${shown(s)}" has prefix length ${prefix}, more than ${bits(ip.family)} bits`);
  }
  const mask = hostMask(ip.family, prefix);
  if (strict && (ip.value & mask) !== 0n) {
    const canon = formatCidr({ family: ip.family, base: ip.value & ~mask, prefix });
    throw new BadRequestError(`${what} "${shown(s)}" has host bits set; did you mean ${canon}?`);
  }
  return { family: ip.family, base: ip.value & ~mask, prefix };
}

/** Splits `10.0.0.5/24` into the address and its prefix length (interface-address form). */
export function parseAddressWithPrefix(s: string, what = 'address'): { ip: IP; prefix: number } {
  const m = typeof s === 'string' ? /^([^/]+)\/(\d{1,3})$/.exec(s) : null;
  if (!m) throw new BadRequestError(`${what} "${shown(s)}" is not an address with a prefix length like 10.0.0.5/32`);
  const ip = parseIP(m[1], what);
  const prefix = Number(m[2]);
  if (prefix > bits(ip.family)) throw new BadRequestError(`${what} "${shown(s)}" has prefix length ${prefix}, more than ${bits(ip.family)} bits`);
  return { ip, prefix };
}

export function formatCidr(c: Cidr): string {
  return `${formatIP({ family: c.family, value: c.base })}/${c.prefix}`;
}

export function canonicalCidr(s: string, what?: string): string {
  return formatCidr(parseCidr(s, what));
}

export function cidrSize(c: Cidr): bigint {
  return 1n << BigInt(bits(c.family) - c.prefix);
}

export function cidrLast(c: Cidr): bigint {
  return c.base + cidrSize(c) - 1n;
}

export function containsIP(c: Cidr, ip: IP): boolean {
  return c.family === ip.family && ip.value >= c.base && ip.value <= cidrLast(c);
}

/** True when `inner` lies entirely inside `outer` (equal counts). */
export function containsCidr(outer: Cidr, inner: Cidr): boolean {
  return outer.family === inner.family && inner.prefix >= outer.prefix && containsIP(outer, { family: inner.family, value: inner.base });
}

export function overlaps(a: Cidr, b: Cidr): boolean {
  return a.family === b.family && a.base <= cidrLast(b) && b.base <= cidrLast(a);
}

export function sameCidr(a: Cidr, b: Cidr): boolean {
  return a.family === b.family && a.base === b.base && a.prefix === b.prefix;
}

/** The block of `prefix` bits that holds `ip`. */
export function enclosing(ip: IP, prefix: number): Cidr {
  return { family: ip.family, base: ip.value & ~hostMask(ip.family, prefix), prefix };
}

/** Etcd key segment for a CIDR: Calico's convention of `/` replaced by `-`. */
export function cidrKey(c: Cidr | string): string {
  const s = typeof c === 'string' ? c : formatCidr(c);
  return s.replace('/', '-');
}

export function cidrFromKey(k: string): string {
  const i = k.lastIndexOf('-');
  return `${k.slice(0, i)}/${k.slice(i + 1)}`;
}

export function hostCidr(ip: IP): string {
  return `${formatIP(ip)}/${bits(ip.family)}`;
}
