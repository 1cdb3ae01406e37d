/**
 * The iptables backend: the fallback where nftables is not available (CALICO_FIREWALL=iptables).
 * It remembers every chain and set it programmed and turns each Delta into at most one
 * `ipset restore` (new sets, then members added and removed one by one) and one
 * `iptables-restore --noflush` per family (the changed objects' chains, dispatch rules inserted
 * or deleted one by one, gone chains flushed and deleted), then removes sets no longer used. A
 * full apply rewrites everything of ours, refills every set through a temporary one swapped in
 * (never seen half full), checks the hook jumps and removes stale chains and sets. Either way a
 * change touches only what it names: iptables itself is linear per packet, which is why
 * nftables is the default.
 */
import { type ApplyStats, type Delta, type Desired, type EndpointSpec, FAMILIES, type Family, type FirewallBackend, type SetSpec } from '../desired';
import * as C from './compile';
import { ensureJump, hasJump, ipsetRestore, ourChainsIn, ourSets, removeJump, restore, saveFilter } from './tools';

type Chains = C.Chains;

interface Programmed {
  chains: Record<Family, Chains>;
  /** Set name → members as programmed, and the objects using it (spoof sets are shared by a container's endpoints). */
  sets: Map<string, { spec: SetSpec; users: Set<string> }>;
}

const fam = (f: Family) => (f === 4 ? 'inet' : 'inet6');

/** Every chain and set one desired state needs, compiled from scratch. */
function compileAll(d: Desired): Programmed {
  const chains = {} as Record<Family, Chains>;
  const sets = new Map<string, { spec: SetSpec; users: Set<string> }>();
  for (const s of d.sets.values()) sets.set(s.name, { spec: s, users: new Set(['desired']) });
  for (const f of FAMILIES) {
    const c: Chains = C.compileBase(f, d.endpointToHost, [...d.endpoints.keys()].sort());
    for (const p of d.policies.values()) for (const [n, r] of C.compilePolicy(p, f)) c.set(n, r);
    for (const p of d.profiles.values()) for (const [n, r] of C.compileProfile(p, f)) c.set(n, r);
    for (const g of d.groups.values()) for (const [n, r] of C.compileGroup(g)) c.set(n, r);
    for (const e of d.endpoints.values()) {
      for (const [n, r] of C.compileEndpoint(e, f)) c.set(n, r);
      for (const s of C.endpointSets(e, f)) {
        const have = sets.get(s.name);
        if (have) have.users.add(e.ifName);
        else sets.set(s.name, { spec: s, users: new Set([e.ifName]) });
      }
    }
    chains[f] = c;
  }
  return { chains, sets };
}

const createLines = (s: SetSpec, name = s.name) => [
  `create ${name} ${C.setType(s)} family ${fam(s.family)} -exist`,
  ...C.setMembers(s).map((m) => `add ${name} ${m} -exist`),
];

export class IptablesBackend implements FirewallBackend {
  readonly name = 'iptables' as const;
  private last?: Programmed;

  async apply(desired: Desired, delta?: Delta): Promise<ApplyStats> {
    const prev = this.last;
    this.last = undefined; // a failure part-way leaves the kernel unknown: the next apply is full
    if (!prev || !delta) {
      const objects = await this.full(desired);
      return { objects, full: true };
    }
    const objects = await this.incremental(prev, desired, delta);
    this.last = prev;
    return { objects, full: false };
  }

  private async full(desired: Desired): Promise<number> {
    const want = compileAll(desired);
    // Sets first (rules name them): each filled in a temporary set and swapped in whole.
    const lines: string[] = [];
    for (const { spec } of want.sets.values()) {
      const tmp = `${spec.name}-t`;
      lines.push(...createLines(spec, tmp), `flush ${tmp}`, ...C.setMembers(spec).map((m) => `add ${tmp} ${m} -exist`));
      lines.push(`create ${spec.name} ${C.setType(spec)} family ${fam(spec.family)} -exist`, `swap ${tmp} ${spec.name}`, `destroy ${tmp}`);
    }
    await ipsetRestore(lines);
    let objects = want.sets.size;
    await Promise.all(
      FAMILIES.map(async (f) => {
        const kernel = ourChainsIn(await saveFilter(f));
        const stale = [...kernel.keys()].filter((c) => !want.chains[f].has(c));
        const chains = [...want.chains[f]];
        objects += chains.length;
        // Declaring a chain flushes it; a stale chain is flushed before -X, and every chain that
        // referred to it is rewritten in the same transaction.
        await restore(
          f,
          [
            '*filter',
            ...[...chains.map(([c]) => c), ...stale].map((c) => `:${c} - [0:0]`),
            ...chains.flatMap(([c, rules]) => rules.map((r) => `-A ${c} ${r}`)),
            ...stale.map((c) => `-X ${c}`),
            'COMMIT',
            '',
          ].join('\n'),
        );
        await ensureJump(f, 'FORWARD', C.FORWARD);
        await ensureJump(f, 'INPUT', C.INPUT);
      }),
    );
    const have = await ourSets();
    const gone = [...have.keys()].filter((n) => !want.sets.has(n));
    await ipsetRestore(gone.map((n) => `destroy ${n}`)).catch(() => undefined);
    this.last = want;
    return objects;
  }

  private async incremental(p: Programmed, d: Desired, delta: Delta): Promise<number> {
    const setLines: string[] = [];
    const destroy: string[] = [];
    const use = (s: SetSpec, user: string) => {
      const have = p.sets.get(s.name);
      if (have) return void have.users.add(user);
      p.sets.set(s.name, { spec: s, users: new Set([user]) });
      setLines.push(...createLines(s));
    };
    const unuse = (name: string, user: string) => {
      const have = p.sets.get(name);
      if (!have || !have.users.delete(user) || have.users.size) return;
      p.sets.delete(name);
      destroy.push(`destroy ${name}`);
    };
    for (const s of delta.sets.upsert) use(s, 'desired');
    for (const m of delta.sets.members) {
      const have = p.sets.get(m.name);
      if (!have) continue;
      const spec = d.sets.get(m.name) ?? have.spec;
      have.spec = spec;
      // Selector sets change by element; a network set's /0 is its two halves here too.
      setLines.push(
        ...C.memberEntries(spec, m.del).map((a) => `del ${m.name} ${a} -exist`),
        ...C.memberEntries(spec, m.add).map((a) => `add ${m.name} ${a} -exist`),
      );
    }
    // Per family: the chains to write, the chains to delete, dispatch rules to insert and delete.
    const write: Record<Family, Chains> = { 4: new Map(), 6: new Map() };
    const drop: Record<Family, string[]> = { 4: [], 6: [] };
    const dispatchAdd: string[] = [];
    const dispatchDel: string[] = [];
    const put = (f: Family, chains: Chains) => chains.forEach((r, n) => write[f].set(n, r));
    const del = (f: Family, names: string[]) => drop[f].push(...names.filter((n) => p.chains[f].has(n)));
    for (const f of FAMILIES) {
      for (const x of delta.policies.upsert) put(f, C.compilePolicy(x, f));
      for (const n of delta.policies.remove) del(f, [C.policyChain(n, 'ingress'), C.policyChain(n, 'egress')]);
      for (const x of delta.profiles.upsert) put(f, C.compileProfile(x, f));
      for (const n of delta.profiles.remove) del(f, [C.profileChain(n, 'ingress'), C.profileChain(n, 'egress')]);
      for (const x of delta.groups.upsert) put(f, C.compileGroup(x));
      for (const n of delta.groups.remove) del(f, [C.groupChain(n)]);
      for (const x of delta.endpoints.upsert) put(f, C.compileEndpoint(x, f));
      for (const n of delta.endpoints.remove) del(f, [C.endpointChain(n, 'ingress'), C.endpointChain(n, 'egress')]);
    }
    for (const e of delta.endpoints.upsert) {
      const known = p.chains[4].has(C.endpointChain(e.ifName, 'ingress'));
      if (!known) dispatchAdd.push(e.ifName);
      this.spoofSets(p, e, use, unuse);
    }
    for (const n of delta.endpoints.remove) {
      if (p.chains[4].has(C.endpointChain(n, 'ingress'))) dispatchDel.push(n);
      for (const [name, s] of p.sets) if (s.users.has(n)) unuse(name, n);
    }
    for (const n of delta.sets.remove) unuse(n, 'desired');
    await ipsetRestore(setLines);
    let objects = setLines.length;
    await Promise.all(
      FAMILIES.map(async (f) => {
        const w = [...write[f]];
        const x = drop[f].filter((n) => !write[f].has(n));
        if (!w.length && !x.length && !dispatchAdd.length && !dispatchDel.length) return;
        objects += w.length + x.length;
        await restore(
          f,
          [
            '*filter',
            ...[...w.map(([c]) => c), ...x].map((c) => `:${c} - [0:0]`),
            ...w.flatMap(([c, rules]) => rules.map((r) => `-A ${c} ${r}`)),
            ...dispatchAdd.flatMap((i) => [
              `-I ${C.FROM_WL} 1 ${C.dispatchRules(i).from}`,
              `-I ${C.TO_WL} 1 ${C.dispatchRules(i).to}`,
              `-I ${C.HOST_WL} 1 ${C.dispatchRules(i).host}`,
            ]),
            ...dispatchDel.flatMap((i) => [
              `-D ${C.FROM_WL} ${C.dispatchRules(i).from}`,
              `-D ${C.TO_WL} ${C.dispatchRules(i).to}`,
              `-D ${C.HOST_WL} ${C.dispatchRules(i).host}`,
            ]),
            ...x.map((c) => `-X ${c}`),
            'COMMIT',
            '',
          ].join('\n'),
        );
        for (const [c, rules] of w) p.chains[f].set(c, rules);
        for (const c of x) p.chains[f].delete(c);
        // The dispatchers as the kernel now holds them, so check() compares counts correctly.
        const from = p.chains[f].get(C.FROM_WL)!;
        const to = p.chains[f].get(C.TO_WL)!;
        const host = p.chains[f].get(C.HOST_WL)!;
        for (const i of dispatchAdd) {
          from.unshift(C.dispatchRules(i).from);
          to.unshift(C.dispatchRules(i).to);
          host.unshift(C.dispatchRules(i).host);
        }
        for (const i of dispatchDel) {
          from.splice(from.indexOf(C.dispatchRules(i).from), 1);
          to.splice(to.indexOf(C.dispatchRules(i).to), 1);
          host.splice(host.indexOf(C.dispatchRules(i).host), 1);
        }
      }),
    );
    await ipsetRestore(destroy).catch(() => undefined);
    return objects + destroy.length;
  }

  /** An endpoint's anti-spoofing sets follow its addresses. */
  private spoofSets(p: Programmed, e: EndpointSpec, use: (s: SetSpec, user: string) => void, unuse: (name: string, user: string) => void): void {
    const want = new Set(FAMILIES.flatMap((f) => C.endpointSets(e, f).map((s) => s.name)));
    for (const [name, s] of p.sets) if (s.users.has(e.ifName) && !want.has(name)) unuse(name, e.ifName);
    for (const f of FAMILIES) for (const s of C.endpointSets(e, f)) use(s, e.ifName);
  }

  async check(desired: Desired): Promise<boolean> {
    const p = this.last;
    if (!p) {
      await this.apply(desired);
      return true;
    }
    const sets = await ourSets();
    let intact = [...p.sets].every(([n, s]) => sets.get(n) === C.setMembers(s.spec).length) && sets.size === p.sets.size;
    for (const f of FAMILIES) {
      if (!intact) break;
      const kernel = ourChainsIn(await saveFilter(f));
      intact =
        kernel.size === p.chains[f].size &&
        [...p.chains[f]].every(([c, rules]) => kernel.get(c) === rules.length) &&
        (await hasJump(f, 'FORWARD', C.FORWARD)) &&
        (await hasJump(f, 'INPUT', C.INPUT));
    }
    if (intact) return false;
    await this.apply(desired);
    return true;
  }

  async remove(): Promise<void> {
    this.last = undefined;
    for (const f of FAMILIES) {
      await removeJump(f, 'FORWARD', C.FORWARD);
      await removeJump(f, 'INPUT', C.INPUT);
      const mine = [...ourChainsIn(await saveFilter(f)).keys()];
      if (mine.length) await restore(f, ['*filter', ...mine.map((c) => `:${c} - [0:0]`), ...mine.map((c) => `-X ${c}`), 'COMMIT', ''].join('\n'));
    }
    const sets = [...(await ourSets()).keys()];
    await ipsetRestore(sets.map((n) => `destroy ${n}`)).catch(() => undefined);
  }
}
