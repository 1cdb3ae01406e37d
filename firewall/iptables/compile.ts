/**
 * The desired firewall (firewall/desired.ts) as iptables chains and ipsets, in Felix's shape
 * under our `cal-` prefix: one jump from FORWARD and INPUT, dispatch by interface to
 * per-endpoint chains, conntrack first, anti-spoofing, the endpoint's policy group (a chain of
 * jumps to per-policy chains), the default deny, then its profile. "Allow" is a mark plus
 * RETURN, so both ends of same-host traffic are checked before FORWARD accepts by that mark.
 * Pure: each desired object compiles on its own into the chains it owns, so a change to one
 * object rewrites only its chains. Chains are rule lists (the text after `-A <chain> `).
 */
import { createHash } from 'node:crypto';
import { WORKLOAD_PREFIX } from '../../lib/dataplane/types';
import type { Dir, EndpointSpec, Family, GroupSpec, PolicySpec, ProfileSpec, RuleSpec, SetSpec, Side } from '../desired';

/** Every workload interface, in iptables' wildcard. */
const WL = `${WORKLOAD_PREFIX}+`;

export const PREFIX = 'cal-';
export const MARK_ACCEPT = '0x10000';
export const MARK_PASS = '0x20000';
const MASK = '0x30000';
/** Chains every apply keeps: the hooks' targets and the dispatchers. */
export const FORWARD = `${PREFIX}FORWARD`;
export const INPUT = `${PREFIX}INPUT`;
export const FROM_WL = `${PREFIX}from-wl`;
export const TO_WL = `${PREFIX}to-wl`;
/** Known endpoints to the host itself (endpointToHost accept): an unknown `cali` interface is dropped here too. */
export const HOST_WL = `${PREFIX}host-wl`;
/** Our ipsets: selector (s), net (n) and anti-spoofing address (a) sets, per family. */
export const SET_NAME = /^cal[46][sna]-/;

export type Chains = Map<string, string[]>;

const h = (s: string, n: number) => createHash('sha256').update(s).digest('hex').slice(0, n);
const d = (dir: Dir) => (dir === 'ingress' ? 'i' : 'o');

export const policyChain = (name: string, dir: Dir) => `${PREFIX}p${d(dir)}-${h(name, 16)}`;
export const profileChain = (name: string, dir: Dir) => `${PREFIX}pr${d(dir)}-${h(name, 15)}`;
/** Group ids are `i-<16 hex>` / `e-<16 hex>`: short enough for iptables' 28-character names. */
export const groupChain = (id: string) => `${PREFIX}g${id}`;
export const endpointChain = (ifName: string, dir: Dir) => `${PREFIX}${dir === 'ingress' ? 'tw' : 'fw'}-${ifName}`;
/** The set holding an endpoint's own addresses when it has more than one of a family. */
export const spoofSet = (addrs: readonly string[], f: Family) => `cal${f}a-${h(addrs.join(','), 12)}`;

const PROTO_NAME: Record<number, string> = { 1: 'icmp', 6: 'tcp', 17: 'udp', 58: 'ipv6-icmp', 132: 'sctp' };
const ports = (rs: readonly (readonly [number, number])[]) => rs.map(([a, b]) => (a === b ? `${a}` : `${a}:${b}`)).join(',');
/** Log prefixes come from policy names; keep them to what iptables-restore parses inside quotes. */
const safePrefix = (p: string) => p.replace(/[^A-Za-z0-9 ._:-]/g, '_').slice(0, 28);

function side(s: Side, dir: 'src' | 'dst'): string[] {
  const out: string[] = [];
  for (const set of s.sets) out.push(`-m set --match-set ${set} ${dir}`);
  for (const set of s.notSets) out.push(`-m set ! --match-set ${set} ${dir}`);
  if (s.nets) out.push(`-m set --match-set ${s.nets} ${dir}`);
  if (s.notNets) out.push(`-m set ! --match-set ${s.notNets} ${dir}`);
  const flag = dir === 'src' ? '--sports' : '--dports';
  if (s.ports?.length) out.push(`-m multiport ${flag} ${ports(s.ports)}`);
  if (s.notPorts?.length) out.push(`-m multiport ! ${flag} ${ports(s.notPorts)}`);
  return out;
}

/** One rule as iptables rules: allow and pass set their mark and return. */
/** `--icmp-type TYPE[/CODE]`, or ICMPv6's, after the protocol match the module needs. */
function icmp(r: RuleSpec): string[] {
  const [mod, flag] = r.protocol === 58 ? ['icmp6', '--icmpv6-type'] : ['icmp', '--icmp-type'];
  const t = (x: NonNullable<RuleSpec['icmp']>) => (x.code === undefined ? `${x.type}` : `${x.type}/${x.code}`);
  // One -m per test: a match takes its type option once.
  return [...(r.icmp ? [`-m ${mod} ${flag} ${t(r.icmp)}`] : []), ...(r.notICMP ? [`-m ${mod} ! ${flag} ${t(r.notICMP)}`] : [])];
}

export function ruleLines(r: RuleSpec): string[] {
  const proto = r.protocol === undefined ? [] : [`-p ${PROTO_NAME[r.protocol] ?? r.protocol}`];
  const notProto = r.notProtocol === undefined ? [] : [`! -p ${PROTO_NAME[r.notProtocol] ?? r.notProtocol}`];
  const m = [...proto, ...notProto, ...icmp(r), ...side(r.src, 'src'), ...side(r.dst, 'dst')].join(' ');
  const pre = m ? `${m} ` : '';
  switch (r.action) {
    case 'allow':
      return [`${pre}-j MARK --set-xmark ${MARK_ACCEPT}/${MARK_ACCEPT}`, `-m mark --mark ${MARK_ACCEPT}/${MARK_ACCEPT} -j RETURN`];
    case 'pass':
      return [`${pre}-j MARK --set-xmark ${MARK_PASS}/${MARK_PASS}`, `-m mark --mark ${MARK_PASS}/${MARK_PASS} -j RETURN`];
    case 'deny':
      return [`${pre}-j DROP`];
    case 'log':
      return [`${pre}-j LOG --log-prefix "${safePrefix(r.logPrefix)} "`];
  }
}

const dirs: Dir[] = ['ingress', 'egress'];

export function compilePolicy(p: PolicySpec, f: Family): Chains {
  return new Map(dirs.map((dir) => [policyChain(p.name, dir), p[dir][f].flatMap(ruleLines)]));
}

export function compileProfile(p: ProfileSpec, f: Family): Chains {
  return new Map(dirs.map((dir) => [profileChain(p.name, dir), p[dir][f].flatMap(ruleLines)]));
}

/** A group: its policies' chains in order, skipped once one passed, left once one allowed. */
export function compileGroup(g: GroupSpec): Chains {
  const rules = g.policies.flatMap((name) => [
    `-m mark --mark 0x0/${MARK_PASS} -j ${policyChain(name, g.dir)}`,
    `-m mark --mark ${MARK_ACCEPT}/${MARK_ACCEPT} -j RETURN`,
  ]);
  return new Map([[groupChain(g.id), rules]]);
}

/** The anti-spoofing set an endpoint needs for a family, if it has several addresses of it. */
export function endpointSets(e: EndpointSpec, f: Family): SetSpec[] {
  const own = e.addrs[f];
  return own.length > 1 ? [{ name: spoofSet(own, f), family: f, kind: 'addr', members: new Set(own) }] : [];
}

export function compileEndpoint(e: EndpointSpec, f: Family): Chains {
  const out: Chains = new Map();
  for (const dir of dirs) {
    const tier = e[dir];
    const rules = ['-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT', '-m conntrack --ctstate INVALID -j DROP'];
    if (dir === 'egress') {
      const own = e.addrs[f];
      if (own.length === 0) rules.push('-j DROP');
      else if (own.length === 1) rules.push(`! -s ${own[0]} -j DROP`);
      else rules.push(`-m set ! --match-set ${spoofSet(own, f)} src -j DROP`);
    }
    rules.push(`-j MARK --set-xmark 0x0/${MASK}`);
    if (tier.group) {
      rules.push(`-j ${groupChain(tier.group)}`, `-m mark --mark ${MARK_ACCEPT}/${MARK_ACCEPT} -j RETURN`);
      // Selected by a policy and none allowed or passed: denied (Calico's default deny).
      rules.push(`-m mark --mark 0x0/${MARK_PASS} -j DROP`);
    }
    // Connections to a published port (ports/rules.ts DNAT): admitted after the policies, before the profile.
    if (dir === 'ingress')
      rules.push(`-m conntrack --ctstate DNAT -j MARK --set-xmark ${MARK_ACCEPT}/${MARK_ACCEPT}`, `-m mark --mark ${MARK_ACCEPT}/${MARK_ACCEPT} -j RETURN`);
    rules.push(`-j ${profileChain(tier.profile, dir)}`, `-m mark --mark ${MARK_ACCEPT}/${MARK_ACCEPT} -j RETURN`, '-j DROP');
    out.set(endpointChain(e.ifName, dir), rules);
  }
  return out;
}

/** The dispatch rules of one endpoint, inserted and deleted one by one (their order does not matter). */
export function dispatchRules(ifName: string): { from: string; to: string; host: string } {
  return {
    from: `-i ${ifName} -g ${endpointChain(ifName, 'egress')}`,
    to: `-o ${ifName} -g ${endpointChain(ifName, 'ingress')}`,
    host: `-i ${ifName} -j ACCEPT`,
  };
}

/** The hooks' chains and the dispatchers, with every endpoint's dispatch rule (full applies). */
export function compileBase(f: Family, endpointToHost: 'drop' | 'accept', ifNames: readonly string[]): Chains {
  const input = [`-i ${WL} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT`];
  // IPv6 needs neighbour discovery with the host's link-local gateway.
  if (f === 6) for (const t of [133, 135, 136]) input.push(`-i ${WL} -p ipv6-icmp --icmpv6-type ${t} -j ACCEPT`);
  input.push(`-i ${WL} -j ${endpointToHost === 'accept' ? HOST_WL : 'DROP'}`);
  return new Map([
    [FORWARD, [`-j MARK --set-xmark 0x0/${MASK}`, `-i ${WL} -j ${FROM_WL}`, `-o ${WL} -j ${TO_WL}`, `-m mark --mark ${MARK_ACCEPT}/${MARK_ACCEPT} -j ACCEPT`]],
    [INPUT, input],
    [FROM_WL, [...ifNames.map((i) => dispatchRules(i).from), '-j DROP']],
    [TO_WL, [...ifNames.map((i) => dispatchRules(i).to), '-j DROP']],
    [HOST_WL, [...ifNames.map((i) => dispatchRules(i).host), '-j DROP']],
  ]);
}

/** ipset's hash:net cannot hold a /0 (the kernel refuses it): its two halves stand for it. */
export function memberEntries(s: Pick<SetSpec, 'kind' | 'family'>, members: Iterable<string>): string[] {
  const whole = s.family === 4 ? ['0.0.0.0/1', '128.0.0.0/1'] : ['::/1', '8000::/1'];
  return [...members].flatMap((m) => (s.kind === 'net' && /\/0$/.test(m) ? whole : [m]));
}

export function setMembers(s: SetSpec): string[] {
  return memberEntries(s, s.members).sort();
}

export const setType = (s: Pick<SetSpec, 'kind'>) => (s.kind === 'net' ? 'hash:net' : 'hash:ip');
