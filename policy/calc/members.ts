/**
 * Selector sets kept up to date as endpoints come and go: for each selector some local object
 * needs, which endpoints (of every host) match it and so which addresses its sets hold. A
 * container on several networks (one sandbox on one host) is in a selector's set with all its
 * addresses once any of its endpoints matches, so membership is counted per container and
 * addresses are reference-counted per set.
 *
 * Cost: an endpoint event evaluates only the selectors that could match it: those anchored on
 * one of its label pairs (`k == v`, `k in {…}`) or keys (`has(k)`), plus the few that cannot be
 * anchored (`!=`, `!`, `||`, `all()`). A new selector is filled from the label index (the
 * endpoints with its anchor's labels), all endpoints only when it has no anchor. Dropping a
 * selector touches only its members. Nothing scans endpoints an event does not concern.
 */
import type { Family } from '../../firewall/desired';
import { type Cidr, containsCidr } from '../../lib/ip';
import { type Selector, matches } from '../selector';
import { memberCidr, selectorSetName } from './compile';
import type { DesiredStore } from './store';

/**
 * One selector set's members of one family, counted by how many (container, endpoint) pairs
 * and network sets give each, and what of them the set shows: the members inside no other
 * (compile.ts `cover`). Single addresses are only ever inside networks, so while no network set
 * is matched this is a counted map and nothing is parsed; a network joining or leaving walks
 * the members once to hide or show those inside it.
 */
export class Cover {
  private readonly counts = new Map<string, number>();
  /** The members that are networks (written with a prefix length), parsed. */
  private readonly nets = new Map<string, Cidr>();

  constructor(private readonly emit: (member: string, add: boolean) => void) {}

  /** Inside another member: only a network can hold one. */
  private covered(m: string): boolean {
    if (this.nets.size <= (this.nets.has(m) ? 1 : 0)) return false;
    const c = memberCidr(m);
    for (const [t, n] of this.nets) if (t !== m && containsCidr(n, c)) return true;
    return false;
  }

  /** The members inside `net` other than itself. */
  private *inside(net: string, c: Cidr): Generator<string> {
    for (const x of this.counts.keys()) if (x !== net && containsCidr(c, memberCidr(x))) yield x;
  }

  add(m: string): void {
    const n = this.counts.get(m) ?? 0;
    this.counts.set(m, n + 1);
    if (n) return;
    const c = m.includes('/') ? memberCidr(m) : undefined;
    // Hidden members of a hidden network are hidden by what hides it, too.
    if (this.covered(m)) {
      if (c) this.nets.set(m, c);
      return;
    }
    if (c) for (const x of this.inside(m, c)) if (!this.covered(x)) this.emit(x, false);
    if (c) this.nets.set(m, c);
    this.emit(m, true);
  }

  remove(m: string): void {
    const n = this.counts.get(m)!;
    if (n > 1) return void this.counts.set(m, n - 1);
    this.counts.delete(m);
    const c = this.nets.get(m);
    const hidden = this.covered(m);
    this.nets.delete(m);
    if (hidden) return;
    this.emit(m, false);
    if (c) for (const x of this.inside(m, c)) if (!this.covered(x)) this.emit(x, true);
  }

  /** What the set shows now. */
  *visible(): Generator<string> {
    for (const m of this.counts.keys()) if (!this.covered(m)) yield m;
  }
}

export interface Container {
  key?: string;
  members: Set<Member>;
}

/** What the calculator's endpoint (or network set) state must carry for membership. */
export interface Member {
  labels: Record<string, string>;
  /** Own addresses (a network set's: its CIDRs, compile.ts netSetMembers), per family: [v4, v6]. */
  addrs: readonly [readonly string[], readonly string[]];
  container: Container;
  matched: Set<SelEntry>;
}

type Anchor = { kv: Array<[string, string]> } | { key: string } | undefined;

export interface SelEntry {
  canon: string;
  sel: Selector;
  anchor: Anchor;
  names: readonly [string, string];
  /** Rules using the set, per family. */
  users: [number, number];
  /** The members per family, counted by the (matching container, endpoint) pairs and network sets giving them. */
  covers: [Cover, Cover];
  /** Container → its endpoints that match. */
  containers: Map<Container, number>;
}

const fi = (f: Family) => (f === 4 ? 0 : 1);
const kv = (k: string, v: string) => `${k}\u0000${v}`;

function anchorOf(s: Selector): Anchor {
  switch (s.op) {
    case 'eq':
      return { kv: [[s.key, s.value]] };
    case 'in':
      return { kv: [...new Set(s.values)].map((v) => [s.key, v]) };
    case 'has':
      return { key: s.key };
    case 'and': {
      let best: Anchor;
      for (const a of s.args) {
        const x = anchorOf(a);
        if (x && 'kv' in x) return x;
        best ??= x;
      }
      return best;
    }
    default:
      return undefined;
  }
}

function addTo<K, V>(m: Map<K, Set<V>>, k: K, v: V): void {
  const s = m.get(k);
  if (s) s.add(v);
  else m.set(k, new Set([v]));
}
function delFrom<K, V>(m: Map<K, Set<V>>, k: K, v: V): void {
  const s = m.get(k);
  if (s?.delete(v) && !s.size) m.delete(k);
}

export class Memberships {
  private readonly sels = new Map<string, SelEntry>();
  private readonly byPair = new Map<string, Set<SelEntry>>();
  private readonly byKey = new Map<string, Set<SelEntry>>();
  private readonly loose = new Set<SelEntry>();
  private readonly all = new Set<Member>();
  /** label key → value → endpoints, to fill a new selector from its anchor. */
  private readonly labelIndex = new Map<string, Map<string, Set<Member>>>();
  private readonly containers = new Map<string, Container>();
  private readonly garbage = new Set<SelEntry>();

  constructor(private readonly store: DesiredStore) {}

  get selectors(): number {
    return this.sels.size;
  }

  /** The container an endpoint joins: shared by sandbox, or its own. */
  container(key: string | undefined): Container {
    if (!key) return { members: new Set() };
    let c = this.containers.get(key);
    if (!c) this.containers.set(key, (c = { key, members: new Set() }));
    return c;
  }

  private exposed(e: SelEntry, i: number): boolean {
    return this.store.sets.has(e.names[i]);
  }

  private addAddrs(e: SelEntry, m: Member, sign: 1 | -1): void {
    for (let i = 0; i < 2; i++)
      for (const a of m.addrs[i])
        if (sign === 1) e.covers[i].add(a);
        else e.covers[i].remove(a);
  }

  /** A matching endpoint's container joins the selector (all its addresses) or adds only that endpoint's. */
  private join(e: SelEntry, m: Member, filling: boolean): void {
    m.matched.add(e);
    const n = e.containers.get(m.container) ?? 0;
    e.containers.set(m.container, n + 1);
    if (n === 0) for (const x of m.container.members) this.addAddrs(e, x, 1);
    else if (!filling) this.addAddrs(e, m, 1);
  }

  private *candidates(labels: Record<string, string>): Generator<SelEntry> {
    for (const k of Object.keys(labels)) {
      const p = this.byPair.get(kv(k, labels[k]));
      if (p) yield* p;
      const h = this.byKey.get(k);
      if (h) yield* h;
    }
    yield* this.loose;
  }

  addEndpoint(m: Member): void {
    this.all.add(m);
    for (const k of Object.keys(m.labels)) {
      let vs = this.labelIndex.get(k);
      if (!vs) this.labelIndex.set(k, (vs = new Map<string, Set<Member>>()));
      addTo(vs, m.labels[k], m);
    }
    m.container.members.add(m);
    for (const e of this.candidates(m.labels)) if (matches(e.sel, m.labels)) this.join(e, m, false);
    // Selectors that hold the container through another of its endpoints now hold this one's addresses too.
    for (const e of this.siblingsOnly(m)) this.addAddrs(e, m, 1);
  }

  removeEndpoint(m: Member): void {
    for (const e of m.matched) {
      const n = e.containers.get(m.container)!;
      if (n === 1) {
        e.containers.delete(m.container);
        for (const x of m.container.members) this.addAddrs(e, x, -1);
      } else {
        e.containers.set(m.container, n - 1);
        this.addAddrs(e, m, -1);
      }
    }
    for (const e of this.siblingsOnly(m)) this.addAddrs(e, m, -1);
    m.matched.clear();
    const c = m.container;
    c.members.delete(m);
    if (!c.members.size && c.key && this.containers.get(c.key) === c) this.containers.delete(c.key);
    this.all.delete(m);
    for (const k of Object.keys(m.labels)) {
      const vs = this.labelIndex.get(k)!;
      delFrom(vs, m.labels[k], m);
      if (!vs.size) this.labelIndex.delete(k);
    }
  }

  /** Selectors other endpoints of m's container match and m does not. */
  private siblingsOnly(m: Member): Set<SelEntry> {
    const out = new Set<SelEntry>();
    if (m.container.members.size > 1) for (const x of m.container.members) if (x !== m) for (const e of x.matched) if (!m.matched.has(e)) out.add(e);
    return out;
  }

  /** One more rule uses the selector's set of family f; the set appears in the store on first use. */
  acquire(canon: string, sel: Selector, f: Family): void {
    let e = this.sels.get(canon);
    if (!e) {
      const names = [selectorSetName(canon, 4), selectorSetName(canon, 6)] as const;
      const emit = (i: 0 | 1) => (a: string, add: boolean) => {
        if (this.store.sets.has(names[i])) this.store.member(names[i], a, add);
      };
      e = { canon, sel, anchor: anchorOf(sel), names, users: [0, 0], covers: [new Cover(emit(0)), new Cover(emit(1))], containers: new Map() };
      this.sels.set(canon, e);
      this.index(e, true);
      for (const m of this.fillCandidates(e.anchor)) if (matches(sel, m.labels)) this.join(e, m, true);
    }
    const i = fi(f);
    if (e.users[i]++ === 0 && !this.exposed(e, i)) this.store.addSet({ name: e.names[i], family: f, kind: 'net', members: new Set(e.covers[i].visible()) });
  }

  /** One rule fewer; unused sets and selectors go at the next sweep (so a release and re-acquire within one event costs nothing). */
  release(canon: string, f: Family): void {
    const e = this.sels.get(canon)!;
    e.users[fi(f)]--;
    this.garbage.add(e);
  }

  sweep(): void {
    for (const e of this.garbage) {
      for (let i = 0; i < 2; i++) if (e.users[i] === 0 && this.exposed(e, i)) this.store.removeSet(e.names[i]);
      if (e.users[0] + e.users[1] > 0 || this.sels.get(e.canon) !== e) continue;
      this.sels.delete(e.canon);
      this.index(e, false);
      for (const c of e.containers.keys()) for (const m of c.members) m.matched.delete(e);
    }
    this.garbage.clear();
  }

  private index(e: SelEntry, add: boolean): void {
    const a = e.anchor;
    const op = add ? addTo : delFrom;
    if (!a) {
      if (add) this.loose.add(e);
      else this.loose.delete(e);
    } else if ('kv' in a) for (const [k, v] of a.kv) op(this.byPair, kv(k, v), e);
    else op(this.byKey, a.key, e);
  }

  private *fillCandidates(a: Anchor): Generator<Member> {
    if (!a) return yield* this.all;
    if ('key' in a) {
      for (const ms of this.labelIndex.get(a.key)?.values() ?? []) yield* ms;
      return;
    }
    // One value per key per endpoint: the pairs' endpoint sets are disjoint.
    for (const [k, v] of a.kv) yield* this.labelIndex.get(k)?.get(v) ?? [];
  }
}
