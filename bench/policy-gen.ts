/**
 * Synthetic endpoints and policy sets for bench:policy. Deterministic, so every run programs the
 * same rules. Rule k of a set is one of four shapes (selector + port, nets + port, udp deny,
 * compound selector + port range); none of them matches TCP to MEASURED_PORT from a `role ==
 * 'client'` endpoint, so the optional final allow for that is reached only after every other rule.
 */
import type { PolicyRecord, Rule } from '../policy/model';
import type { EndpointRecord, NetworkRecord } from '../lib/datastore/records';

export const MEASURED_PORT = 7777;
export const BLOCKED_PORT = 7778;
export const RULES_PER_POLICY = 10;

const since = '2024-01-01T00:00:00.000Z';

export function benchNetwork(host: string, id = 'a'.repeat(64)): NetworkRecord {
  return { id, host, name: 'benchnet', ipv4Pools: ['10.66.0.0/16'], ipv6Pools: [], ipv6: false, options: {}, createdAt: since };
}

/** Labels a filler endpoint gets: `app` in 10 groups, `role` in 50. */
export function fillerLabels(i: number): Record<string, string> {
  return { app: `app${i % 10}`, role: `r${i % 50}` };
}

/** Endpoint i of a synthetic view: 10.66.x.y/32, no interface needed (iptables matches names). */
export function syntheticEndpoint(host: string, network: string, i: number): EndpointRecord {
  const id = `${i.toString(16).padStart(8, '0')}${'e'.repeat(56)}`;
  return {
    id,
    host,
    network,
    ifName: `cali${id.slice(0, 11)}`,
    mac: '02:00:00:00:00:01',
    ipv4: [`10.66.${(i >> 8) & 255}.${i & 255}/32`],
    ipv6: [],
    sandbox: `/var/run/netns/bench-${i}`,
    labels: fillerLabels(i),
    createdAt: since,
  };
}

function rule(k: number, side: 'source' | 'destination'): Rule {
  // Ingress rules match on the source; egress rules on the destination (with the port).
  const r = (match: Record<string, unknown>, ports: Array<number | string>): Rule =>
    side === 'source'
      ? { action: 'allow', protocol: 'tcp', source: match, destination: { ports } }
      : { action: 'allow', protocol: 'tcp', destination: { ...match, ports } };
  switch (k % 4) {
    case 0:
      return r({ selector: `role == 'r${k % 50}'` }, [1000 + (k % 1000)]);
    case 1:
      return r({ nets: [`10.200.${k % 250}.0/24`] }, [2000 + (k % 1000)]);
    case 2:
      return { action: 'deny', protocol: 'udp', destination: { ports: [3000 + (k % 1000)] } };
    default: {
      const lo = 5000 + (k % 100) * 10;
      return r({ selector: `app == 'app${k % 10}' && role != 'r${k % 7}'` }, [`${lo}:${lo + 9}`]);
    }
  }
}

export interface PolicySetOptions {
  /** Every policy selects every endpoint with an `app` label (worst case for the packet path). */
  selectAll?: boolean;
  /** Every fifth policy is an egress policy (off for the packet path: only the server's side is measured). */
  egress?: boolean;
  /** Appends `allow tcp from role == 'client' to MEASURED_PORT` as the very last rule. */
  allowAtEnd?: boolean;
}

/** `rules` rules over ceil(rules / 10) policies, in order. */
export function makePolicies(rules: number, o: PolicySetOptions = {}): PolicyRecord[] {
  const out: PolicyRecord[] = [];
  for (let p = 0; p * RULES_PER_POLICY < rules; p++) {
    const dir = o.egress && p % 5 === 4 ? 'egress' : 'ingress';
    const selector = o.selectAll ? ['has(app)', "app != 'none'", 'all()'][p % 3] : `app == 'app${p % 10}'`;
    const rs: Rule[] = [];
    for (let k = p * RULES_PER_POLICY; k < Math.min(rules, (p + 1) * RULES_PER_POLICY); k++) rs.push(rule(k, dir === 'ingress' ? 'source' : 'destination'));
    out.push({
      name: `bench-${String(p).padStart(4, '0')}`,
      order: 100 + p,
      selector,
      types: [dir],
      ingress: dir === 'ingress' ? rs : [],
      egress: dir === 'egress' ? rs : [],
    });
  }
  if (o.allowAtEnd)
    out[out.length - 1].ingress.push({ action: 'allow', protocol: 'tcp', source: { selector: "role == 'client'" }, destination: { ports: [MEASURED_PORT] } });
  return out;
}

/** A copy of the set with one rule's port changed (the steady-state "someone edited a rule"). */
export function changeOneRule(policies: PolicyRecord[], which: number, port: number): PolicyRecord[] {
  const out = structuredClone(policies);
  const p = out[which % out.length];
  const rs = p.ingress.length ? p.ingress : p.egress;
  rs[0] = { ...rs[0], protocol: 'tcp', destination: { ...rs[0].destination, ports: [port] } };
  return out;
}
