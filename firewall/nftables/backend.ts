/**
 * The nftables backend (the default where the kernel and libnftables allow; see
 * {@link nftablesAvailable}). Every apply is one nft transaction through the libnftables addon.
 * A full apply replaces our whole table in that one transaction (`delete table` and the new
 * table in one buffer, so no packet ever sees it half built or missing). A delta changes only
 * what it names: set members and endpoints are element adds and deletes; a changed profile or
 * group (or a group whose policy changed) has its chains flushed and refilled; chains and sets
 * nothing uses any more are deleted after their last reference went, all in the same buffer.
 */
import { createHash } from 'node:crypto';
import { type ApplyStats, type Delta, type Desired, DIRS, type EndpointSpec, FAMILIES, type Family, type FirewallBackend, type SetSpec } from '../desired';
import { InternalError } from '../../lib/errors';
import { nft, nftJson } from './addon';
import * as C from './compile';
import { coexistIntact, ensureCoexist, removeCoexist } from './coexist';

export { nftablesAvailable } from './addon';

const T = C.TABLE;

interface Programmed {
  endpointToHost: Desired['endpointToHost'];
  sets: Map<string, { family: Family; kind: SetSpec['kind']; members: Set<string> }>;
  /** Every chain of ours with its rules, base chains included. */
  chains: C.Chains;
  /** `pr:<profile>` / `g:<group id>` → the chains it owns. */
  owners: Map<string, string[]>;
  /** Tier key → the interfaces dispatched to its chain. */
  tiers: Map<string, Set<string>>;
  endpoints: Map<string, EndpointSpec>;
  /** Hash of the table as the last check() found it intact (cleared by every apply). */
  verified?: string;
}

const elems = (xs: readonly string[]) => `{ ${xs.join(', ')} }`;

function ownerChains(key: string, d: Desired): C.Chains {
  const out: C.Chains = new Map();
  const put = (c: C.Chains) => c.forEach((r, n) => out.set(n, r));
  if (key.startsWith('pr:')) {
    const p = d.profiles.get(key.slice(3));
    if (!p) throw new InternalError(`an endpoint names profile ${key.slice(3)}, which the desired state does not hold`);
    for (const dir of DIRS) for (const f of FAMILIES) put(C.compileProfile(p, dir, f));
  } else {
    const g = d.groups.get(key.slice(2));
    if (!g) throw new InternalError(`an endpoint names policy group ${key.slice(2)}, which the desired state does not hold`);
    for (const f of FAMILIES) put(C.compileGroup(g, d.policies, f));
  }
  return out;
}

/** One transaction's text, in the order the kernel needs: objects exist before references, references go before objects. */
class Batch {
  sets: string[] = [];
  add: string[] = [];
  flush: string[] = [];
  rules: string[] = [];
  elements: string[] = [];
  /** Chains to delete (already flushed above); one written again in the same batch is kept instead. */
  drop = new Set<string>();
  dropSets: string[] = [];
  text(): string {
    const drop = [...this.drop].map((c) => `delete chain ${T} ${c}`);
    return [...this.sets, ...this.add, ...this.flush, ...this.rules, ...this.elements, ...drop, ...this.dropSets, ''].join('\n');
  }
  get size(): number {
    return this.sets.length + this.add.length + this.flush.length + this.rules.length + this.elements.length + this.drop.size + this.dropSets.length;
  }
}

export class NftablesBackend implements FirewallBackend {
  readonly name = 'nftables' as const;
  private last?: Programmed;

  async apply(desired: Desired, delta?: Delta): Promise<ApplyStats> {
    const prev = this.last;
    this.last = undefined; // a failure part-way leaves the backend unsure: the next apply is full
    if (!prev || !delta) return { objects: await this.full(desired), full: true };
    const objects = await this.incremental(prev, desired, delta);
    prev.verified = undefined;
    this.last = prev;
    return { objects, full: false };
  }

  private async full(d: Desired): Promise<number> {
    const p: Programmed = { endpointToHost: d.endpointToHost, sets: new Map(), chains: new Map(), owners: new Map(), tiers: new Map(), endpoints: new Map() };
    const b = new Batch();
    // Creating it first makes the delete succeed when there is no table yet.
    b.sets.push(`add table ${T}`, `delete table ${T}`, `add table ${T}`);
    const base = C.compileBase(d.endpointToHost);
    b.sets.push(...base.decls);
    for (const [c, rules] of base.chains) this.write(p, b, c, rules);
    for (const s of d.sets.values()) this.addSet(p, b, s);
    for (const e of d.endpoints.values()) this.upsertEndpoint(p, b, d, e);
    await nft(b.text());
    // After our table is in: from here on what iptables' FORWARD accepts has passed our filter.
    await ensureCoexist();
    this.last = p;
    return b.size;
  }

  private async incremental(p: Programmed, d: Desired, delta: Delta): Promise<number> {
    const b = new Batch();
    // Configuration, not in deltas; cheap to follow anyway.
    if (d.endpointToHost !== p.endpointToHost) {
      this.write(p, b, C.TO_HOST, C.compileBase(d.endpointToHost).chains.get(C.TO_HOST)!);
      p.endpointToHost = d.endpointToHost;
    }
    for (const s of delta.sets.upsert) {
      const have = p.sets.get(s.name);
      if (have && (have.family !== s.family || have.kind !== s.kind)) throw new InternalError(`set ${s.name} changed its type; a full apply replaces it`);
      if (have)
        this.members(
          p,
          b,
          s.name,
          [...s.members],
          [...have.members].filter((m) => !s.members.has(m)),
        );
      else this.addSet(p, b, s);
    }
    for (const m of delta.sets.members) if (p.sets.has(m.name)) this.members(p, b, m.name, m.add, m.del);
    // Owners whose chains change: upserted profiles and groups, and every group holding an upserted policy.
    const rewrite = new Set<string>();
    for (const x of delta.profiles.upsert) rewrite.add(`pr:${x.name}`);
    for (const x of delta.groups.upsert) rewrite.add(`g:${x.id}`);
    const changed = new Set(delta.policies.upsert.map((x) => x.name));
    for (const g of d.groups.values()) if (g.policies.some((n) => changed.has(n))) rewrite.add(`g:${g.id}`);
    for (const key of rewrite) if (p.owners.has(key)) this.writeOwner(p, b, key, ownerChains(key, d));
    for (const n of delta.endpoints.remove) this.removeEndpoint(p, b, n);
    for (const e of delta.endpoints.upsert) this.upsertEndpoint(p, b, d, e);
    // Owners no tier uses any more (removed profiles and groups among them) go last.
    const used = new Set([...p.tiers.keys()].flatMap((k) => this.ownersOf(k)));
    for (const key of [...p.owners.keys()]) if (!used.has(key)) this.dropOwner(p, b, key);
    for (const n of delta.sets.remove) {
      if (!p.sets.delete(n)) continue;
      b.dropSets.push(`delete set ${T} ${C.safeName(n)}`);
    }
    if (b.size) await nft(b.text());
    return b.size;
  }

  private addSet(p: Programmed, b: Batch, s: SetSpec): void {
    const members = [...s.members];
    b.sets.push(`add set ${T} ${C.safeName(s.name)} ${C.setDecl(s)}`);
    if (members.length) b.sets.push(`add element ${T} ${s.name} ${elems(members.map((m) => C.element(m, s.family)))}`);
    p.sets.set(s.name, { family: s.family, kind: s.kind, members: new Set(members) });
  }

  /** Element changes only for what the kernel has (a delete of a missing element fails the whole transaction). */
  private members(p: Programmed, b: Batch, name: string, add: readonly string[], del: readonly string[]): void {
    const s = p.sets.get(name)!;
    const out = del.filter((m) => s.members.delete(m));
    const inn = add.filter((m) => !s.members.has(m) && s.members.add(m));
    if (out.length) b.sets.push(`delete element ${T} ${name} ${elems(out.map((m) => C.element(m, s.family)))}`);
    if (inn.length) b.sets.push(`add element ${T} ${name} ${elems(inn.map((m) => C.element(m, s.family)))}`);
  }

  private write(p: Programmed, b: Batch, chain: string, rules: string[]): void {
    if (p.chains.has(chain)) b.flush.push(`flush chain ${T} ${chain}`);
    else if (!b.drop.delete(chain)) b.add.push(`add chain ${T} ${chain}`);
    b.rules.push(...rules.map((r) => `add rule ${T} ${chain} ${r}`));
    p.chains.set(chain, rules);
  }

  private drop(p: Programmed, b: Batch, chain: string): void {
    if (!p.chains.delete(chain)) return;
    b.flush.push(`flush chain ${T} ${chain}`);
    b.drop.add(chain);
  }

  private writeOwner(p: Programmed, b: Batch, key: string, chains: C.Chains): void {
    for (const c of p.owners.get(key) ?? []) if (!chains.has(c)) this.drop(p, b, c);
    for (const [c, rules] of chains) this.write(p, b, c, rules);
    p.owners.set(key, [...chains.keys()]);
  }

  private dropOwner(p: Programmed, b: Batch, key: string): void {
    for (const c of p.owners.get(key) ?? []) this.drop(p, b, c);
    p.owners.delete(key);
  }

  private ownersOf(tier: string): string[] {
    const [, group, profile] = tier.split('|');
    return [`pr:${profile}`, ...(group ? [`g:${group}`] : [])];
  }

  /** A tier's chain (and the profile and group chains it jumps to) exist once an endpoint needs them. */
  private useTier(p: Programmed, b: Batch, d: Desired, key: string, ifName: string): void {
    const users = p.tiers.get(key);
    if (users) return void users.add(ifName);
    for (const o of this.ownersOf(key)) if (!p.owners.has(o)) this.writeOwner(p, b, o, ownerChains(o, d));
    this.write(p, b, C.tierChain(key), C.compileTier(key));
    p.tiers.set(key, new Set([ifName]));
  }

  private unuseTier(p: Programmed, b: Batch, key: string, ifName: string): void {
    const users = p.tiers.get(key);
    if (!users || !users.delete(ifName) || users.size) return;
    p.tiers.delete(key);
    this.drop(p, b, C.tierChain(key));
  }

  private upsertEndpoint(p: Programmed, b: Batch, d: Desired, e: EndpointSpec): void {
    const old = p.endpoints.get(e.ifName);
    const was = old ? C.endpointElements(old) : undefined;
    const now = C.endpointElements(e);
    for (const dir of DIRS) this.useTier(p, b, d, C.tierKey(dir, e[dir]), e.ifName);
    for (const f of FAMILIES) {
      const out = (was?.own[f] ?? []).filter((x) => !now.own[f].includes(x));
      const inn = now.own[f].filter((x) => !was?.own[f].includes(x));
      if (out.length) b.elements.push(`delete element ${T} ${C.OWN[f]} ${elems(out)}`);
      if (inn.length) b.elements.push(`add element ${T} ${C.OWN[f]} ${elems(inn)}`);
    }
    for (const [map, k] of [
      [C.FROM_MAP, 'from'],
      [C.TO_MAP, 'to'],
    ] as const) {
      if (was?.[k] === now[k]) continue;
      if (was) b.elements.push(`delete element ${T} ${map} { ${was[k].split(' : ')[0]} }`);
      b.elements.push(`add element ${T} ${map} { ${now[k]} }`);
    }
    p.endpoints.set(e.ifName, e);
    if (old) for (const dir of DIRS) if (C.tierKey(dir, old[dir]) !== C.tierKey(dir, e[dir])) this.unuseTier(p, b, C.tierKey(dir, old[dir]), e.ifName);
  }

  private removeEndpoint(p: Programmed, b: Batch, ifName: string): void {
    const old = p.endpoints.get(ifName);
    if (!old) return;
    const was = C.endpointElements(old);
    for (const f of FAMILIES) if (was.own[f].length) b.elements.push(`delete element ${T} ${C.OWN[f]} ${elems(was.own[f])}`);
    b.elements.push(`delete element ${T} ${C.FROM_MAP} { ${was.from.split(' : ')[0]} }`, `delete element ${T} ${C.TO_MAP} { ${was.to.split(' : ')[0]} }`);
    p.endpoints.delete(ifName);
    for (const dir of DIRS) this.unuseTier(p, b, C.tierKey(dir, old[dir]), ifName);
  }

  /** Rules per chain and elements per set and map, as this backend programmed them. */
  private expected(p: Programmed): { chains: Map<string, number>; sets: Map<string, number> } {
    const sets = new Map([...p.sets].map(([n, s]) => [n, s.members.size]));
    const eps = [...p.endpoints.values()];
    for (const f of FAMILIES)
      sets.set(
        C.OWN[f],
        eps.reduce((n, e) => n + e.addrs[f].length, 0),
      );
    sets.set(C.FROM_MAP, eps.length).set(C.TO_MAP, eps.length);
    return { chains: new Map([...p.chains].map(([c, r]) => [c, r.length])), sets };
  }

  async check(desired: Desired): Promise<boolean> {
    const p = this.last;
    if (p && (await this.intact(p))) return false;
    await this.apply(desired);
    return true;
  }

  private async intact(p: Programmed): Promise<boolean> {
    let listing: Awaited<ReturnType<typeof nftJson>>;
    try {
      listing = await nftJson(`list table ${T}`);
    } catch {
      return false; // no table
    }
    const chains = new Map<string, number>();
    const sets = new Map<string, number>();
    for (const o of listing.nftables) {
      if (o.chain) chains.set((o.chain as { name: string }).name, chains.get((o.chain as { name: string }).name) ?? 0);
      if (o.rule) {
        const c = (o.rule as { chain: string }).chain;
        chains.set(c, (chains.get(c) ?? 0) + 1);
      }
      const s = (o.set ?? o.map) as { name: string; elem?: unknown[] } | undefined;
      if (s) sets.set(s.name, s.elem?.length ?? 0);
    }
    const want = this.expected(p);
    const same = (a: Map<string, number>, b: Map<string, number>) => a.size === b.size && [...a].every(([k, v]) => b.get(k) === v);
    if (!same(chains, want.chains) || !same(sets, want.sets)) return false;
    // Counts match; a rule replaced by hand since the last check shows as a new handle.
    const hash = createHash('sha256')
      .update(JSON.stringify(listing.nftables.slice(1)))
      .digest('hex');
    if (p.verified && p.verified !== hash) return false;
    if (!(await coexistIntact())) return false;
    p.verified = hash;
    return true;
  }

  async remove(): Promise<void> {
    this.last = undefined;
    await removeCoexist();
    await nft(`add table ${T}\ndelete table ${T}\n`);
  }
}
