/**
 * Renders this host's firewall in Felix's shape under our own prefix: one jump from FORWARD
 * (and INPUT), dispatch by interface to per-endpoint to/from chains, established traffic
 * accepted and invalid dropped first, policies in order, then the network's profile, drop at the
 * end; allow signalled by a mark so both ends of same-host traffic are checked. Selectors become
 * ipsets of endpoint addresses from every host. Pure: views in, iptables-restore text out.
 */
import { createHash } from 'node:crypto';
import type { EndpointRecord, NetworkRecord } from '../lib/datastore/records';
import { type Family, parseCidr } from '../lib/ip';
import type { Entity, PolicyRecord, Rule } from './model';
import { NETWORK_LABEL, type ProfileRecord, defaultProfile, networkName } from './profiles';
import { type Selector, canonical, matches, parseSelector, quote } from './selector';

export const PREFIX = 'cal-';
export const SET_PREFIX = 'cal';
const ACCEPT = '0x10000';
const PASS = '0x20000';
const MASK = '0x30000';

export interface PolicyView {
  host: string;
  endpoints: EndpointRecord[];
  networks: NetworkRecord[];
  policies: PolicyRecord[];
  /** Stored profiles; a network without one (name not learned yet) gets the default profile. */
  profiles: ProfileRecord[];
  /** What containers may send to their own host beyond replies: drop (default) or accept. */
  endpointToHost: 'drop' | 'accept';
}

export interface IpSet {
  name: string;
  family: Family;
  type: 'hash:ip' | 'hash:net';
  members: string[];
}

export interface Rendered {
  ipsets: IpSet[];
  /** iptables-restore input (with --noflush) per family. */
  tables: Record<Family, string>;
  /** Every chain we own in that table, for removing stale ones. */
  chains: Record<Family, string[]>;
}

const h = (s: string, n = 12) => createHash('sha256').update(s).digest('hex').slice(0, n);

export function endpointLabels(ep: EndpointRecord, networks: Map<string, NetworkRecord>): Record<string, string> {
  return { ...ep.labels, [NETWORK_LABEL]: networkName(ep, networks) };
}

export function renderPolicy(v: PolicyView): Rendered {
  const nets = new Map(v.networks.map((n) => [`${n.host}/${n.id}`, n]));
  const all = v.endpoints.map((e) => ({ ep: e, labels: endpointLabels(e, nets) }));
  const local = all.filter((x) => x.ep.host === v.host).sort((a, b) => a.ep.ifName.localeCompare(b.ep.ifName));
  const policies = [...v.policies].sort((a, b) => a.order - b.order || a.name.localeCompare(b.name));
  const parsedSel = new Map<string, Selector>();
  const sel = (s: string) => {
    let p = parsedSel.get(s);
    if (!p) parsedSel.set(s, (p = parseSelector(s)));
    return p;
  };
  const ipsets = new Map<string, IpSet>();
  const addrs = (e: EndpointRecord, f: Family) => (f === 4 ? e.ipv4 : e.ipv6).map((c) => c.split('/')[0]);
  // A container on several networks sends from any of its addresses (traffic leaves by its first
  // interface), so a selector matching one of its endpoints matches all its addresses.
  const sandboxAddrs = new Map<string, EndpointRecord[]>();
  for (const x of all) if (x.ep.sandbox) sandboxAddrs.set(`${x.ep.host} ${x.ep.sandbox}`, [...(sandboxAddrs.get(`${x.ep.host} ${x.ep.sandbox}`) ?? []), x.ep]);
  const containerAddrs = (e: EndpointRecord, f: Family) => (e.sandbox ? sandboxAddrs.get(`${e.host} ${e.sandbox}`)! : [e]).flatMap((x) => addrs(x, f));
  const selectorSet = (s: string, f: Family): string => {
    const key = canonical(sel(s));
    const name = `${SET_PREFIX}${f}s-${h(key)}`;
    if (!ipsets.has(name))
      ipsets.set(name, {
        name,
        family: f,
        type: 'hash:ip',
        members: [...new Set(all.filter((x) => matches(sel(s), x.labels)).flatMap((x) => containerAddrs(x.ep, f)))].sort(),
      });
    return name;
  };
  const netSet = (cidrs: string[], f: Family): string => {
    // ipset's hash:net cannot hold a /0 (the kernel refuses it): its two halves stand for it.
    const whole = f === 4 ? ['0.0.0.0/1', '128.0.0.0/1'] : ['::/1', '8000::/1'];
    const members = cidrs
      .filter((c) => parseCidr(c).family === f)
      .flatMap((c) => (parseCidr(c).prefix === 0 ? whole : [c]))
      .sort();
    const name = `${SET_PREFIX}${f}n-${h(members.join(','))}`;
    if (!ipsets.has(name)) ipsets.set(name, { name, family: f, type: 'hash:net', members });
    return name;
  };
  const stored = new Map(v.profiles.map((p) => [p.name, p]));
  const profiles = new Map<string, ProfileRecord>();
  for (const x of local) {
    const name = x.labels[NETWORK_LABEL];
    const internal = !!nets.get(`${x.ep.host}/${x.ep.network}`)?.internal;
    const internalHere = (profiles.get(name)?.internal ?? false) || internal;
    // A network made --internal here is held in at once, before its stored profile catches up.
    const s = stored.get(name);
    profiles.set(name, s && (s.internal || !internalHere) ? s : defaultProfile(name, internalHere));
  }

  const tables = {} as Record<Family, string>;
  const chains = {} as Record<Family, string[]>;
  for (const f of [4, 6] as const) {
    const lines: string[] = [];
    const declared: string[] = [];
    const chain = (name: string) => declared.push(name);
    const add = (c: string, rule: string) => lines.push(`-A ${c} ${rule}`);

    /** Matches for one side of a rule; undefined when the rule cannot apply to this family. */
    const side = (e: Entity | undefined, dir: 'src' | 'dst'): string[] | undefined => {
      if (!e) return [];
      const out: string[] = [];
      const s = [e.selector, e.network ? `${NETWORK_LABEL} == ${quote(e.network)}` : undefined].filter(Boolean) as string[];
      for (const x of s) out.push(`-m set --match-set ${selectorSet(x, f)} ${dir}`);
      if (e.notSelector) out.push(`-m set ! --match-set ${selectorSet(e.notSelector, f)} ${dir}`);
      if (e.nets) {
        if (!e.nets.some((c) => parseCidr(c).family === f)) return undefined; // only other-family nets
        out.push(`-m set --match-set ${netSet(e.nets, f)} ${dir}`);
      }
      if (e.notNets && e.notNets.some((c) => parseCidr(c).family === f)) out.push(`-m set ! --match-set ${netSet(e.notNets, f)} ${dir}`);
      const flag = dir === 'src' ? '--sports' : '--dports';
      if (e.ports) out.push(`-m multiport ${flag} ${e.ports.join(',')}`);
      if (e.notPorts) out.push(`-m multiport ! ${flag} ${e.notPorts.join(',')}`);
      return out;
    };
    const ruleLines = (c: string, r: Rule, label: string) => {
      if ((r.protocol === 'icmp' && f === 6) || (r.protocol === 'icmpv6' && f === 4)) return;
      const proto = r.protocol === undefined ? [] : [`-p ${r.protocol === 'icmpv6' ? 'ipv6-icmp' : r.protocol}`];
      const src = side(r.source, 'src');
      const dst = side(r.destination, 'dst');
      if (!src || !dst) return;
      const m = [...proto, ...src, ...dst].join(' ');
      const pre = m ? `${m} ` : '';
      if (r.action === 'allow') {
        add(c, `${pre}-j MARK --set-xmark ${ACCEPT}/${ACCEPT}`);
        add(c, `-m mark --mark ${ACCEPT}/${ACCEPT} -j RETURN`);
      } else if (r.action === 'pass') {
        add(c, `${pre}-j MARK --set-xmark ${PASS}/${PASS}`);
        add(c, `-m mark --mark ${PASS}/${PASS} -j RETURN`);
      } else if (r.action === 'deny') add(c, `${pre}-j DROP`);
      else add(c, `${pre}-j LOG --log-prefix "calico ${label.slice(0, 20)} "`);
    };

    chain(`${PREFIX}FORWARD`);
    chain(`${PREFIX}INPUT`);
    chain(`${PREFIX}from-wl`);
    chain(`${PREFIX}to-wl`);
    // Policy and profile chains, one per direction.
    const policyChain = new Map<string, string>();
    for (const p of policies) {
      for (const dir of ['ingress', 'egress'] as const) {
        if (!p.types.includes(dir)) continue;
        const c = `${PREFIX}p${dir === 'ingress' ? 'i' : 'o'}-${h(p.name, 16)}`;
        chain(c);
        policyChain.set(`${p.name}/${dir}`, c);
        for (const r of p[dir]) ruleLines(c, r, p.name);
      }
    }
    const profileChain = new Map<string, string>();
    for (const p of [...profiles.values()].sort((a, b) => a.name.localeCompare(b.name))) {
      for (const dir of ['ingress', 'egress'] as const) {
        const c = `${PREFIX}pr${dir === 'ingress' ? 'i' : 'o'}-${h(p.name, 15)}`;
        chain(c);
        profileChain.set(`${p.name}/${dir}`, c);
        for (const r of p[dir]) ruleLines(c, r, p.name);
      }
    }
    add(`${PREFIX}FORWARD`, `-j MARK --set-xmark 0x0/${MASK}`);
    add(`${PREFIX}FORWARD`, `-i cali+ -j ${PREFIX}from-wl`);
    add(`${PREFIX}FORWARD`, `-o cali+ -j ${PREFIX}to-wl`);
    add(`${PREFIX}FORWARD`, `-m mark --mark ${ACCEPT}/${ACCEPT} -j ACCEPT`);
    add(`${PREFIX}INPUT`, '-i cali+ -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT');
    // IPv6 needs neighbour discovery with the host's link-local gateway.
    if (f === 6) for (const t of [133, 135, 136]) add(`${PREFIX}INPUT`, `-i cali+ -p ipv6-icmp --icmpv6-type ${t} -j ACCEPT`);
    add(`${PREFIX}INPUT`, `-i cali+ -j ${v.endpointToHost === 'accept' ? 'ACCEPT' : 'DROP'}`);

    const bySandbox = new Map<string, string[]>();
    for (const x of local) if (x.ep.sandbox) bySandbox.set(x.ep.sandbox, [...(bySandbox.get(x.ep.sandbox) ?? []), ...addrs(x.ep, f)]);
    for (const x of local) {
      const ifn = x.ep.ifName;
      add(`${PREFIX}from-wl`, `-i ${ifn} -g ${PREFIX}fw-${ifn}`);
      add(`${PREFIX}to-wl`, `-o ${ifn} -g ${PREFIX}tw-${ifn}`);
      for (const dir of ['ingress', 'egress'] as const) {
        const c = `${PREFIX}${dir === 'ingress' ? 'tw' : 'fw'}-${ifn}`;
        chain(c);
        add(c, '-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT');
        add(c, '-m conntrack --ctstate INVALID -j DROP');
        if (dir === 'egress') {
          // Anti-spoofing: only the container's own addresses (on any of its interfaces).
          const own = x.ep.sandbox ? bySandbox.get(x.ep.sandbox)! : addrs(x.ep, f);
          if (own.length === 0) add(c, '-j DROP');
          else if (own.length === 1) add(c, `! -s ${own[0]} -j DROP`);
          else
            add(
              c,
              `-m set ! --match-set ${netSet(
                own.map((a) => `${a}/${f === 4 ? 32 : 128}`),
                f,
              )} src -j DROP`,
            );
        }
        add(c, `-j MARK --set-xmark 0x0/${MASK}`);
        const mine = policies.filter((p) => p.types.includes(dir) && matches(sel(p.selector), x.labels));
        for (const p of mine) {
          add(c, `-m mark --mark 0x0/${PASS} -j ${policyChain.get(`${p.name}/${dir}`)}`);
          add(c, `-m mark --mark ${ACCEPT}/${ACCEPT} -j RETURN`);
        }
        // Selected by a policy and none allowed or passed: denied (Calico's default deny).
        if (mine.length) add(c, `-m mark --mark 0x0/${PASS} -j DROP`);
        add(c, `-j ${profileChain.get(`${x.labels[NETWORK_LABEL]}/${dir}`)}`);
        add(c, `-m mark --mark ${ACCEPT}/${ACCEPT} -j RETURN`);
        add(c, '-j DROP');
      }
    }
    add(`${PREFIX}from-wl`, '-j DROP');
    add(`${PREFIX}to-wl`, '-j DROP');
    chains[f] = declared;
    tables[f] = ['*filter', ...declared.map((c) => `:${c} - [0:0]`), ...lines, 'COMMIT', ''].join('\n');
  }
  return { ipsets: [...ipsets.values()].sort((a, b) => a.name.localeCompare(b.name)), tables, chains };
}
