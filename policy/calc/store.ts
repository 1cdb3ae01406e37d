/**
 * The calculator's output: the Desired maps, changed in place, and the Delta since the last
 * take, accumulated as changes happen. For each object touched since the last take it keeps the
 * value it had then, so the Delta names only objects whose content really differs (an object
 * removed and put back equal is not in it), and for each set the net member changes (an address
 * added then removed cancels out). A set removed and made again in between is reported as its
 * members' difference from then, never as an upsert of a set the backend still holds.
 */
import {
  type Delta,
  type Desired,
  type GroupSpec,
  type PolicySpec,
  type ProfileSpec,
  type SetSpec,
  type EndpointSpec,
  emptyDelta,
} from '../../firewall/desired';

/** A set as the calculator holds it: its members change in place (consumers see a ReadonlySet). */
export interface LiveSet extends SetSpec {
  members: Set<string>;
}

interface Objects {
  policies: PolicySpec;
  profiles: ProfileSpec;
  groups: GroupSpec;
  endpoints: EndpointSpec;
}
export type Kind = keyof Objects;
const KINDS: readonly Kind[] = ['policies', 'profiles', 'groups', 'endpoints'];

interface SetTrack {
  existed: boolean;
  /** The members at the last take, once the set was removed since (pending changes no longer apply). */
  base?: Set<string>;
  /** address → true (added) / false (deleted) since the last take. */
  pend: Map<string, boolean>;
}

export class DesiredStore {
  readonly sets = new Map<string, LiveSet>();
  readonly maps: { [K in Kind]: Map<string, Objects[K]> } = { policies: new Map(), profiles: new Map(), groups: new Map(), endpoints: new Map() };
  readonly desired: Desired;
  private readonly before: { [K in Kind]: Map<string, Objects[K] | undefined> } = {
    policies: new Map(),
    profiles: new Map(),
    groups: new Map(),
    endpoints: new Map(),
  };
  private readonly setTrack = new Map<string, SetTrack>();

  constructor(endpointToHost: 'drop' | 'accept') {
    const m = this.maps;
    this.desired = { endpointToHost, sets: this.sets, policies: m.policies, profiles: m.profiles, groups: m.groups, endpoints: m.endpoints };
  }

  /** Sets (or, with undefined, removes) one object. */
  put<K extends Kind>(kind: K, name: string, value: Objects[K] | undefined): void {
    const map = this.maps[kind] as Map<string, Objects[K]>;
    const before = this.before[kind] as Map<string, Objects[K] | undefined>;
    if (!before.has(name)) before.set(name, map.get(name));
    if (value === undefined) map.delete(name);
    else map.set(name, value);
  }

  private track(name: string): SetTrack {
    let t = this.setTrack.get(name);
    if (!t) this.setTrack.set(name, (t = { existed: this.sets.has(name), pend: new Map() }));
    return t;
  }

  addSet(s: LiveSet): void {
    this.track(s.name);
    this.sets.set(s.name, s);
  }

  removeSet(name: string): void {
    const t = this.track(name);
    const s = this.sets.get(name);
    if (!s) return;
    if (t.existed && !t.base) {
      const base = new Set(s.members);
      for (const [a, added] of t.pend)
        if (added) base.delete(a);
        else base.add(a);
      t.base = base;
      t.pend.clear();
    }
    this.sets.delete(name);
  }

  /** Adds or deletes one member of a set the store holds. */
  member(name: string, addr: string, add: boolean): void {
    const s = this.sets.get(name)!;
    if (s.members.has(addr) === add) return;
    if (add) s.members.add(addr);
    else s.members.delete(addr);
    const t = this.track(name);
    if (!t.existed || t.base) return; // reported whole or by difference from base at take
    const p = t.pend.get(addr);
    if (p === undefined) t.pend.set(addr, add);
    else t.pend.delete(addr);
  }

  /** The changes since the previous take; starts the next interval. */
  take(): Delta {
    const d = emptyDelta();
    for (const [name, t] of this.setTrack) {
      const now = this.sets.get(name);
      if (!t.existed) {
        if (now) d.sets.upsert.push({ ...now, members: new Set(now.members) });
      } else if (!now) d.sets.remove.push(name);
      else if (t.base) {
        const add = [...now.members].filter((a) => !t.base!.has(a));
        const del = [...t.base].filter((a) => !now.members.has(a));
        if (add.length || del.length) d.sets.members.push({ name, add, del });
      } else if (t.pend.size) {
        const add: string[] = [];
        const del: string[] = [];
        for (const [a, added] of t.pend) (added ? add : del).push(a);
        d.sets.members.push({ name, add, del });
      }
    }
    this.setTrack.clear();
    for (const k of KINDS) this.takeKind(k, d);
    return d;
  }

  private takeKind<K extends Kind>(kind: K, d: Delta): void {
    const map = this.maps[kind] as Map<string, Objects[K]>;
    const out = d[kind] as { upsert: Objects[K][]; remove: string[] };
    for (const [name, was] of this.before[kind] as Map<string, Objects[K] | undefined>) {
      const now = map.get(name);
      if (!now) {
        if (was) out.remove.push(name);
      } else if (!was || (was !== now && JSON.stringify(was) !== JSON.stringify(now))) out.upsert.push(now);
    }
    this.before[kind].clear();
  }
}
