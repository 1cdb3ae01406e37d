/**
 * The desired firewall of one host computed from scratch, as plainly as possible: the reference
 * the incremental calculator must equal after every event (and the cost it is measured
 * against). Shares only the per-record compilation (compile.ts) with the calculator.
 *
 * Records that claim the same identity (two keys holding a policy or profile of one name, a
 * network of one host and id, local endpoints with one interface) are settled by the smallest
 * JSON text, which depends on nothing but the records. A policy or profile that cannot be
 * compiled is skipped (a profile fails closed: no rules).
 */
import { type Desired, DIRS, type EndpointSpec, type Family, type GroupSpec, type PolicySpec, type ProfileSpec, type SetSpec } from '../../firewall/desired';
import type { EndpointRecord, NetworkRecord, NetworkSetRecord, PolicyRecord, ProfileRecord } from '../../lib/datastore/records';
import { matches } from '../selector';
import {
  type CompiledPolicy,
  type CompiledProfile,
  type SetRef,
  byOrder,
  chooseProfile,
  closedProfile,
  compilePolicy,
  compileProfile,
  containerKey,
  cover,
  endpointLabels,
  groupId,
  networkKey,
  netSetMembers,
  ownAddrs,
  validIfName,
} from './compile';

export interface CalcInput {
  host: string;
  endpointToHost: 'drop' | 'accept';
  endpoints: EndpointRecord[];
  networks: NetworkRecord[];
  policies: PolicyRecord[];
  profiles: ProfileRecord[];
  /** GlobalNetworkSets: matched by rules' selectors (never by a policy's own selector). */
  networkSets?: NetworkSetRecord[];
}

/** One record per identity: the one with the smallest JSON text. */
export function settle<T>(recs: readonly T[], id: (r: T) => string): Map<string, T> {
  const out = new Map<string, T>();
  const json = new Map<T, string>();
  const text = (r: T) => json.get(r) ?? (json.set(r, JSON.stringify(r)), json.get(r)!);
  for (const rec of recs) {
    const k = id(rec);
    const cur = out.get(k);
    // Texts are compared only where two records claim one identity.
    if (cur === undefined || text(rec) < text(cur)) out.set(k, rec);
  }
  return out;
}

export function computeDesired(input: CalcInput): Desired {
  const nets = settle(input.networks, (n) => networkKey(n.host, n.id));
  const stored = settle(input.profiles, (p) => p.name);
  const all = input.endpoints.map((ep) => {
    const net = nets.get(networkKey(ep.host, ep.network));
    const netName = net?.name ?? ep.network;
    return { ep, netName, internal: !!net?.internal, labels: endpointLabels(ep, netName) };
  });
  const containers = new Map<string, EndpointRecord[]>();
  for (const { ep } of all) {
    const k = containerKey(ep);
    if (k) {
      const c = containers.get(k);
      if (c) c.push(ep);
      else containers.set(k, [ep]);
    }
  }
  const memo = new Map<string, string[]>();
  const containerAddrs = (ep: EndpointRecord, f: Family): string[] => {
    const k = containerKey(ep);
    if (!k) return ownAddrs(ep, f);
    let a = memo.get(`${f}${k}`);
    if (!a) memo.set(`${f}${k}`, (a = [...new Set(containers.get(k)!.flatMap((x) => ownAddrs(x, f)))]));
    return a;
  };
  const winners = new Set(
    settle(
      input.endpoints.filter((ep) => ep.host === input.host && validIfName(ep.ifName)),
      (ep) => ep.ifName,
    ).values(),
  );
  const local = all.filter((x) => winners.has(x.ep));
  const policies: CompiledPolicy[] = [];
  for (const rec of settle(input.policies, (p) => p.name).values()) {
    try {
      policies.push(compilePolicy(rec));
    } catch {
      // skipped, as the calculator does (it reports it)
    }
  }
  policies.sort(byOrder);

  const refs = new Map<string, SetRef>();
  const used = (rs: readonly SetRef[]) => rs.forEach((r) => refs.set(r.name, r));
  const outPolicies = new Map<string, PolicySpec>();
  const groups = new Map<string, GroupSpec>();
  const endpoints = new Map<string, EndpointSpec>();
  const internalHere = new Map<string, boolean>();
  for (const x of local) {
    const mine = policies.filter((p) => p.types.size && matches(p.sel, x.labels));
    for (const p of mine) {
      outPolicies.set(p.name, p.spec);
      used(p.refs);
    }
    const tiers = DIRS.map((dir) => {
      const names = mine.filter((p) => p.types.has(dir)).map((p) => p.name);
      if (!names.length) return { profile: x.netName };
      const id = groupId(dir, names);
      groups.set(id, { id, dir, policies: names });
      return { group: id, profile: x.netName };
    });
    const addrs = { 4: [...containerAddrs(x.ep, 4)].sort(), 6: [...containerAddrs(x.ep, 6)].sort() };
    endpoints.set(x.ep.ifName, { ifName: x.ep.ifName, addrs, ingress: tiers[0], egress: tiers[1] });
    internalHere.set(x.netName, (internalHere.get(x.netName) ?? false) || x.internal);
  }
  const profiles = new Map<string, ProfileSpec>();
  for (const [name, internal] of internalHere) {
    let c: CompiledProfile;
    try {
      c = compileProfile(chooseProfile(stored.get(name), name, internal));
    } catch {
      c = closedProfile(name);
    }
    profiles.set(name, c.spec);
    used(c.refs);
  }
  // A network set one of whose CIDRs does not parse is left out whole (the calculator reports it).
  const netsets: Array<{ labels: Record<string, string>; nets: Record<Family, string[]> }> = [];
  for (const ns of settle(input.networkSets ?? [], (n) => n.name).values()) {
    try {
      netsets.push({ labels: ns.labels, nets: { 4: netSetMembers(ns.nets, 4), 6: netSetMembers(ns.nets, 6) } });
    } catch {
      // skipped
    }
  }
  const sets = new Map<string, SetSpec>();
  for (const r of refs.values()) {
    if (r.kind === 'net') sets.set(r.name, { name: r.name, family: r.family, kind: 'net', members: new Set(r.members) });
    else {
      const addrs = all.filter((x) => matches(r.sel, x.labels)).flatMap((x) => containerAddrs(x.ep, r.family));
      const nets = netsets.filter((n) => matches(r.sel, n.labels)).flatMap((n) => n.nets[r.family]);
      sets.set(r.name, { name: r.name, family: r.family, kind: 'net', members: cover([...addrs, ...nets]) });
    }
  }
  return { endpointToHost: input.endpointToHost, sets, policies: outPolicies, profiles, groups, endpoints };
}
