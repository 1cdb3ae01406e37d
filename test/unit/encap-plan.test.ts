/** Encapsulation plans from etcd (encap/plan.ts): which blocks go through which tunnel, and which natively. */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { encapPlan, linkLocalOf, vtepMac, type PlanHost, type PlanInput } from '../../encap/plan';

const host = (name: string, ipv4: string, subnet: string, extra: Partial<PlanHost> = {}): PlanHost => ({
  name,
  ipv4,
  ipv4Subnet: subnet,
  vxlanMac: vtepMac(name),
  ...extra,
});
const a1 = host('a1', '172.31.1.1', '172.31.1.0/24', { ipv6: 'fd31:1::1' });
const a2 = host('a2', '172.31.1.2', '172.31.1.0/24', { ipv6: 'fd31:1::2' });
const b1 = host('b1', '172.31.2.1', '172.31.2.0/24');
const affinities = [
  { host: 'a1', cidr: '10.65.0.0/26' },
  { host: 'a2', cidr: '10.65.0.64/26' },
  { host: 'b1', cidr: '10.65.0.128/26' },
  { host: 'a2', cidr: 'fd65::/122' },
  { host: 'b1', cidr: 'fd65::40/122' },
];
const input = (vxlanMode?: 'Always' | 'CrossSubnet' | 'Never', extra: Partial<PlanInput> = {}): PlanInput => ({
  self: a1,
  hosts: [a1, a2, b1],
  pools: [
    { cidr: '10.65.0.0/16', ...(vxlanMode ? { vxlanMode } : {}) },
    { cidr: 'fd65::/64', ...(vxlanMode ? { vxlanMode } : {}) },
  ],
  affinities,
  uplinkMtu: 1500,
  ...extra,
});

describe('encapsulation plans', () => {
  test('a VTEP MAC is the same for a host name every time, unicast and locally administered', () => {
    assert.equal(vtepMac('a1'), vtepMac('a1'));
    assert.notEqual(vtepMac('a1'), vtepMac('a2'));
    const first = parseInt(vtepMac('a1').slice(0, 2), 16);
    assert.equal(first & 0x01, 0);
    assert.equal(first & 0x02, 0x02);
  });

  test('the IPv6 next hop of a VTEP is the EUI-64 link-local address of its MAC', () => {
    assert.equal(linkLocalOf('02:11:22:33:44:55'), 'fe80::11:22ff:fe33:4455');
  });

  test('Never: no tunnel, no routes: BGP routes the pool as before', () => {
    const p = encapPlan(input());
    assert.equal(p.vxlan, undefined);
    assert.deepEqual(p.routes, []);
  });

  test('Always: every other host’s blocks go through vxlan.calico, MTU 50 below the uplink', () => {
    const p = encapPlan(input('Always'));
    assert.deepEqual(p.vxlan, { vni: 4096, port: 4789, local: '172.31.1.1', mac: vtepMac('a1'), mtu: 1450 });
    assert.deepEqual(p.routes, [
      { dst: '10.65.0.128/26', host: 'b1', via: '172.31.2.1', dev: 'vxlan.calico', onlink: true },
      { dst: '10.65.0.64/26', host: 'a2', via: '172.31.1.2', dev: 'vxlan.calico', onlink: true },
      { dst: 'fd65::/122', host: 'a2', via: linkLocalOf(vtepMac('a2')), dev: 'vxlan.calico', onlink: false },
      { dst: 'fd65::40/122', host: 'b1', via: linkLocalOf(vtepMac('b1')), dev: 'vxlan.calico', onlink: false },
    ]);
    assert.ok(!p.routes.some((r) => r.dst === '10.65.0.0/26'), "this host's own block is never routed away");
    assert.deepEqual(
      p.fdb.sort((x, y) => x.dst.localeCompare(y.dst)),
      [
        { mac: vtepMac('a2'), dst: '172.31.1.2' },
        { mac: vtepMac('b1'), dst: '172.31.2.1' },
      ],
    );
    assert.equal(p.neighbours.length, 4, 'one IPv4 and one IPv6 next hop per remote VTEP');
  });

  test('CrossSubnet: hosts in this subnet are reached natively, hosts across a router through the tunnel', () => {
    const p = encapPlan(input('CrossSubnet'));
    const r = Object.fromEntries(p.routes.map((x) => [x.dst, x]));
    assert.deepEqual(r['10.65.0.64/26'], { dst: '10.65.0.64/26', host: 'a2', via: '172.31.1.2', onlink: false });
    assert.deepEqual(r['fd65::/122'], { dst: 'fd65::/122', host: 'a2', via: 'fd31:1::2', onlink: false }, 'IPv6 natively via the host’s IPv6 address');
    assert.equal(r['10.65.0.128/26'].dev, 'vxlan.calico');
    assert.ok(p.vxlan, 'the device exists for the hosts across the router');
  });

  test('CrossSubnet with this host’s subnet unknown encapsulates everything, which always works', () => {
    const p = encapPlan(input('CrossSubnet', { self: { ...a1, ipv4Subnet: undefined } }));
    assert.ok(p.routes.every((r) => r.dev === 'vxlan.calico'));
  });

  test('a host that has not published a VTEP yet is skipped with a reason, the others are routed', () => {
    const p = encapPlan(input('Always', { hosts: [a1, a2, { ...b1, vxlanMac: undefined }] }));
    assert.ok(!p.routes.some((r) => r.dst === '10.65.0.128/26'));
    assert.match(p.skipped.join('\n'), /10\.65\.0\.128\/26: host b1 has no VXLAN tunnel endpoint/);
  });

  test('IP-in-IP: tunl0 at 20 below the uplink, and its on-link routes listed as BIRD’s, not programmed by the agent', () => {
    const p = encapPlan({ ...input(), pools: [{ cidr: '10.65.0.0/16', ipipMode: 'Always' }] });
    assert.deepEqual(p.ipip, { mtu: 1480 });
    assert.equal(p.vxlan, undefined);
    assert.deepEqual(p.routes, [
      { dst: '10.65.0.128/26', host: 'b1', via: '172.31.2.1', dev: 'tunl0', onlink: true, bird: true },
      { dst: '10.65.0.64/26', host: 'a2', via: '172.31.1.2', dev: 'tunl0', onlink: true, bird: true },
    ]);
  });

  test('IP-in-IP CrossSubnet keeps the same subnet native', () => {
    const p = encapPlan({ ...input(), pools: [{ cidr: '10.65.0.0/16', ipipMode: 'CrossSubnet' }] });
    assert.deepEqual(
      p.routes.map((r) => [r.dst, r.dev ?? 'native']),
      [
        ['10.65.0.128/26', 'tunl0'],
        ['10.65.0.64/26', 'native'],
      ],
    );
  });

  test('blocks outside every pool, or in a pool without encapsulation, are left to BGP', () => {
    const p = encapPlan({
      ...input(),
      pools: [{ cidr: '10.65.0.0/17', vxlanMode: 'Always' }, { cidr: 'fd65::/64' }],
      affinities: [...affinities, { host: 'b1', cidr: '10.66.0.0/26' }],
    });
    assert.deepEqual(p.routes.map((r) => r.dst).sort(), ['10.65.0.128/26', '10.65.0.64/26']);
  });
});
