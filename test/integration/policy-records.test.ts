/**
 * Policy records as etcd holds them (endpoints, a network, GlobalNetworkSets, policies) through
 * the incremental calculator into each firewall backend, with real traffic: a network set's CIDRs
 * in a rule's selector, changed by element (overlapping an endpoint's address, which nftables'
 * interval sets refuse unless the calculator keeps them apart), and ICMP type, code and
 * notProtocol matches. The namespace world is the conformance suite's (test/harness/firewall.ts).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { desiredFromJSON, desiredToJSON } from '../../firewall/diff';
import type { EndpointRecord, NetworkSetRecord, PolicyRecord } from '../../lib/datastore/records';
import { PolicyCalculator } from '../../policy/calc';
import { canCreateNetns, netnsScope } from '../harness/netns';
import { addonLoads, BACKENDS, type Place, type World, buildWorld } from '../harness/firewall';

const hasTools = (() => {
  try {
    for (const t of ['nft', 'iptables', 'ipset', 'ping']) execFileSync('sh', ['-c', 'command -v "$1"', 'sh', t], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();
const skip = canCreateNetns() && hasTools && addonLoads() ? false : 'needs root, iproute2, nft, iptables, ipset and the libnftables addon';

type Probe = [from: Place, to: string, port: number | 'ping', expect: boolean];

for (const backend of BACKENDS) {
  describe(`policy records through the calculator into ${backend}, with real traffic`, { skip }, () => {
    const scope = netnsScope();
    let w: World;
    let calc: PolicyCalculator;
    const bad: string[] = [];
    const endpoint = (n: 'a' | 'b' | 'c', labels: Record<string, string>): EndpointRecord => ({
      id: n,
      host: 'h1',
      network: 'n1',
      ifName: w.boxes[n].ifName,
      mac: '02:00:00:00:00:01',
      ipv4: [`${w.boxes[n].v4}/32`],
      ipv6: w.boxes[n].v6 ? [`${w.boxes[n].v6}/128`] : [],
      labels,
      createdAt: '2026-01-01T00:00:00.000Z',
    });
    const upEp = (n: 'a' | 'b' | 'c', labels: Record<string, string> = {}) => calc.upsertEndpoint(`endpoints/h1/${n}`, endpoint(n, labels));
    const upNs = (s: NetworkSetRecord) => calc.upsertNetworkSet(`netsets/${s.name}`, s);
    const upPol = (p: Omit<PolicyRecord, 'order' | 'types' | 'egress'>) =>
      calc.upsertPolicy(`policies/${p.name}`, { order: 1, types: ['ingress'], egress: [], ...p });
    // A copy: the calculator changes its sets in place, and the world diffs against the last state.
    const apply = () => w.apply(desiredFromJSON(desiredToJSON(calc.desired())));
    const expectTraffic = async (probes: Probe[]) => {
      const got = await Promise.all(probes.map(([from, to, port]) => (port === 'ping' ? w.ping(from, to) : w.tcp(from, to, port))));
      const wrong = probes.filter((p, i) => got[i] !== p[3]).map(([f, t, p, e]) => `${f} -> ${t}:${p} should ${e ? 'pass' : 'be dropped'}`);
      assert.deepEqual(wrong, []);
    };

    before(async () => {
      w = await buildWorld(backend, (p) => scope.create(p));
      calc = new PolicyCalculator({ host: 'h1', endpointToHost: 'drop', onBad: (k) => bad.push(k) });
      calc.upsertNetwork('networks/h1/n1', {
        id: 'n1',
        host: 'h1',
        name: 'net',
        ipv4Pools: [],
        ipv6Pools: [],
        ipv6: true,
        options: {},
        createdAt: '2026-01-01T00:00:00.000Z',
      });
      upEp('a');
      upEp('b', { role: 'server' });
      upEp('c');
    });
    after(async () => {
      await w?.destroy();
      await scope.destroyAll();
    });

    test("a source selector matching a network set's labels allows its CIDRs in, and follows the set as it changes", async () => {
      upPol({
        name: 'partners-in',
        selector: "role == 'server'",
        ingress: [{ action: 'allow', protocol: 'tcp', source: { selector: "role == 'partner'" }, destination: { ports: [80] } }],
      });
      upNs({ name: 'partners', labels: { role: 'partner' }, nets: ['172.31.0.0/24'] });
      await apply();
      await expectTraffic([
        ['ext', '10.65.0.2', 80, true],
        ['ext', '10.65.0.2', 81, false],
        ['a', '10.65.0.2', 80, false],
      ]);
      // An endpoint labelled like the set joins it; then the set grows over that endpoint's address.
      upEp('a', { role: 'partner' });
      await apply();
      await expectTraffic([
        ['a', '10.65.0.2', 80, true],
        ['c', '10.65.0.2', 80, false],
      ]);
      upNs({ name: 'partners', labels: { role: 'partner' }, nets: ['10.65.0.0/24'] });
      await apply();
      await expectTraffic([
        ['ext', '10.65.0.2', 80, false],
        ['a', '10.65.0.2', 80, true],
        ['c', '10.65.0.2', 80, true],
      ]);
      // The set moves away: the endpoint's own address is back in the selector set, c is out.
      upNs({ name: 'partners', labels: { role: 'partner' }, nets: ['192.0.2.0/24'] });
      await apply();
      await expectTraffic([
        ['a', '10.65.0.2', 80, true],
        ['c', '10.65.0.2', 80, false],
        ['ext', '10.65.0.2', 80, false],
      ]);
      // Relabelled, it is no longer matched; a policy's own selector never picks network sets.
      upNs({ name: 'partners', labels: { role: 'server' }, nets: ['172.31.0.0/24'] });
      await apply();
      await expectTraffic([['ext', '10.65.0.2', 80, false]]);
      assert.deepEqual(bad, []);
    });

    test('ICMP type and code, notICMP and notProtocol decide which pings and connections pass', async () => {
      const icmpIn = (rules: PolicyRecord['ingress']) => upPol({ name: 'partners-in', selector: "role == 'server'", ingress: rules });
      icmpIn([
        { action: 'allow', protocol: 'icmp', icmp: { type: 8 } },
        { action: 'allow', protocol: 'icmpv6', icmp: { type: 128, code: 0 } },
      ]);
      await apply();
      await expectTraffic([
        ['a', '10.65.0.2', 'ping', true],
        ['a', 'fd65::2', 'ping', true],
        ['a', '10.65.0.2', 80, false],
      ]);
      // Echo requests have code 0: a rule for code 1 does not match them.
      icmpIn([
        { action: 'allow', protocol: 'icmp', icmp: { type: 8, code: 1 } },
        { action: 'allow', protocol: 'icmpv6', notICMP: { type: 128 } },
      ]);
      await apply();
      await expectTraffic([
        ['a', '10.65.0.2', 'ping', false],
        ['a', 'fd65::2', 'ping', false],
      ]);
      icmpIn([{ action: 'allow', notProtocol: 'tcp' }]);
      await apply();
      await expectTraffic([
        ['a', '10.65.0.2', 'ping', true],
        ['a', '10.65.0.2', 80, false],
      ]);
      icmpIn([{ action: 'deny', protocol: 'icmp', notICMP: { type: 8, code: 0 } }, { action: 'deny', notProtocol: 'icmp' }, { action: 'allow' }]);
      await apply();
      await expectTraffic([
        ['a', '10.65.0.2', 'ping', true],
        ['a', '10.65.0.2', 80, false],
        ['a', 'fd65::2', 'ping', false],
      ]);
      assert.deepEqual(bad, []);
    });
  });
}
