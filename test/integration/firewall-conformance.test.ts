/**
 * The semantics of firewall/desired.ts, proven with real traffic through each backend: a host
 * namespace wired as calico node wires one (three endpoints a, b, c; a `cali…` interface u no
 * desired state names; an outside namespace beyond the uplink), the backend applying each test's
 * state as a delta from the previous one, then TCP connections and pings between the places.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import type { Desired, EndpointSpec, FamilyRules, GroupSpec, RuleSpec, SetSpec, Tier } from '../../firewall/desired';
import { canCreateNetns, netnsScope } from '../harness/netns';
import { addonLoads, BACKENDS, buildWorld, EXT_V4, HOST_V4, type Place, type World } from '../harness/firewall';

const hasTools = (() => {
  try {
    for (const t of ['nft', 'iptables', 'ipset', 'ping']) execFileSync('sh', ['-c', 'command -v "$1"', 'sh', t], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();
const skip = canCreateNetns() && hasTools && addonLoads() ? false : 'needs root, iproute2, nft, iptables, ipset and the libnftables addon';

const none = { sets: [], notSets: [] };
const R = (r: Partial<RuleSpec>): RuleSpec => ({ action: 'allow', src: none, dst: none, logPrefix: 'calico t', ...r });
const v4 = (...rs: RuleSpec[]): FamilyRules => ({ 4: rs, 6: [] });
const v6 = (...rs: RuleSpec[]): FamilyRules => ({ 4: [], 6: rs });
/** The same rules for both families (rules naming no set of either). */
const any = (...rs: RuleSpec[]): FamilyRules => ({ 4: rs, 6: rs });
const src = (sets: string[], more: Partial<RuleSpec['src']> = {}) => ({ ...none, sets, ...more });
const dport = (...ps: Array<number | [number, number]>) => ({ ...none, ports: ps.map((p) => (typeof p === 'number' ? ([p, p] as const) : p)) });
const ADDR = { a: ['10.65.0.1', 'fd65::1'], b: ['10.65.0.2', 'fd65::2'], c: ['10.65.0.3'] } as const;

interface State {
  sets?: Record<string, string[]>;
  policies?: Record<string, { ingress?: FamilyRules; egress?: FamilyRules }>;
  /** Group id (`i-…` ingress, `e-…` egress) → its policies in order. */
  groups?: Record<string, string[]>;
  profiles?: Record<string, { ingress?: FamilyRules; egress?: FamilyRules }>;
  tiers?: Partial<Record<'a' | 'b' | 'c', { ingress?: Tier; egress?: Tier }>>;
  endpointToHost?: 'drop' | 'accept';
}

/** The network's profile: in from its members, out anywhere. */
const NET = { ingress: { 4: [R({ src: src(['cal4s-net']) })], 6: [R({ src: src(['cal6s-net']) })] }, egress: any(R({})) };

function desired(o: State): Desired {
  const sets: Record<string, string[]> = { 'cal4s-net': ['10.65.0.1', '10.65.0.2', '10.65.0.3'], 'cal6s-net': ['fd65::1', 'fd65::2'], ...o.sets };
  const setSpecs: SetSpec[] = Object.entries(sets).map(([name, members]) => ({
    name,
    family: name.startsWith('cal4') ? 4 : 6,
    kind: name[4] === 'n' ? 'net' : 'addr',
    members: new Set(members),
  }));
  const empty = { 4: [], 6: [] };
  const profiles = { net: NET, ...o.profiles };
  const groups: GroupSpec[] = Object.entries(o.groups ?? {}).map(([id, policies]) => ({ id, dir: id.startsWith('i-') ? 'ingress' : 'egress', policies }));
  const endpoints: EndpointSpec[] = (['a', 'b', 'c'] as const).map((n) => ({
    ifName: `cali${n.repeat(3)}${String(' abc'.indexOf(n)).padStart(8, '0')}`,
    addrs: { 4: [ADDR[n][0]], 6: ADDR[n].slice(1) },
    ingress: o.tiers?.[n]?.ingress ?? { profile: 'net' },
    egress: o.tiers?.[n]?.egress ?? { profile: 'net' },
  }));
  return {
    endpointToHost: o.endpointToHost ?? 'drop',
    sets: new Map(setSpecs.map((s) => [s.name, s])),
    policies: new Map(Object.entries(o.policies ?? {}).map(([name, p]) => [name, { name, ingress: p.ingress ?? empty, egress: p.egress ?? empty }])),
    profiles: new Map(Object.entries(profiles).map(([name, p]) => [name, { name, ingress: p.ingress ?? empty, egress: p.egress ?? empty }])),
    groups: new Map(groups.map((g) => [g.id, g])),
    endpoints: new Map(endpoints.map((e) => [e.ifName, e])),
  };
}

type Probe = [from: Place, to: string, port: number | 'ping', expect: boolean, src?: string];

for (const backend of BACKENDS) {
  describe(`firewall semantics with real traffic: ${backend}`, { skip }, () => {
    const scope = netnsScope();
    let w: World;
    before(async () => {
      w = await buildWorld(backend, (p) => scope.create(p));
    });
    after(async () => {
      await w?.destroy();
      await scope.destroyAll();
    });

    const expectTraffic = async (probes: Probe[]) => {
      const got = await Promise.all(probes.map(([from, to, port, , s]) => (port === 'ping' ? w.ping(from, to) : w.tcp(from, to, port, s))));
      const wrong = probes
        .filter((p, i) => got[i] !== p[3])
        .map(([f, t, p, e, s]) => `${f}${s ? ` (from ${s})` : ''} -> ${t}:${p} should ${e ? 'pass' : 'be dropped'}`);
      assert.deepEqual(wrong, []);
    };

    test('with only profiles, endpoints of one network talk, reach the outside and are not reachable from it', async () => {
      await w.apply(desired({}));
      await expectTraffic([
        ['a', '10.65.0.2', 80, true],
        ['b', '10.65.0.1', 443, true],
        ['a', 'fd65::2', 80, true],
        ['a', '10.65.0.2', 'ping', true],
        ['a', EXT_V4, 80, true],
        ['ext', '10.65.0.1', 80, false],
        ['host', '10.65.0.1', 80, true],
      ]);
    });

    test('an endpoint a policy selects accepts only what a rule allows (the default deny)', async () => {
      await w.apply(
        desired({
          sets: { 'cal4s-a': ['10.65.0.1'] },
          policies: { web: { ingress: v4(R({ protocol: 6, src: src(['cal4s-a']), dst: dport(80) })) } },
          groups: { 'i-web': ['web'] },
          tiers: { b: { ingress: { group: 'i-web', profile: 'net' } } },
        }),
      );
      await expectTraffic([
        ['a', '10.65.0.2', 80, true],
        ['a', '10.65.0.2', 81, false],
        ['c', '10.65.0.2', 80, false],
        ['a', '10.65.0.2', 'ping', false],
        ['a', 'fd65::2', 80, false],
        ['b', '10.65.0.1', 80, true],
      ]);
    });

    test('log, deny, pass and allow are evaluated in order across the policies of a group, then the profile', async () => {
      const p1 = v4(
        R({ action: 'log' }),
        R({ action: 'deny', protocol: 6, src: src(['cal4s-a']), dst: dport(81) }),
        R({ action: 'pass', src: src(['cal4s-c']) }),
      );
      const p2 = v4(R({ protocol: 6, dst: dport([80, 81]) }), R({ action: 'deny' }));
      await w.apply(
        desired({
          sets: { 'cal4s-a': ['10.65.0.1'], 'cal4s-c': ['10.65.0.3'] },
          policies: { p1: { ingress: p1 }, p2: { ingress: p2 } },
          groups: { 'i-p': ['p1', 'p2'] },
          tiers: { b: { ingress: { group: 'i-p', profile: 'net' } } },
        }),
      );
      await expectTraffic([
        ['a', '10.65.0.2', 80, true],
        ['a', '10.65.0.2', 81, false],
        ['a', '10.65.0.2', 443, false],
        ['c', '10.65.0.2', 443, true],
        ['ext', '10.65.0.2', 80, true],
        ['ext', '10.65.0.2', 443, false],
      ]);
    });

    test('a long run of port rules mixing deny, log, allow and protocols keeps first-match order', async () => {
      const rules = v4(
        R({ action: 'deny', protocol: 6, src: src(['cal4s-a']), dst: dport(80) }),
        R({ protocol: 6, dst: dport([80, 81]) }),
        R({ action: 'deny', protocol: 17, dst: dport(80) }),
        R({ action: 'log', protocol: 6, dst: dport(81) }),
        R({ protocol: 6, src: src(['cal4s-c']), dst: dport(443) }),
      );
      await w.apply(
        desired({
          sets: { 'cal4s-a': ['10.65.0.1'], 'cal4s-c': ['10.65.0.3'] },
          policies: { m: { ingress: rules } },
          groups: { 'i-m': ['m'] },
          tiers: { b: { ingress: { group: 'i-m', profile: 'net' } } },
        }),
      );
      await expectTraffic([
        ['a', '10.65.0.2', 80, false],
        ['a', '10.65.0.2', 81, true],
        ['ext', '10.65.0.2', 80, true],
        ['c', '10.65.0.2', 443, true],
        ['a', '10.65.0.2', 443, false],
      ]);
    });

    test('a selector set changed member by member lets the new member in and keeps the removed one out', async () => {
      const state = (members: string[]) =>
        desired({
          sets: { 'cal4s-a': members },
          policies: { web: { ingress: v4(...[22, 80, 81, 443, 8080].map((p) => R({ protocol: 6, src: src(['cal4s-a']), dst: dport(p) }))) } },
          groups: { 'i-web': ['web'] },
          tiers: { b: { ingress: { group: 'i-web', profile: 'net' } } },
        });
      await w.apply(state(['10.65.0.1']));
      await expectTraffic([
        ['a', '10.65.0.2', 8080, true],
        ['c', '10.65.0.2', 80, false],
      ]);
      await w.apply(state(['10.65.0.1', '10.65.0.3']));
      await expectTraffic([['c', '10.65.0.2', 80, true]]);
      await w.apply(state(['10.65.0.3']));
      await expectTraffic([
        ['a', '10.65.0.2', 80, false],
        ['c', '10.65.0.2', 81, true],
      ]);
    });

    test('ports, notPorts, nets and notNets narrow a rule', async () => {
      const rule = R({ protocol: 6, src: src([], { nets: 'cal4n-lan', notNets: 'cal4n-c' }), dst: { ...none, ports: [[80, 443]], notPorts: [[81, 81]] } });
      await w.apply(
        desired({
          sets: { 'cal4n-lan': ['10.65.0.0/24'], 'cal4n-c': ['10.65.0.3/32'] },
          policies: { n: { ingress: v4(rule) } },
          groups: { 'i-n': ['n'] },
          tiers: { b: { ingress: { group: 'i-n', profile: 'net' } } },
        }),
      );
      await expectTraffic([
        ['a', '10.65.0.2', 80, true],
        ['a', '10.65.0.2', 443, true],
        ['a', '10.65.0.2', 81, false],
        ['c', '10.65.0.2', 80, false],
        ['ext', '10.65.0.2', 80, false],
      ]);
    });

    test('IPv6 follows its own rule list', async () => {
      const web = { ingress: v6(R({ protocol: 6, src: src(['cal6s-a']), dst: dport(80) })) };
      await w.apply(
        desired({
          sets: { 'cal6s-a': ['fd65::1'] },
          policies: { web },
          groups: { 'i-web': ['web'] },
          tiers: { b: { ingress: { group: 'i-web', profile: 'net' } } },
        }),
      );
      await expectTraffic([
        ['a', 'fd65::2', 80, true],
        ['a', 'fd65::2', 81, false],
        ['a', '10.65.0.2', 80, false],
      ]);
    });

    test('a source address the endpoint does not own is dropped, in both families', async () => {
      await w.apply(desired({}));
      await expectTraffic([
        ['a', '10.65.0.2', 80, true],
        ['a', '10.65.0.2', 80, false, '10.65.0.77'],
        ['a', EXT_V4, 80, false, '10.65.0.78'],
        ['a', 'fd65::2', 80, false, 'fd65::77'],
        ['c', 'fd65::2', 80, false, 'fd65::3'],
      ]);
    });

    test('traffic between two local endpoints needs both the sender egress and the receiver ingress to allow it', async () => {
      const quiet = { ingress: any(R({})), egress: any(R({ action: 'deny' })) };
      await w.apply(desired({ profiles: { quiet }, tiers: { a: { ingress: { profile: 'quiet' }, egress: { profile: 'quiet' } } } }));
      await expectTraffic([
        ['a', '10.65.0.2', 80, false],
        ['a', EXT_V4, 80, false],
        ['b', '10.65.0.1', 80, true],
        ['ext', '10.65.0.1', 80, true],
      ]);
      const out = { egress: v4(R({ protocol: 6, dst: { ...dport(80), sets: ['cal4s-b'] } })) };
      await w.apply(
        desired({
          sets: { 'cal4s-b': ['10.65.0.2'] },
          policies: { out },
          groups: { 'e-out': ['out'] },
          tiers: { a: { egress: { group: 'e-out', profile: 'net' } } },
        }),
      );
      await expectTraffic([
        ['a', '10.65.0.2', 80, true],
        ['a', '10.65.0.2', 81, false],
        ['a', '10.65.0.3', 80, false],
        ['c', '10.65.0.1', 80, true],
      ]);
    });

    test('to the host itself endpoints are dropped unless endpointToHost is accept; the host always reaches them', async () => {
      await w.apply(desired({}));
      await expectTraffic([
        ['a', HOST_V4, 22, false],
        ['a', HOST_V4, 'ping', false],
        ['host', '10.65.0.1', 22, true],
        ['host', 'fd65::1', 22, true],
      ]);
      await w.apply(desired({ endpointToHost: 'accept' }));
      await expectTraffic([
        ['a', HOST_V4, 22, true],
        ['b', HOST_V4, 'ping', true],
      ]);
    });

    test('a cali interface no endpoint names is dropped both ways', async () => {
      await w.apply(desired({ endpointToHost: 'accept' }));
      await expectTraffic([
        ['u', '10.65.0.2', 80, false],
        ['b', '10.65.0.9', 80, false],
        ['ext', '10.65.0.9', 80, false],
        ['u', EXT_V4, 80, false],
        ['u', HOST_V4, 22, false],
      ]);
    });
  });
}
