/**
 * VXLAN on the real kernel: two hosts on a fabric, each with `calico node` and BIRD off, so
 * every route between them comes from the encapsulation agent. The default pools ask for VXLAN;
 * containers on the two hosts reach each other over IPv4 and IPv6 inside UDP 4789, then the
 * pool is switched live to CrossSubnet (same subnet: native routes), to Never (no routes at all
 * without BGP) and back, and a route deleted by hand is put back by the periodic check.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { netnsScope, type Netns } from '../harness/netns';
import { startCalico, type CalicoProcess } from '../harness/calico';
import { plugIntoSandbox } from '../harness/sandbox';
import { type Fabric, startFabric } from '../harness/fabric';
import { vtepMac } from '../../encap/plan';

const hex = () => randomBytes(32).toString('hex');
const scope = netnsScope();
let fabric: Fabric;
const hosts: Array<{ ns: Netns; ip: string; node: CalicoProcess; nid: string }> = [];
const ctrs: Array<{ sandbox: Netns; ip: string; ip6: string }> = [];

interface Route {
  dst: string;
  gateway?: string;
  dev?: string;
  flags?: string[];
}
const ours = async (ns: Netns) => [
  ...(await ns.ipJson<Route[]>(['-4', 'route', 'show', 'proto', '80'])),
  ...(await ns.ipJson<Route[]>(['-6', 'route', 'show', 'proto', '80'])),
];
const pings = (from: Netns, to: string) =>
  from.exec('ping', ['-c', '1', '-W', '1', to]).then(
    () => true,
    () => false,
  );

async function until(fn: () => Promise<boolean>, what: string, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await fn().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms\n${hosts.map((h) => h.node.logs().slice(-1500)).join('\n---\n')}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Captures on the fabric bridge while `traffic` runs: what crossed between the hosts. */
async function capture(filter: string[], traffic: () => Promise<unknown>): Promise<string> {
  const p = fabric.ns.spawn('tcpdump', ['-l', '-n', '-i', 'br0', '-c', '1', ...filter]);
  let out = '';
  p.stdout?.on('data', (d) => (out += d));
  const exited = new Promise((r) => p.on('exit', r));
  await new Promise((r) => setTimeout(r, 500)); // tcpdump attaches
  await traffic();
  await Promise.race([exited, new Promise((r) => setTimeout(r, 3000))]);
  p.kill();
  return out;
}

async function addHost(i: number) {
  const { ns, ip, ip6 } = await fabric.addHost(`eh${i}`, i);
  const node = await startCalico(ns, {
    name: `eh${i}`,
    etcd: fabric.etcd.endpoint,
    env: {
      CALICO_IP: ip,
      CALICO_IP6: ip6,
      CALICO_BIRD: 'off',
      CALICO_POLICY: 'off',
      CALICO_LOG_LEVEL: 'info',
      CALICO_RECONCILE_INTERVAL: '1',
      CALICO_IPV4POOL_VXLAN: 'Always',
      CALICO_IPV6POOL_VXLAN: 'Always',
    },
  });
  await node.ready();
  const nid = hex();
  await node.docker.ok('net', 'CreateNetwork', {
    NetworkID: nid,
    Options: { 'com.docker.network.enable_ipv6': true },
    IPv4Data: [{ Pool: '0.0.0.0/0', Gateway: '0.0.0.0/0' }],
    IPv6Data: [{ Pool: '::/0', Gateway: '::/0' }],
  });
  const h = { ns, ip, node, nid };
  hosts.push(h);
  const d = node.docker;
  const sandbox = await scope.create('ectr');
  const eid = hex();
  const a = (await d.ok('ipam', 'RequestAddress', { PoolID: 'CalicoPoolIPv4', Address: '', Options: null })).Address as string;
  const a6 = (await d.ok('ipam', 'RequestAddress', { PoolID: 'CalicoPoolIPv6', Address: '', Options: null })).Address as string;
  await d.ok('net', 'CreateEndpoint', { NetworkID: nid, EndpointID: eid, Interface: { Address: a, AddressIPv6: a6 }, Options: null });
  const join = await d.ok('net', 'Join', { NetworkID: nid, EndpointID: eid, SandboxKey: `/netns/${sandbox.name}`, Options: null });
  await plugIntoSandbox(ns, sandbox, join, { v4: a, v6: a6 });
  ctrs.push({ sandbox, ip: a.split('/')[0], ip6: a6.split('/')[0] });
}

before(async () => {
  fabric = await startFabric(scope);
  await addHost(1);
  await addHost(2);
});

after(async () => {
  await Promise.all(hosts.map((h) => h.node.destroy()));
  await fabric?.etcd.destroy();
  await scope.destroyAll();
});

test('with VXLAN pools and no BGP, containers on two hosts reach each other over IPv4 and IPv6 inside UDP 4789', async () => {
  const [h1, h2] = hosts;
  const [c1, c2] = ctrs;
  const [link] = await h1.ns.ipJson<Array<{ address: string; mtu: number; linkinfo: { info_data: { id: number; port: number; local: string } } }>>([
    '-d',
    'link',
    'show',
    'dev',
    'vxlan.calico',
  ]);
  assert.equal(link.address, vtepMac('eh1'));
  assert.equal(link.mtu, 1450, 'the uplink MTU less VXLAN');
  assert.deepEqual([link.linkinfo.info_data.id, link.linkinfo.info_data.port, link.linkinfo.info_data.local], [4096, 4789, h1.ip]);
  await until(async () => (await ours(h1.ns)).filter((r) => r.dev === 'vxlan.calico').length === 2, "h1 routes h2's blocks through vxlan.calico");
  await until(() => pings(c1.sandbox, c2.ip), 'IPv4 across the tunnel');
  await until(() => pings(c2.sandbox, c1.ip6), 'IPv6 across the tunnel');
  const seen = await capture(['udp', 'port', '4789'], () => pings(c1.sandbox, c2.ip));
  assert.match(seen, new RegExp(`${h1.ip.replace(/\./g, '\\.')}\\.\\d+ > ${h2.ip.replace(/\./g, '\\.')}\\.4789: VXLAN`), seen);
  const [eth] = await c1.sandbox.ipJson<Array<{ mtu: number }>>(['link', 'show', 'dev', 'eth0']);
  assert.equal(eth.mtu, 1450, "a container on a VXLAN pool fits inside the tunnel's MTU");
});

test("calico status shows this host's tunnel and how each other host's blocks are reached", async () => {
  const [h1] = hosts;
  const st = JSON.parse((await h1.node.cli(['status', '--json'])).stdout) as {
    encapsulation: {
      devices: Record<string, { up: boolean; mtu: number; mac: string } | null>;
      hosts: Array<{ host: string; vtep: string; blocks: Array<{ via: string }> }>;
    };
    pools: Array<{ cidr: string; vxlanMode: string }>;
  };
  assert.deepEqual(st.encapsulation.devices['vxlan.calico'], { up: true, mtu: 1450, mac: vtepMac('eh1') });
  const eh2 = st.encapsulation.hosts.find((h) => h.host === 'eh2')!;
  assert.equal(eh2.vtep, vtepMac('eh2'));
  assert.deepEqual(
    eh2.blocks.map((b) => b.via),
    ['vxlan', 'vxlan'],
  );
  assert.ok(st.pools.every((p) => p.vxlanMode === 'Always'));
  const human = (await h1.node.cli(['status'])).stdout;
  assert.match(human, /tunnels: +vxlan\.calico up mtu 1450 vtep/);
  assert.match(human, /eh2 .*vxlan/);
});

test('switched live to CrossSubnet, hosts in one subnet route natively, and back to Always the tunnel returns', async () => {
  const [h1, h2] = hosts;
  const [c1, c2] = ctrs;
  await h1.node.cli(['pool', 'set', '10.65.0.0/16', '--vxlan-mode', 'CrossSubnet']);
  await until(async () => (await ours(h1.ns)).some((r) => r.dst.startsWith('10.65.') && r.gateway === h2.ip && r.dev === 'eth0'), 'a native route via h2');
  assert.ok(await pings(c1.sandbox, c2.ip), 'still reachable, addresses unchanged');
  const seen = await capture(['icmp'], () => pings(c1.sandbox, c2.ip));
  assert.match(seen, new RegExp(`${c1.ip.replace(/\./g, '\\.')} > ${c2.ip.replace(/\./g, '\\.')}: ICMP echo request`), `plain ICMP on the fabric: ${seen}`);
  await h1.node.cli(['pool', 'set', '10.65.0.0/16', '--vxlan-mode', 'Always']);
  await until(async () => (await ours(h2.ns)).some((r) => r.dst.startsWith('10.65.') && r.dev === 'vxlan.calico'), 'through the tunnel again');
  assert.ok(await pings(c1.sandbox, c2.ip));
});

test('switched to Never with BGP off, the routes go and the containers no longer reach each other; a pool with none removes the device', async () => {
  const [h1] = hosts;
  const [c1, c2] = ctrs;
  await h1.node.cli(['pool', 'set', '10.65.0.0/16', '--vxlan-mode', 'Never']);
  await until(async () => !(await ours(h1.ns)).some((r) => r.dst.startsWith('10.65.')), 'IPv4 routes removed');
  assert.equal(await pings(c1.sandbox, c2.ip), false);
  assert.ok(await pings(c1.sandbox, c2.ip6), 'the IPv6 pool keeps its tunnel');
  await h1.node.cli(['pool', 'set', 'fd65::/64', '--vxlan-mode', 'Never']);
  await until(async () => (await h1.ns.ip(['link', 'show']).then((t) => !t.includes('vxlan.calico'))) === true, 'vxlan.calico removed');
  await h1.node.cli(['pool', 'set', '10.65.0.0/16', '--vxlan-mode', 'Always']);
  await h1.node.cli(['pool', 'set', 'fd65::/64', '--vxlan-mode', 'Always']);
  await until(() => pings(c1.sandbox, c2.ip), 'back through the tunnel');
});

test('a tunnel route, neighbour or forwarding entry removed by hand is put back by the periodic check', async () => {
  const [h1, h2] = hosts;
  const [c1, c2] = ctrs;
  await until(async () => (await ours(h1.ns)).filter((r) => r.dev === 'vxlan.calico').length === 2, 'both families through the tunnel');
  await new Promise((r) => setTimeout(r, 1500)); // the last pool change applied, so only the check can repair
  const mark = h1.node.logs().length;
  const route = (await ours(h1.ns)).find((r) => r.dst.startsWith('10.65.') && r.dev === 'vxlan.calico')!;
  await h1.ns.ip(['route', 'del', route.dst, 'proto', '80']);
  await h1.ns.ip(['neigh', 'flush', 'dev', 'vxlan.calico', 'nud', 'permanent']);
  await h1.ns.exec('bridge', ['fdb', 'del', vtepMac('eh2'), 'dev', 'vxlan.calico', 'dst', h2.ip, 'self']);
  await until(() => pings(c1.sandbox, c2.ip), 'repaired');
  await until(async () => /encapsulation state was changed outside calico node; repaired/.test(h1.node.logs().slice(mark)), 'the repair logged');
});
