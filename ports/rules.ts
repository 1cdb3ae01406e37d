/**
 * Published ports as DNAT, the way Docker's bridge does it but for calico endpoints: a packet to
 * one of this host's addresses (from another machine, a container, or the host itself) on a
 * published host port goes to the container's address and port. A container reaching its own
 * published port (hairpin) is masqueraded, or its reply would go to itself straight inside the
 * container and never be translated back. Pure: endpoint records in, one plan and its rule text
 * out, the same text for the same records (so an unchanged plan is never reapplied).
 */
import { isIP } from 'node:net';
import { InternalError } from '../lib/errors';
import type { EndpointRecord, PortBindingRecord } from '../lib/datastore/records';
import { bindingFamilies } from './request';

export type Family = 4 | 6;
export const FAMILIES: readonly Family[] = [4, 6];

export const NFT_TABLE = 'inet calico-ports';
/** iptables nat chains: DNAT (from PREROUTING and OUTPUT) and the hairpin masquerade (from POSTROUTING). */
export const IPT_DNAT = 'cali-ports';
export const IPT_MASQ = 'cali-ports-masq';

export interface PortRule {
  protocol: PortBindingRecord['protocol'];
  /** A specific host address; absent: every address of the host of this family. */
  hostIp?: string;
  hostPort: number;
  /** The container's address and port. */
  addr: string;
  port: number;
  endpoint: string;
}

export interface PortsPlan {
  rules: Record<Family, PortRule[]>;
  /** Container addresses that have something published (hairpin masquerade). */
  hairpin: Record<Family, string[]>;
}

const PROTOCOLS = new Set(['tcp', 'udp', 'sctp']);

/** Only an address of the family goes into rule text (records are decoded, but never trusted as text). */
function address(ip: string, f: Family): string {
  if (isIP(ip) !== f) throw new InternalError(`refusing to program ${JSON.stringify(ip)} as a published-port address: not an IPv${f} address`);
  return ip;
}

function checkPort(p: number): number {
  if (!Number.isInteger(p) || p < 1 || p > 65535) throw new InternalError(`refusing to program port ${p}: not 1-65535`);
  return p;
}

/**
 * The DNAT rules of this host's published bindings. One host port of a family and address goes
 * to one container: a duplicate (which the driver never writes) keeps the endpoint first by ID.
 * Specific host addresses sort before "every address", so they are looked up first.
 */
export function portsPlan(endpoints: readonly EndpointRecord[]): PortsPlan {
  const plan: PortsPlan = { rules: { 4: [], 6: [] }, hairpin: { 4: [], 6: [] } };
  const seen = new Set<string>();
  const hairpin = { 4: new Set<string>(), 6: new Set<string>() };
  for (const ep of [...endpoints].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))) {
    const addrs = { 4: ep.ipv4[0]?.split('/')[0], 6: ep.ipv6[0]?.split('/')[0] };
    const families = new Set(FAMILIES.filter((f) => addrs[f]));
    for (const b of ep.ports ?? []) {
      if (b.published === undefined || !PROTOCOLS.has(b.protocol)) continue;
      for (const f of bindingFamilies(b, families)) {
        const specific = b.hostIp === undefined || b.hostIp === '0.0.0.0' || b.hostIp === '::' ? undefined : b.hostIp;
        const key = `${f}|${specific ?? '*'}|${b.protocol}|${b.published}`;
        if (seen.has(key)) continue;
        seen.add(key);
        const addr = address(addrs[f], f);
        plan.rules[f].push({
          protocol: b.protocol,
          ...(specific ? { hostIp: address(specific, f) } : {}),
          hostPort: checkPort(b.published),
          addr,
          port: checkPort(b.port),
          endpoint: ep.id,
        });
        hairpin[f].add(addr);
      }
    }
  }
  const order = (r: PortRule) => `${r.hostIp === undefined ? 1 : 0}|${r.hostIp ?? ''}|${r.protocol}|${String(r.hostPort).padStart(5, '0')}`;
  for (const f of FAMILIES) {
    plan.rules[f].sort((a, b) => (order(a) < order(b) ? -1 : order(a) > order(b) ? 1 : 0));
    plan.hairpin[f] = [...hairpin[f]].sort();
  }
  return plan;
}

export const portsNeeded = (plan: PortsPlan) => plan.rules[4].length + plan.rules[6].length > 0;

/** How many DNAT rules the plan has (logs). */
export const ruleCount = (plan: PortsPlan) => plan.rules[4].length + plan.rules[6].length;

const elements = (items: string[]) => (items.length ? ` elements = { ${items.join(', ')} };` : '');

/**
 * One nft transaction replacing our table whole ("add" first so the delete never fails). The
 * DNAT is map lookups (one per family and kind), so the cost of a packet does not grow with the
 * number of published ports. Connections already translated keep their mapping in conntrack.
 * Locally generated packets to 127.0.0.0/8 and ::1 are left alone: they can never leave
 * through a container's interface (see request.ts).
 */
export function renderNft(plan: PortsPlan): string {
  const lines = [`add table ${NFT_TABLE}`, `delete table ${NFT_TABLE}`];
  if (!portsNeeded(plan)) return lines.join('\n') + '\n';
  const ty = (f: Family) => (f === 4 ? 'ipv4_addr' : 'ipv6_addr');
  const ip = (f: Family) => (f === 4 ? 'ip' : 'ip6');
  lines.push(`table ${NFT_TABLE} {`);
  for (const f of FAMILIES) {
    const rules = plan.rules[f];
    const at = rules.filter((r) => r.hostIp).map((r) => `${r.hostIp} . ${r.protocol} . ${r.hostPort} : ${r.addr} . ${r.port}`);
    const any = rules.filter((r) => !r.hostIp).map((r) => `${r.protocol} . ${r.hostPort} : ${r.addr} . ${r.port}`);
    lines.push(
      `  map at${f} { type ${ty(f)} . inet_proto . inet_service : ${ty(f)} . inet_service;${elements(at)} }`,
      `  map any${f} { type inet_proto . inet_service : ${ty(f)} . inet_service;${elements(any)} }`,
      `  set hairpin${f} { type ${ty(f)} . ${ty(f)};${elements(plan.hairpin[f].map((a) => `${a} . ${a}`))} }`,
    );
  }
  lines.push(
    '  chain prerouting {',
    '    type nat hook prerouting priority dstnat; policy accept;',
    '    fib daddr type local jump publish',
    '  }',
    '  chain output {',
    '    type nat hook output priority -100; policy accept;',
    '    ip daddr 127.0.0.0/8 return',
    '    ip6 daddr ::1 return',
    '    fib daddr type local jump publish',
    '  }',
    '  chain publish {',
    ...FAMILIES.flatMap((f) => [
      `    dnat ${ip(f)} to ${ip(f)} daddr . meta l4proto . th dport map @at${f}`,
      `    dnat ${ip(f)} to meta l4proto . th dport map @any${f}`,
    ]),
    '  }',
    '  chain postrouting {',
    '    type nat hook postrouting priority srcnat; policy accept;',
    ...FAMILIES.map((f) => `    ct status dnat ${ip(f)} saddr . ${ip(f)} daddr @hairpin${f} masquerade`),
    '  }',
    '}',
  );
  return lines.join('\n') + '\n';
}

const hostCidr = (a: string, f: Family) => `${a}/${f === 4 ? 32 : 128}`;
const target = (r: PortRule, f: Family) => (f === 4 ? `${r.addr}:${r.port}` : `[${r.addr}]:${r.port}`);

/** Our two chains' rules for one family, as iptables-save prints them (so the check compares like with like). */
export function iptablesRules(plan: PortsPlan, f: Family): string[] {
  return [
    ...plan.rules[f].map(
      (r) =>
        `-A ${IPT_DNAT} ${r.hostIp ? `-d ${hostCidr(r.hostIp, f)} ` : ''}-p ${r.protocol} -m ${r.protocol} --dport ${r.hostPort} -j DNAT --to-destination ${target(r, f)}`,
    ),
    ...plan.hairpin[f].map((a) => `-A ${IPT_MASQ} -s ${hostCidr(a, f)} -d ${hostCidr(a, f)} -m conntrack --ctstate DNAT -j MASQUERADE`),
  ];
}

/** The jumps to our chains, in iptables-save's spelling; inserted at the top of each built-in chain. */
export function iptablesJumps(f: Family): Array<{ chain: string; rule: string[] }> {
  return [
    { chain: 'PREROUTING', rule: ['-m', 'addrtype', '--dst-type', 'LOCAL', '-j', IPT_DNAT] },
    { chain: 'OUTPUT', rule: ['!', '-d', f === 4 ? '127.0.0.0/8' : '::1/128', '-m', 'addrtype', '--dst-type', 'LOCAL', '-j', IPT_DNAT] },
    { chain: 'POSTROUTING', rule: ['-j', IPT_MASQ] },
  ];
}

/** iptables-restore --noflush input: declaring a chain flushes it, so this replaces both whole. */
export function renderIptables(plan: PortsPlan, f: Family): string {
  return ['*nat', `:${IPT_DNAT} - [0:0]`, `:${IPT_MASQ} - [0:0]`, ...iptablesRules(plan, f), 'COMMIT', ''].join('\n');
}
