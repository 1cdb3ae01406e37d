/**
 * Per-record pieces the calculator and its from-scratch reference share: a policy or profile
 * record compiled into its backend-neutral spec plus the sets its rules name, the naming
 * conventions (set names, group ids) and the small derivations from an endpoint record. Pure;
 * a record that cannot be compiled throws, and the caller skips it and reports it.
 */
import { createHash } from 'node:crypto';
import {
  type Dir,
  FAMILIES,
  type Family,
  type FamilyRules,
  type IcmpSpec,
  type PolicySpec,
  type PortRange,
  type ProfileSpec,
  PROTOCOLS,
  type RuleSpec,
  type Side,
} from '../../firewall/desired';
import type { EndpointRecord, PolicyRecord, ProfileRecord, RuleEntity, RuleRecord } from '../../lib/datastore/records';
import { BadRequestError } from '../../lib/errors';
import { WORKLOAD_PREFIX } from '../../lib/dataplane/types';
import { type Cidr, containsCidr, formatCidr, isIP, parseCidr } from '../../lib/ip';
import { NETWORK_LABEL, defaultProfile } from '../profiles';
import { type Selector, canonical, parseSelector, quote } from '../selector';

export const hash = (s: string, n: number) => createHash('sha256').update(s).digest('hex').slice(0, n);

/**
 * The iptables backend's convention (firewall/iptables/compile.ts SET_NAME): 18 characters,
 * ipset-safe. The `net:` in the hash came with network sets, when selector sets became
 * hash:net: a host upgraded in place must not find an old hash:ip set under the new set's name
 * (ipset cannot swap or re-create a set as another type).
 */
export const selectorSetName = (canon: string, f: Family) => `cal${f}s-${hash(`net:${canon}`, 12)}`;
export const netSetName = (members: readonly string[], f: Family) => `cal${f}n-${hash(members.join(','), 12)}`;
export const groupId = (dir: Dir, policies: readonly string[]) => `${dir === 'ingress' ? 'i' : 'e'}-${hash(JSON.stringify([dir, ...policies]), 16)}`;

/** A set a compiled object's rules name: selector sets by canonical selector, net sets by their CIDRs. */
export type SetRef =
  { kind: 'sel'; name: string; family: Family; canon: string; sel: Selector } | { kind: 'net'; name: string; family: Family; members: readonly string[] };

export interface CompiledPolicy {
  name: string;
  order: number;
  sel: Selector;
  canon: string;
  types: ReadonlySet<Dir>;
  spec: PolicySpec;
  refs: readonly SetRef[];
}

export interface CompiledProfile {
  spec: ProfileSpec;
  refs: readonly SetRef[];
}

/** Evaluation order: `order`, then name (by code unit, so it does not depend on the locale). */
export function byOrder(a: { order: number; name: string }, b: { order: number; name: string }): number {
  return a.order - b.order || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
}

const parsed = (src: string): { sel: Selector; canon: string } => {
  const sel = parseSelector(src);
  return { sel, canon: canonical(sel) };
};

function portRanges(ps: readonly (number | string)[]): PortRange[] {
  return ps.map((p) => {
    const [a, b = a] = String(p).split(':').map(Number);
    if (![a, b].every((x) => Number.isInteger(x) && x >= 0 && x <= 65535) || a > b) throw new BadRequestError(`port "${p}" is not a port or range`);
    return [a, b] as const;
  });
}

/** CIDRs of one family for a `net` set: canonical, sorted, none inside another (nftables' interval sets refuse overlaps). */
export function netMembers(cidrs: readonly string[], f: Family): string[] {
  const byText = new Map<string, Cidr>();
  for (const c of cidrs.map((x) => parseCidr(x, 'net'))) if (c.family === f) byText.set(formatCidr(c), c);
  const all = [...byText.values()];
  // Distinct canonical CIDRs: one contains another only if it is strictly larger.
  return [...byText]
    .filter(([, c]) => !all.some((o) => o !== c && containsCidr(o, c)))
    .map(([t]) => t)
    .sort();
}

function protocolNumber(p: RuleRecord['protocol']): number | undefined {
  if (typeof p === 'string') {
    const n = (PROTOCOLS as Record<string, number | undefined>)[p];
    if (n === undefined) throw new BadRequestError(`unknown protocol "${p}"`);
    return n;
  }
  if (p !== undefined && (!Number.isInteger(p) || p < 1 || p > 255)) throw new BadRequestError(`protocol ${p} is not 1-255`);
  return p;
}

/** Calico's ranges: type 0-254 (255 is reserved), code 0-255, a code only with a type. */
function icmpSpec(m: NonNullable<RuleRecord['icmp']>, field: string): IcmpSpec {
  if (!Number.isInteger(m.type) || m.type < 0 || m.type > 254) throw new BadRequestError(`${field}.type ${m.type} is not 0-254`);
  if (m.code !== undefined && (!Number.isInteger(m.code) || m.code < 0 || m.code > 255)) throw new BadRequestError(`${field}.code ${m.code} is not 0-255`);
  return m.code === undefined ? { type: m.type } : { type: m.type, code: m.code };
}

class RuleCompiler {
  readonly refs = new Map<string, SetRef>();

  constructor(private readonly label: string) {}

  private selSet(src: string, f: Family): string {
    const { sel, canon } = parsed(src);
    const name = selectorSetName(canon, f);
    if (!this.refs.has(name)) this.refs.set(name, { kind: 'sel', name, family: f, canon, sel });
    return name;
  }

  private netSet(cidrs: readonly string[], f: Family): string | undefined {
    const members = netMembers(cidrs, f);
    if (!members.length) return undefined;
    const name = netSetName(members, f);
    if (!this.refs.has(name)) this.refs.set(name, { kind: 'net', name, family: f, members });
    return name;
  }

  /** One side for one family; undefined when the rule cannot apply to that family. */
  private side(e: RuleEntity | undefined, f: Family): Side | undefined {
    if (!e) return { sets: [], notSets: [] };
    const sets: string[] = [];
    if (e.selector) sets.push(this.selSet(e.selector, f));
    if (e.network) {
      // The selector language has no escapes: a value holding both quotes cannot be expressed.
      if (e.network.includes("'") && e.network.includes('"')) throw new BadRequestError(`network "${e.network}" holds both ' and "`);
      sets.push(this.selSet(`${NETWORK_LABEL} == ${quote(e.network)}`, f));
    }
    const s: { -readonly [K in keyof Side]: Side[K] } = { sets, notSets: e.notSelector ? [this.selSet(e.notSelector, f)] : [] };
    if (e.nets) {
      const n = this.netSet(e.nets, f);
      if (!n) return undefined; // only nets of the other family (or none): matches nothing here
      s.nets = n;
    }
    if (e.notNets) {
      const n = this.netSet(e.notNets, f);
      if (n) s.notNets = n;
    }
    if (e.ports) s.ports = portRanges(e.ports);
    if (e.notPorts) s.notPorts = portRanges(e.notPorts);
    return s;
  }

  private rule(r: RuleRecord, f: Family): RuleSpec | undefined {
    const protocol = protocolNumber(r.protocol);
    let notProtocol = protocolNumber(r.notProtocol);
    if (protocol !== undefined && notProtocol !== undefined) {
      if (protocol === notProtocol) return undefined; // a protocol and not that protocol: matches nothing
      notProtocol = undefined; // implied by the protocol
    }
    const ported = [r.source, r.destination].some((e) => e?.ports || e?.notPorts);
    if (ported && protocol !== PROTOCOLS.tcp && protocol !== PROTOCOLS.udp && protocol !== PROTOCOLS.sctp)
      throw new BadRequestError('ports need protocol tcp, udp or sctp');
    if ((r.icmp || r.notICMP) && protocol !== PROTOCOLS.icmp && protocol !== PROTOCOLS.icmpv6)
      throw new BadRequestError('icmp and notICMP need protocol icmp or icmpv6');
    const icmp = r.icmp && icmpSpec(r.icmp, 'icmp');
    const notICMP = r.notICMP && icmpSpec(r.notICMP, 'notICMP');
    if ((protocol === PROTOCOLS.icmp && f === 6) || (protocol === PROTOCOLS.icmpv6 && f === 4)) return undefined;
    const src = this.side(r.source, f);
    const dst = this.side(r.destination, f);
    if (!src || !dst) return undefined;
    return {
      action: r.action,
      ...(protocol === undefined ? {} : { protocol }),
      ...(notProtocol === undefined ? {} : { notProtocol }),
      ...(icmp ? { icmp } : {}),
      ...(notICMP ? { notICMP } : {}),
      src,
      dst,
      logPrefix: `calico ${this.label.slice(0, 20)}`,
    };
  }

  rules(rs: readonly RuleRecord[]): FamilyRules {
    const out = { 4: [] as RuleSpec[], 6: [] as RuleSpec[] };
    for (const f of FAMILIES)
      for (const r of rs) {
        const x = this.rule(r, f);
        if (x) out[f].push(x);
      }
    return out;
  }
}

const NO_RULES: FamilyRules = { 4: [], 6: [] };

export function compilePolicy(rec: PolicyRecord): CompiledPolicy {
  const { sel, canon } = parsed(rec.selector);
  const types = new Set<Dir>(rec.types);
  const c = new RuleCompiler(rec.name);
  const spec: PolicySpec = {
    name: rec.name,
    ingress: types.has('ingress') ? c.rules(rec.ingress) : NO_RULES,
    egress: types.has('egress') ? c.rules(rec.egress) : NO_RULES,
  };
  return { name: rec.name, order: rec.order, sel, canon, types, spec, refs: [...c.refs.values()] };
}

export function compileProfile(rec: ProfileRecord): CompiledProfile {
  const c = new RuleCompiler(rec.name);
  const spec: ProfileSpec = { name: rec.name, ingress: c.rules(rec.ingress), egress: c.rules(rec.egress) };
  return { spec, refs: [...c.refs.values()] };
}

/** What a profile that cannot be compiled becomes: no rules, so its endpoints' traffic is dropped (fail closed). */
export const closedProfile = (name: string): CompiledProfile => ({ spec: { name, ingress: NO_RULES, egress: NO_RULES }, refs: [] });

/**
 * The profile a network name gets on this host (render.ts's rule): the stored one, unless the
 * network is `--internal` here and the stored one is not yet, in which case the internal
 * default holds it in at once.
 */
export function chooseProfile(stored: ProfileRecord | undefined, name: string, internalHere: boolean): ProfileRecord {
  return stored && (stored.internal || !internalHere) ? stored : defaultProfile(name, internalHere);
}

const addrOf = (c: string, f: Family): string | undefined => {
  const a = c.split('/')[0];
  return isIP(a) && a.includes(':') === (f === 6) ? a : undefined;
};

/** Own addresses of one family, without prefix length, deduplicated; one that is not an address of that family is left out (a set holding it could not be loaded). */
export function ownAddrs(ep: EndpointRecord, f: Family): string[] {
  const list = (f === 4 ? ep.ipv4 : ep.ipv6).map((c) => addrOf(c, f)).filter((a): a is string => a !== undefined);
  return list.length > 1 ? [...new Set(list)] : list;
}

/** Why an endpoint record cannot be used as given (its addresses or, for a local one, its interface), if it cannot. */
export function endpointProblem(ep: EndpointRecord, local: boolean): string | undefined {
  const bad = [...ep.ipv4.filter((c) => !addrOf(c, 4)), ...ep.ipv6.filter((c) => !addrOf(c, 6))];
  if (bad.length) return `addresses ${bad.join(', ')} are not of their family; left out`;
  if (local && !validIfName(ep.ifName))
    return `interface name "${ep.ifName}" is not a ${WORKLOAD_PREFIX}… name of at most 15 characters; the endpoint is not programmed`;
  return undefined;
}

/** A local endpoint's interface must be one the dispatch rules can name. */
export const validIfName = (n: string) => n.length <= 15 && n.startsWith(WORKLOAD_PREFIX) && /^[A-Za-z0-9_.-]+$/.test(n);

export const networkKey = (host: string, id: string) => `${host}/${id}`;

/** Endpoints of one container on one host share their addresses (a container on several networks). */
export const containerKey = (ep: EndpointRecord): string | undefined => (ep.sandbox ? `${ep.host}\u0000${ep.sandbox}` : undefined);

export function endpointLabels(ep: EndpointRecord, netName: string): Record<string, string> {
  return { ...ep.labels, [NETWORK_LABEL]: netName };
}

/**
 * A network set's CIDRs of one family as selector-set members: canonical, none inside another,
 * a /32 or /128 written as the bare address (as endpoints' addresses are), so one address is one
 * member whichever record gives it. Throws on a CIDR that does not parse.
 */
export function netSetMembers(nets: readonly string[], f: Family): string[] {
  const full = f === 4 ? '/32' : '/128';
  return netMembers(nets, f).map((m) => (m.endsWith(full) ? m.slice(0, -full.length) : m));
}

/** A selector-set member (an address, or a CIDR as netSetMembers writes it) as a CIDR. */
export function memberCidr(m: string): Cidr {
  return m.includes('/') ? parseCidr(m, 'set member') : parseCidr(`${m}/${m.includes(':') ? 128 : 32}`, 'set member');
}

/**
 * What a selector set holds: its members less those inside another member (nftables' interval
 * sets refuse overlapping elements; a member inside another adds nothing to what matches).
 */
export function cover(members: Iterable<string>): Set<string> {
  const all = new Set(members);
  const nets = [...all].filter((m) => m.includes('/')).map((m) => [m, memberCidr(m)] as const);
  if (!nets.length) return all;
  const out = new Set<string>();
  for (const m of all) {
    const c = memberCidr(m);
    if (!nets.some(([t, n]) => t !== m && containsCidr(n, c))) out.add(m);
  }
  return out;
}
