/**
 * The iptables backend against the real kernel in a throw-away namespace: a full apply, deltas
 * that end where one full apply of the last state ends, the periodic check repairing hand edits,
 * and removal. Traffic semantics are proven by the backend-neutral conformance suite.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import type { Desired, EndpointSpec } from '../../firewall/desired';
import { canCreateNetns, createNetns, type Netns } from '../harness/netns';
import { both, none, rule, set } from '../harness/desired-builders';
import { backendRunner } from '../harness/firewall';

const hasTools = (() => {
  try {
    for (const t of ['ipset', 'iptables-restore', 'ip6tables-restore', 'iptables-save'])
      execFileSync('sh', ['-c', 'command -v "$1"', 'sh', t], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();
const skip = canCreateNetns() && hasTools ? false : 'needs root, iproute2, ipset and iptables';

const ep = (n: number, group?: string, v6 = false): EndpointSpec => ({
  ifName: `cali${String(n).padStart(11, '0')}`,
  addrs: { 4: [`10.65.0.${n}`], 6: v6 ? [`fd65::${n}`, `fd65::1:${n}`] : [] },
  ingress: { ...(group ? { group } : {}), profile: 'front' },
  egress: { profile: 'front' },
});

function state(o: { endpoints: EndpointSpec[]; members?: string[]; ports?: number[]; extraPolicy?: boolean }): Desired {
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
      ]),
      egress: { 4: [], 6: [] },
    },
    ...(o.extraPolicy
      ? [{ name: 'logall', ingress: { 4: [rule({ action: 'log', logPrefix: 'calico logall' })], 6: [rule({ action: 'pass' })] }, egress: { 4: [], 6: [] } }]
      : []),
  ];
  const profile = {
    name: 'front',
    ingress: both([rule({ src: { ...none, nets: 'cal4n-bbbbbbbbbbbb' } }), rule({ action: 'deny', src: { ...none, nets: 'cal6n-cccccccccccc' } })]),
    egress: both([rule({})]),
  };
  const groups = [{ id: 'i-0123456789abcdef', dir: 'ingress' as const, policies: policies.map((p) => p.name) }];
  return {
    endpointToHost: 'drop',
    sets: new Map(sets.map((s) => [s.name, s])),
    policies: new Map(policies.map((p) => [p.name, p])),
    profiles: new Map([[profile.name, profile]]),
    groups: new Map(groups.map((g) => [g.id, g])),
    endpoints: new Map(o.endpoints.map((e) => [e.ifName, e])),
  };
}

/** Our chains (rules sorted within the order-free dispatchers) and sets with members, as the kernel holds them. */
async function kernel(ns: Netns) {
  const chains: Record<string, string[]> = {};
  for (const t of ['iptables-save', 'ip6tables-save']) {
    for (const l of (await ns.exec(t, ['-t', 'filter'])).stdout.split('\n')) {
      const m = /^-A (cal-\S+) (.*)$/.exec(l);
      if (m) (chains[`${t}:${m[1]}`] ??= []).push(m[2]);
    }
  }
  for (const k of Object.keys(chains)) if (/cal-(from|to|host)-wl$/.test(k)) chains[k].sort();
  const sets: Record<string, string[]> = {};
  for (const name of (await ns.exec('ipset', ['list', '-n'])).stdout.split('\n').filter((n) => /^cal/.test(n))) {
    sets[name] = (await ns.exec('ipset', ['list', name])).stdout.split('Members:\n')[1].split('\n').filter(Boolean).sort();
  }
  return { chains, sets };
}

describe('iptables backend against the kernel', { skip }, () => {
  let a: Netns;
  let b: Netns;
  before(async () => {
    a = await createNetns('ipta');
    b = await createNetns('iptb');
  });
  after(async () => {
    await a?.destroy();
    await b?.destroy();
  });

  test('a sequence of deltas ends exactly where one full apply of the last state does', async () => {
    const ra = backendRunner(a, 'iptables');
    const steps = [
      state({ endpoints: [ep(1)] }),
      state({ endpoints: [ep(1), ep(2, 'i-0123456789abcdef', true)] }),
      state({ endpoints: [ep(1), ep(2, 'i-0123456789abcdef', true), ep(3, 'i-0123456789abcdef')], members: ['10.65.0.1', '10.65.0.9'], ports: [80, 443] }),
      state({ endpoints: [ep(2, 'i-0123456789abcdef', true), ep(3, 'i-0123456789abcdef')], members: ['10.65.0.9'], extraPolicy: true }),
      state({ endpoints: [ep(3, 'i-0123456789abcdef'), ep(4)], members: ['10.65.0.9', '10.65.0.4'] }),
    ];
    await ra.apply(steps[0]);
    for (let i = 1; i < steps.length; i++) await ra.apply(steps[i], steps[i - 1]);
    assert.equal(await ra.check(steps[steps.length - 1]), false, 'nothing to repair after the deltas');
    const rb = backendRunner(b, 'iptables');
    await rb.apply(steps[steps.length - 1]);
    assert.deepEqual(await kernel(a), await kernel(b));
    const k = await kernel(a);
    assert.ok(k.chains['iptables-save:cal-from-wl'].includes('-i cali00000000004 -g cal-fw-cali00000000004'));
    assert.ok(!Object.keys(k.chains).some((c) => c.includes('cali00000000001')), 'a removed endpoint leaves no chain');
    assert.deepEqual(k.sets['cal4s-aaaaaaaaaaaa'], ['10.65.0.4', '10.65.0.9']);
    assert.deepEqual(k.sets['cal4n-bbbbbbbbbbbb'], ['0.0.0.0/1', '128.0.0.0/1'], 'a /0 is held as its two halves');
    assert.match((await a.exec('iptables-save', ['-t', 'filter'])).stdout, /^-A FORWARD -j cal-FORWARD$/m);
  });

  test('the periodic check finds flushed chains, removed sets and jumps, and repairs them', async () => {
    const r = backendRunner(a, 'iptables');
    const d = state({ endpoints: [ep(1), ep(2, 'i-0123456789abcdef', true)] });
    await r.apply(d);
    const want = await kernel(a);
    assert.equal(await r.check(d), false);
    await a.exec('iptables', ['-F', 'cal-fw-cali00000000001']);
    assert.equal(await r.check(d), true);
    assert.deepEqual(await kernel(a), want);
    await a.exec('ipset', ['del', 'cal4s-aaaaaaaaaaaa', '10.65.0.1']);
    assert.equal(await r.check(d), true);
    await a.exec('iptables', ['-D', 'FORWARD', '-j', 'cal-FORWARD']);
    assert.equal(await r.check(d), true);
    assert.match((await a.exec('iptables-save', ['-t', 'filter'])).stdout, /^-A FORWARD -j cal-FORWARD$/m);
    await a.exec('iptables', ['-A', 'cal-to-wl', '-j', 'ACCEPT']);
    assert.equal(await r.check(d), true, 'a rule added by hand is removed');
    assert.deepEqual(await kernel(a), want);
  });

  test('remove takes out every chain, jump and set of ours and nothing else', async () => {
    const r = backendRunner(a, 'iptables');
    await a.exec('iptables', ['-N', 'not-ours']);
    await r.apply(state({ endpoints: [ep(1)] }));
    await r.remove();
    const save = (await a.exec('iptables-save', ['-t', 'filter'])).stdout + (await a.exec('ip6tables-save', ['-t', 'filter'])).stdout;
    assert.doesNotMatch(save, /cal-/);
    assert.match(save, /^:not-ours/m);
    assert.deepEqual(
      (await a.exec('ipset', ['list', '-n'])).stdout.split('\n').filter((n) => /^cal/.test(n)),
      [],
    );
  });
});
