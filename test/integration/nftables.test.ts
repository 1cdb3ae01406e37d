/**
 * The nftables backend against the real kernel in throw-away namespaces: a full apply, deltas
 * that end where one full apply of the last state ends, set members changed element by element,
 * the periodic check repairing hand edits, a full apply over an existing table, and removal.
 * Traffic semantics are proven by the backend-neutral conformance suite.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import type { Desired, EndpointSpec } from '../../firewall/desired';
import { canCreateNetns, createNetns, type Netns } from '../harness/netns';
import { both, none, rule, set } from '../harness/desired-builders';
import { addonLoads, backendRunner, nftTable } from '../harness/firewall';

const hasTools = (() => {
  try {
    for (const t of ['nft', 'iptables']) execFileSync('sh', ['-c', 'command -v "$1"', 'sh', t], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();
const skip = canCreateNetns() && hasTools && addonLoads() ? false : 'needs root, iproute2, nft, iptables and the libnftables addon (scripts/install-deps.sh)';

const ep = (n: number, group?: string, v6 = false): EndpointSpec => ({
  ifName: `cali${String(n).padStart(11, '0')}`,
  addrs: { 4: [`10.65.0.${n}`], 6: v6 ? [`fd65::${n}`, `fd65::1:${n}`] : [] },
  ingress: { ...(group ? { group } : {}), profile: 'front' },
  egress: { profile: n === 4 ? 'back' : 'front' },
});
const G = 'i-0123456789abcdef';

/** A policy of `n` allow rules, one source set and port each: long enough to become a port lookup. */
const many = (n: number, base: number) =>
  Array.from({ length: n }, (_, k) => rule({ protocol: 6, src: { ...none, sets: ['cal4s-aaaaaaaaaaaa'] }, dst: { ...none, ports: [[base + k, base + k]] } }));

function state(o: { endpoints: EndpointSpec[]; members?: string[]; ports?: number[]; extraPolicy?: boolean; long?: number }): Desired {
  const sets = [
    set('cal4s-aaaaaaaaaaaa', o.members ?? ['10.65.0.1']),
    set('cal4n-bbbbbbbbbbbb', ['0.0.0.0/0'], 'net'),
    set('cal6n-cccccccccccc', ['fd00::/8'], 'net'),
  ];
  const policies = [
    {
      name: 'web',
      ingress: both([
        rule({ protocol: 6, src: { ...none, sets: ['cal4s-aaaaaaaaaaaa'] }, dst: { ...none, ports: (o.ports ?? [80]).map((p) => [p, p] as const) } }),
        ...many(o.long ?? 5, 9000),
      ]),
      egress: { 4: [], 6: [] },
    },
    ...(o.extraPolicy
      ? [{ name: 'logall', ingress: { 4: [rule({ action: 'log', logPrefix: 'calico logall' })], 6: [rule({ action: 'pass' })] }, egress: { 4: [], 6: [] } }]
      : []),
  ];
  const profiles = [
    {
      name: 'front',
      ingress: both([rule({ src: { ...none, nets: 'cal4n-bbbbbbbbbbbb' } }), rule({ action: 'deny', src: { ...none, nets: 'cal6n-cccccccccccc' } })]),
      egress: both([rule({})]),
    },
    { name: 'back', ingress: both([]), egress: both([rule({ action: 'deny' })]) },
  ];
  const groups = [{ id: G, dir: 'ingress' as const, policies: policies.map((p) => p.name) }];
  return {
    endpointToHost: 'drop',
    sets: new Map(sets.map((s) => [s.name, s])),
    policies: new Map(policies.map((p) => [p.name, p])),
    profiles: new Map(profiles.map((p) => [p.name, p])),
    groups: new Map(groups.map((g) => [g.id, g])),
    endpoints: new Map(o.endpoints.map((e) => [e.ifName, e])),
  };
}

describe('nftables backend against the kernel', { skip }, () => {
  let a: Netns;
  let b: Netns;
  before(async () => {
    a = await createNetns('nfta');
    b = await createNetns('nftb');
  });
  after(async () => {
    await a?.destroy();
    await b?.destroy();
  });

  test('a sequence of deltas ends exactly where one full apply of the last state does', async () => {
    const ra = backendRunner(a, 'nftables');
    const steps = [
      state({ endpoints: [ep(1)] }),
      state({ endpoints: [ep(1), ep(2, G, true)] }),
      state({ endpoints: [ep(1), ep(2, G, true), ep(3, G)], members: ['10.65.0.1', '10.65.0.9'], ports: [80, 443], long: 8 }),
      state({ endpoints: [ep(2, G, true), ep(3, G)], members: ['10.65.0.9'], extraPolicy: true }),
      state({ endpoints: [ep(3, G), ep(4)], members: ['10.65.0.9', '10.65.0.4'] }),
      state({ endpoints: [ep(3), ep(4), ep(5, G, true)], members: ['10.65.0.4'], long: 2 }),
    ];
    try {
      await ra.apply(steps[0]);
      for (let i = 1; i < steps.length; i++) {
        const s = await ra.apply(steps[i], steps[i - 1]);
        assert.equal((s as { full: boolean }).full, false, `step ${i} is a delta`);
      }
      assert.equal(await ra.check(steps[steps.length - 1]), false, 'nothing to repair after the deltas');
      const rb = backendRunner(b, 'nftables');
      try {
        await rb.apply(steps[steps.length - 1]);
      } finally {
        rb.close();
      }
      assert.deepEqual(await nftTable(a), await nftTable(b));
      const k = await nftTable(a);
      assert.deepEqual(k.sets['cal4s-aaaaaaaaaaaa'], ['10.65.0.4']);
      assert.ok(!JSON.stringify(k).includes('cali00000000001'), 'a removed endpoint leaves no element');
      assert.ok(!Object.keys(k.chains).some((c) => /-b\d+$/.test(c)), 'a run too short for a lookup leaves no lookup chains');
    } finally {
      ra.close();
    }
  });

  test('a change of set members is element adds and deletes, and a long allow run is one port lookup', async () => {
    const r = backendRunner(a, 'nftables');
    try {
      const one = state({ endpoints: [ep(1, G)], long: 20 });
      await r.apply(one);
      const k = await nftTable(a);
      const group = k.chains['g4-i-0123456789abcdef'];
      assert.equal(group.filter((x) => x.includes('vmap')).length, 1, 'the 20 rules are one lookup');
      assert.ok(group.length <= 4, `the group chain stays short: ${group.join(' | ')}`);
      const two = state({ endpoints: [ep(1, G)], long: 20, members: ['10.65.0.1', '10.65.0.7'] });
      const stats = (await r.apply(two, one)) as { objects: number; full: boolean };
      assert.deepEqual(stats, { objects: 1, full: false }, 'one element add, nothing else');
      assert.deepEqual((await nftTable(a)).sets['cal4s-aaaaaaaaaaaa'], ['10.65.0.1', '10.65.0.7']);
    } finally {
      r.close();
    }
  });

  test('the periodic check finds a flushed chain, a deleted element and a replaced rule, and repairs them', async () => {
    const r = backendRunner(a, 'nftables');
    try {
      const d = state({ endpoints: [ep(1), ep(2, G, true)] });
      await r.apply(d);
      const want = await nftTable(a);
      assert.equal(await r.check(d), false);
      await a.exec('nft', ['flush', 'chain', 'inet', 'calico', 'g4-i-0123456789abcdef']);
      assert.equal(await r.check(d), true);
      assert.deepEqual(await nftTable(a), want);
      await a.exec('nft', ['delete', 'element', 'inet', 'calico', 'cal4s-aaaaaaaaaaaa', '{ 10.65.0.1 }']);
      assert.equal(await r.check(d), true);
      assert.deepEqual(await nftTable(a), want);
      assert.equal(await r.check(d), false, 'verified once more, so a later edit is seen by its handle');
      const handle = /drop # handle (\d+)/.exec((await a.exec('nft', ['-a', 'list', 'chain', 'inet', 'calico', 'cal-to-wl'])).stdout)![1];
      await a.exec('nft', ['replace', 'rule', 'inet', 'calico', 'cal-to-wl', 'handle', handle, 'accept']);
      assert.equal(await r.check(d), true, 'a rule replaced by hand is put back');
      assert.deepEqual(await nftTable(a), want);
      await a.exec('iptables', ['-D', 'FORWARD', '-o', 'cali+', '-j', 'ACCEPT']);
      assert.equal(await r.check(d), true, 'a missing iptables FORWARD accept is put back');
      assert.match((await a.exec('iptables', ['-S', 'FORWARD'])).stdout, /-A FORWARD -o cali\+ -j ACCEPT/);
    } finally {
      r.close();
    }
  });

  test('a full apply over an existing table replaces it in one transaction, leaving nothing stale', async () => {
    const r = backendRunner(a, 'nftables');
    try {
      await r.apply(state({ endpoints: [ep(1), ep(2, G, true), ep(3)], members: ['10.65.0.1', '10.65.0.2'] }));
      await a.exec('nft', ['add', 'chain', 'inet', 'calico', 'stale-by-hand']);
      const r2 = backendRunner(a, 'nftables');
      try {
        // A new process (a restarted agent) knows nothing of the table it finds.
        await r2.apply(state({ endpoints: [ep(4)] }));
      } finally {
        r2.close();
      }
      const k = await nftTable(a);
      assert.ok(!('stale-by-hand' in k.chains));
      assert.ok(!JSON.stringify(k).includes('cali00000000001'));
      assert.deepEqual(k.sets['cal-own4'], ['cali00000000004 . 10.65.0.4']);
    } finally {
      r.close();
    }
  });

  test('remove takes out our table and FORWARD accepts and nothing else; a second remove is fine', async () => {
    const r = backendRunner(a, 'nftables');
    try {
      await a.exec('nft', ['add', 'table', 'inet', 'not-ours']);
      await r.apply(state({ endpoints: [ep(1)] }));
      assert.match((await a.exec('ip6tables', ['-S', 'FORWARD'])).stdout, /-A FORWARD -i cali\+ -j ACCEPT/);
      await r.remove();
      await r.remove();
      const tables = (await a.exec('nft', ['list', 'tables'])).stdout;
      assert.doesNotMatch(tables, /inet calico\b/);
      assert.match(tables, /inet not-ours/);
      for (const t of ['iptables', 'ip6tables']) assert.doesNotMatch((await a.exec(t, ['-S', 'FORWARD'])).stdout, /cali/);
    } finally {
      r.close();
    }
  });
});
