/**
 * The incremental policy calculator (Felix's calculation graph, in our own shape): etcd's
 * records in, this host's desired firewall (firewall/desired.ts) out, with the Delta of each
 * change accumulated as it happens. Each event computes only what it affects:
 * - a remote endpoint: the memberships of the selectors that could match it (members.ts);
 * - a local endpoint: that, plus the policies selecting it (one match per policy), its groups,
 *   its profile and its own EndpointSpec;
 * - a policy: its spec, its selector against local endpoints only, and the groups and specs
 *   of the endpoints it selected or selects;
 * - a profile or network: the endpoints of that network, the profile's spec;
 * - a network set: the memberships of the selectors that could match it, as for a remote
 *   endpoint (its CIDRs are its addresses); policies' own selectors never match one.
 * Objects in the desired state are reference-counted by what uses them (sets by the rules of
 * policies and profiles in use, policies and groups by local endpoints, profiles by local
 * endpoints of the network); an object whose count falls to zero is removed at the end of the
 * event, so an object released and taken again within one event is never rebuilt.
 *
 * `computeDesired` (reference.ts) computes the same from scratch: the two must always agree.
 */
import { DIRS, type Desired, type Delta, type Dir, type EndpointSpec, type GroupSpec, type Tier } from '../../firewall/desired';
import { keys } from '../../lib/datastore/keys';
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
  endpointLabels,
  groupId,
  networkKey,
  netSetMembers,
  ownAddrs,
  endpointProblem,
  validIfName,
} from './compile';
import { type Container, type Member, Memberships } from './members';
import { Registry } from './registry';
import { DesiredStore } from './store';

export { computeDesired, type CalcInput } from './reference';

export interface CalculatorOptions {
  host: string;
  endpointToHost: 'drop' | 'accept';
  /** A record that cannot be used (a policy whose selector does not parse, …): it is skipped, the rest computed. */
  onBad?: (key: string, err: Error) => void;
}

interface Ep extends Member {
  key: string;
  rec: EndpointRecord;
  local: boolean;
  netKey: string;
  netName: string;
  internal: boolean;
  /** The local endpoint that holds its interface (one per ifName). */
  active: boolean;
  policies: Set<PolEntry>;
  groups: [string | undefined, string | undefined];
  profile?: ProfState;
  spec?: EndpointSpec;
}

interface PolEntry extends CompiledPolicy {
  selected: Set<Ep>;
  exposed: boolean;
}

interface ProfState {
  name: string;
  users: Set<Ep>;
  internal: number;
  chosen?: string;
  compiled?: CompiledProfile;
}

function addTo<V>(m: Map<string, Set<V>>, k: string, v: V): Set<V> {
  let s = m.get(k);
  if (!s) m.set(k, (s = new Set()));
  s.add(v);
  return s;
}
function delFrom<V>(m: Map<string, Set<V>>, k: string, v: V): void {
  const s = m.get(k);
  if (s?.delete(v) && !s.size) m.delete(k);
}

export class PolicyCalculator {
  private readonly store: DesiredStore;
  private readonly mem: Memberships;
  private readonly nets = new Registry<NetworkRecord>((n) => networkKey(n.host, n.id));
  private readonly pols = new Registry<PolicyRecord>((p) => p.name);
  private readonly profs = new Registry<ProfileRecord>((p) => p.name);
  private readonly nsets = new Registry<NetworkSetRecord>((n) => n.name);
  /** Network sets by name, as members of selector sets. */
  private readonly netsetMembers = new Map<string, Member>();
  private readonly eps = new Map<string, Ep>();
  private readonly byNetwork = new Map<string, Set<Ep>>();
  private readonly byIfName = new Map<string, Set<Ep>>();
  private readonly active = new Map<string, Ep>();
  private readonly policies = new Map<string, PolEntry>();
  private readonly profiles = new Map<string, ProfState>();
  private readonly groups = new Map<string, { spec: GroupSpec; users: number }>();
  private readonly netSets = new Map<string, { users: number }>();
  private readonly ifNames = new Set<string>();
  private readonly garbage = new Map<object, () => void>();

  constructor(private readonly opts: CalculatorOptions) {
    this.store = new DesiredStore(opts.endpointToHost);
    this.mem = new Memberships(this.store);
  }

  upsertEndpoint(key: string, rec: EndpointRecord): void {
    const old = this.eps.get(key);
    // Compared as text, recomputed rather than kept: it would be most of an endpoint's memory.
    if (old && JSON.stringify(old.rec) === JSON.stringify(rec)) return;
    if (old) this.detach(old);
    this.attach(this.make(key, rec));
    this.sweep();
  }

  removeEndpoint(key: string): void {
    const old = this.eps.get(key);
    if (!old) return;
    this.detach(old);
    this.sweep();
  }

  upsertNetwork(key: string, rec: NetworkRecord): void {
    for (const id of this.nets.upsert(key, rec)) this.networkChanged(id);
    this.sweep();
  }

  removeNetwork(key: string): void {
    for (const id of this.nets.remove(key)) this.networkChanged(id);
    this.sweep();
  }

  upsertPolicy(key: string, rec: PolicyRecord): void {
    for (const name of this.pols.upsert(key, rec)) this.policyChanged(name);
    this.sweep();
  }

  removePolicy(key: string): void {
    for (const name of this.pols.remove(key)) this.policyChanged(name);
    this.sweep();
  }

  upsertProfile(key: string, rec: ProfileRecord): void {
    for (const name of this.profs.upsert(key, rec)) this.profileChanged(name);
    this.sweep();
  }

  removeProfile(key: string): void {
    for (const name of this.profs.remove(key)) this.profileChanged(name);
    this.sweep();
  }

  upsertNetworkSet(key: string, rec: NetworkSetRecord): void {
    for (const name of this.nsets.upsert(key, rec)) this.networkSetChanged(name);
    this.sweep();
  }

  removeNetworkSet(key: string): void {
    for (const name of this.nsets.remove(key)) this.networkSetChanged(name);
    this.sweep();
  }

  /** The current desired state; cheap (no deep copy; objects are immutable and shared, except that a set's members change in place). */
  desired(): Desired {
    return this.store.desired;
  }

  /** What changed since the previous takeDelta() (or since construction); resets it. */
  takeDelta(): Delta {
    this.sweep();
    return this.store.take();
  }

  /** ifNames of local endpoints present in desired() now. */
  localInterfaces(): ReadonlySet<string> {
    return this.ifNames;
  }

  stats(): { endpoints: number; localEndpoints: number; policies: number; networkSets: number; sets: number } {
    return {
      endpoints: this.eps.size,
      localEndpoints: this.active.size,
      policies: this.policies.size,
      networkSets: this.netsetMembers.size,
      sets: this.store.sets.size,
    };
  }

  private bad(key: string, err: unknown): void {
    this.opts.onBad?.(key, err instanceof Error ? err : new Error(String(err)));
  }

  private sweep(): void {
    while (this.garbage.size) {
      const fns = [...this.garbage.values()];
      this.garbage.clear();
      for (const f of fns) f();
    }
    this.mem.sweep();
  }

  // --- endpoints ---

  private make(key: string, rec: EndpointRecord): Ep {
    const netKey = networkKey(rec.host, rec.network);
    const net = this.nets.get(netKey)?.rec;
    const netName = net?.name ?? rec.network;
    return {
      key,
      rec,
      local: rec.host === this.opts.host && validIfName(rec.ifName),
      netKey,
      netName,
      internal: !!net?.internal,
      labels: endpointLabels(rec, netName),
      addrs: [ownAddrs(rec, 4), ownAddrs(rec, 6)],
      container: this.mem.container(containerKey(rec)),
      matched: new Set(),
      active: false,
      policies: new Set(),
      groups: [undefined, undefined],
    };
  }

  private attach(ep: Ep): void {
    this.eps.set(ep.key, ep);
    addTo(this.byNetwork, ep.netKey, ep);
    this.mem.addEndpoint(ep);
    const problem = endpointProblem(ep.rec, ep.rec.host === this.opts.host);
    if (problem) this.bad(ep.key, new Error(problem));
    this.refreshSiblings(ep.container, ep);
    if (!ep.local) return;
    const rivals = addTo(this.byIfName, ep.rec.ifName, ep);
    if (rivals.size > 1) this.bad(ep.key, new Error(`interface ${ep.rec.ifName} is claimed by ${rivals.size} endpoint records; one is used`));
    this.resolveIfName(ep.rec.ifName);
  }

  private detach(ep: Ep): void {
    this.mem.removeEndpoint(ep);
    this.eps.delete(ep.key);
    delFrom(this.byNetwork, ep.netKey, ep);
    this.refreshSiblings(ep.container, ep);
    if (!ep.local) return;
    delFrom(this.byIfName, ep.rec.ifName, ep);
    if (ep.active) this.deactivate(ep);
    this.resolveIfName(ep.rec.ifName);
  }

  /** Other local endpoints of the container send from its addresses too. */
  private refreshSiblings(c: Container, except: Ep): void {
    for (const x of c.members) if (x !== except && (x as Ep).active) this.refreshSpec(x as Ep);
  }

  private resolveIfName(ifName: string): void {
    let best: Ep | undefined;
    const cands = this.byIfName.get(ifName);
    if (cands?.size === 1) [best] = cands;
    else if (cands) {
      let bestJson = '';
      for (const x of cands) {
        const json = JSON.stringify(x.rec);
        if (!best || json < bestJson || (json === bestJson && x.key < best.key)) [best, bestJson] = [x, json];
      }
    }
    const cur = this.active.get(ifName);
    if (cur === best) return;
    if (cur) this.deactivate(cur);
    if (best) this.activate(best);
  }

  private activate(ep: Ep): void {
    ep.active = true;
    this.active.set(ep.rec.ifName, ep);
    for (const p of this.policies.values()) if (p.types.size && matches(p.sel, ep.labels)) this.select(p, ep);
    let ps = this.profiles.get(ep.netName);
    if (!ps) this.profiles.set(ep.netName, (ps = { name: ep.netName, users: new Set(), internal: 0 }));
    ps.users.add(ep);
    if (ep.internal) ps.internal++;
    ep.profile = ps;
    this.refreshProfile(ps);
    this.refreshSpec(ep);
  }

  private deactivate(ep: Ep): void {
    for (const p of ep.policies) this.unselect(p, ep);
    for (const id of ep.groups) if (id) this.releaseGroup(id);
    ep.groups = [undefined, undefined];
    const ps = ep.profile!;
    ps.users.delete(ep);
    if (ep.internal) ps.internal--;
    ep.profile = undefined;
    this.refreshProfile(ps);
    this.store.put('endpoints', ep.rec.ifName, undefined);
    this.ifNames.delete(ep.rec.ifName);
    ep.spec = undefined;
    ep.active = false;
    this.active.delete(ep.rec.ifName);
  }

  /** An active local endpoint's groups and EndpointSpec, from its policies, container and network. */
  private refreshSpec(ep: Ep): void {
    const tiers = DIRS.map((dir, i): Tier => {
      const id = this.groupFor(ep, dir, i);
      return id ? { group: id, profile: ep.netName } : { profile: ep.netName };
    });
    const c = ep.container.members;
    const addrs = (i: 0 | 1) => (c.size > 1 ? [...new Set([...c].flatMap((x) => x.addrs[i]))] : [...ep.addrs[i]]).sort();
    const spec: EndpointSpec = { ifName: ep.rec.ifName, addrs: { 4: addrs(0), 6: addrs(1) }, ingress: tiers[0], egress: tiers[1] };
    if (ep.spec && JSON.stringify(ep.spec) === JSON.stringify(spec)) return;
    ep.spec = spec;
    this.store.put('endpoints', spec.ifName, spec);
    this.ifNames.add(spec.ifName);
  }

  private groupFor(ep: Ep, dir: Dir, i: number): string | undefined {
    const names = [...ep.policies]
      .filter((p) => p.types.has(dir))
      .sort(byOrder)
      .map((p) => p.name);
    const id = names.length ? groupId(dir, names) : undefined;
    const old = ep.groups[i];
    if (id === old) return id;
    if (id) {
      let g = this.groups.get(id);
      if (!g) {
        this.groups.set(id, (g = { spec: { id, dir, policies: names }, users: 0 }));
        this.store.put('groups', id, g.spec);
      }
      g.users++;
    }
    if (old) this.releaseGroup(old);
    ep.groups[i] = id;
    return id;
  }

  private releaseGroup(id: string): void {
    const g = this.groups.get(id)!;
    if (--g.users) return;
    this.garbage.set(g, () => {
      if (g.users || this.groups.get(id) !== g) return;
      this.groups.delete(id);
      this.store.put('groups', id, undefined);
    });
  }

  // --- networks ---

  private networkChanged(id: string): void {
    const net = this.nets.get(id)?.rec;
    for (const ep of [...(this.byNetwork.get(id) ?? [])]) {
      const name = net?.name ?? ep.rec.network;
      const internal = !!net?.internal;
      if (name !== ep.netName) {
        // Its `calico/network` label and profile change: as if the endpoint were upserted anew.
        this.detach(ep);
        this.attach(this.make(ep.key, ep.rec));
      } else if (internal !== ep.internal) {
        ep.internal = internal;
        if (!ep.profile) continue;
        ep.profile.internal += internal ? 1 : -1;
        this.refreshProfile(ep.profile);
      }
    }
  }

  // --- network sets ---

  /** A network set is a member of selector sets only: it is never local, never selected by a policy. */
  private networkSetChanged(name: string): void {
    const old = this.netsetMembers.get(name);
    if (old) {
      this.mem.removeEndpoint(old);
      this.netsetMembers.delete(name);
    }
    const win = this.nsets.get(name);
    if (!win) return;
    let addrs: Member['addrs'];
    try {
      addrs = [netSetMembers(win.rec.nets, 4), netSetMembers(win.rec.nets, 6)];
    } catch (err) {
      // Left out whole, as the reference does, and reported (records are checked when written).
      return this.bad(win.key, err);
    }
    const m: Member = { labels: win.rec.labels, addrs, container: this.mem.container(undefined), matched: new Set() };
    this.netsetMembers.set(name, m);
    this.mem.addEndpoint(m);
  }

  // --- policies ---

  /**
   * One entry per policy name, updated in place: a change of rules alone swaps its spec and sets
   * (no endpoint touched); a change of order or types regroups the endpoints it selects; a change
   * of selector re-evaluates it against local endpoints only.
   */
  private policyChanged(name: string): void {
    const win = this.pols.get(name);
    let c: CompiledPolicy | undefined;
    if (win)
      try {
        c = compilePolicy(win.rec);
      } catch (err) {
        this.bad(win.key, err);
      }
    let p = this.policies.get(name);
    const touched = new Set<Ep>();
    if (!c) {
      if (!p) return;
      this.policies.delete(name);
      for (const ep of [...p.selected]) {
        this.unselect(p, ep);
        touched.add(ep);
      }
    } else if (!p) {
      this.policies.set(name, (p = { ...c, selected: new Set(), exposed: false }));
      if (c.types.size)
        for (const ep of this.active.values())
          if (matches(c.sel, ep.labels)) {
            this.select(p, ep);
            touched.add(ep);
          }
    } else {
      const regroup = p.order !== c.order || p.types.size !== c.types.size || [...c.types].some((t) => !p!.types.has(t));
      const reselect = p.canon !== c.canon || !p.types.size !== !c.types.size;
      // The new rules take their sets before the old ones let go, so shared sets stay.
      if (p.exposed) {
        this.acquire(c.refs);
        this.release(p.refs);
      }
      Object.assign(p, c);
      if (p.exposed) this.store.put('policies', name, p.spec);
      if (reselect) {
        for (const ep of [...p.selected])
          if (!c.types.size || !matches(c.sel, ep.labels)) {
            this.unselect(p, ep);
            touched.add(ep);
          }
        if (c.types.size)
          for (const ep of this.active.values())
            if (!p.selected.has(ep) && matches(c.sel, ep.labels)) {
              this.select(p, ep);
              touched.add(ep);
            }
      }
      if (regroup) for (const ep of p.selected) touched.add(ep);
    }
    for (const ep of touched) this.refreshSpec(ep);
  }

  private select(p: PolEntry, ep: Ep): void {
    ep.policies.add(p);
    p.selected.add(ep);
    if (p.exposed) return;
    p.exposed = true;
    this.acquire(p.refs);
    this.store.put('policies', p.name, p.spec);
  }

  private unselect(p: PolEntry, ep: Ep): void {
    ep.policies.delete(p);
    p.selected.delete(ep);
    if (p.selected.size) return;
    this.garbage.set(p, () => {
      if (p.selected.size || !p.exposed) return;
      p.exposed = false;
      this.release(p.refs);
      if (this.store.maps.policies.get(p.name) === p.spec) this.store.put('policies', p.name, undefined);
    });
  }

  // --- profiles ---

  private profileChanged(name: string): void {
    const ps = this.profiles.get(name);
    if (ps) this.refreshProfile(ps);
  }

  /** The profile a network name uses here, recompiled only when the record it comes from changed. */
  private refreshProfile(ps: ProfState): void {
    if (!ps.users.size) {
      this.garbage.set(ps, () => {
        if (ps.users.size || this.profiles.get(ps.name) !== ps) return;
        this.profiles.delete(ps.name);
        if (ps.compiled) this.release(ps.compiled.refs);
        this.store.put('profiles', ps.name, undefined);
      });
      return;
    }
    const stored = this.profs.get(ps.name);
    const rec = chooseProfile(stored?.rec, ps.name, ps.internal > 0);
    const json = stored && rec === stored.rec ? stored.json : JSON.stringify(rec);
    if (json === ps.chosen) return;
    let c: CompiledProfile;
    try {
      c = compileProfile(rec);
    } catch (err) {
      // Fail closed: the network's endpoints get a profile with no rules.
      this.bad(stored && rec === stored.rec ? stored.key : keys.profile(ps.name), err);
      c = closedProfile(ps.name);
    }
    this.acquire(c.refs);
    if (ps.compiled) this.release(ps.compiled.refs);
    ps.compiled = c;
    ps.chosen = json;
    this.store.put('profiles', ps.name, c.spec);
  }

  // --- sets ---

  private acquire(refs: readonly SetRef[]): void {
    for (const r of refs) {
      if (r.kind === 'sel') {
        this.mem.acquire(r.canon, r.sel, r.family);
        continue;
      }
      let n = this.netSets.get(r.name);
      if (!n) {
        this.netSets.set(r.name, (n = { users: 0 }));
        if (!this.store.sets.has(r.name)) this.store.addSet({ name: r.name, family: r.family, kind: 'net', members: new Set(r.members) });
      }
      n.users++;
    }
  }

  private release(refs: readonly SetRef[]): void {
    for (const r of refs) {
      if (r.kind === 'sel') {
        this.mem.release(r.canon, r.family);
        continue;
      }
      const n = this.netSets.get(r.name)!;
      if (--n.users) continue;
      this.garbage.set(n, () => {
        if (n.users || this.netSets.get(r.name) !== n) return;
        this.netSets.delete(r.name);
        this.store.removeSet(r.name);
      });
    }
  }
}
