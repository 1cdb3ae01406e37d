/**
 * The whole node on the real kernel: Docker's calls go through the sockets, then the test
 * does Docker's part (moving the veth into container namespaces) and checks that containers
 * reach each other through the host, and that Leave removes everything.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { netnsScope, type Netns } from '../harness/netns';
import { startEtcd, type TestEtcd } from '../harness/etcd';
import { startCalico, type CalicoProcess } from '../harness/calico';
import { giveUplink, plugIntoSandbox } from '../harness/sandbox';

const hex = () => randomBytes(32).toString('hex');
const scope = netnsScope();
let host: Netns;
let etcd: TestEtcd;
let node: CalicoProcess;

before(async () => {
  host = await scope.create('nh');
  const router = await scope.create('nr');
  await giveUplink(host, router);
  etcd = await startEtcd(host);
  node = await startCalico(host, { name: 'node-it', etcd: etcd.endpoint });
  await node.ready();
});

after(async () => {
  await node?.destroy();
  await etcd?.destroy();
  await scope.destroyAll();
});

test('two containers on one network ping each other through the host, over IPv4 and IPv6, and Leave removes everything', async () => {
  const d = node.docker;
  const v4 = await d.ok('ipam', 'RequestPool', { AddressSpace: 'CalicoLocalAddressSpace', Pool: '', SubPool: '', Options: null, V6: false });
  const v6 = await d.ok('ipam', 'RequestPool', { AddressSpace: 'CalicoLocalAddressSpace', Pool: '', SubPool: '', Options: null, V6: true });
  const nid = hex();
  await d.ok('net', 'CreateNetwork', {
    NetworkID: nid,
    Options: { 'com.docker.network.enable_ipv6': true, 'com.docker.network.generic': {} },
    IPv4Data: [{ AddressSpace: 'CalicoLocalAddressSpace', Pool: v4.Pool, Gateway: v4.Data['com.docker.network.gateway'] }],
    IPv6Data: [{ AddressSpace: 'CalicoLocalAddressSpace', Pool: v6.Pool, Gateway: v6.Data['com.docker.network.gateway'] }],
  });
  const containers = [];
  for (const name of ['c1', 'c2']) {
    const sandbox = await scope.create(name);
    const eid = hex();
    const a4 = (await d.ok('ipam', 'RequestAddress', { PoolID: v4.PoolID, Address: '', Options: null })).Address as string;
    const a6 = (await d.ok('ipam', 'RequestAddress', { PoolID: v6.PoolID, Address: '', Options: null })).Address as string;
    await d.ok('net', 'CreateEndpoint', { NetworkID: nid, EndpointID: eid, Interface: { Address: a4, AddressIPv6: a6, MacAddress: '' }, Options: {} });
    const join = await d.ok('net', 'Join', { NetworkID: nid, EndpointID: eid, SandboxKey: '', Options: {} });
    await plugIntoSandbox(host, sandbox, join, { v4: a4, v6: a6 });
    containers.push({ sandbox, eid, ip4: a4.split('/')[0], ip6: a6.split('/')[0], hostIf: `cali${eid.slice(0, 11)}` });
  }
  const [c1, c2] = containers;

  // The host side: veth, proxy ARP, the /32 and /128 routes with a protocol BIRD will learn.
  for (const c of containers) {
    assert.equal(await host.sysctl(`net/ipv4/conf/${c.hostIf}/proxy_arp`), '1');
    const r4 = await host.ipJson<Array<{ dst: string; dev: string; protocol: string }>>(['route', 'show', `${c.ip4}/32`]);
    assert.deepEqual(
      r4.map((r) => [r.dst, r.dev, r.protocol]),
      [[c.ip4, c.hostIf, 'static']],
    );
    const r6 = await host.ipJson<Array<{ dst: string; dev: string; protocol: string }>>(['-6', 'route', 'show', `${c.ip6}/128`]);
    assert.deepEqual(
      r6.map((r) => [r.dst, r.dev, r.protocol]),
      [[c.ip6, c.hostIf, 'static']],
    );
  }
  // Inside the container: only the default via 169.254.1.1 and its connected route.
  const routes = await c1.sandbox.ipJson<Array<{ dst: string; gateway?: string }>>(['route', 'show']);
  assert.deepEqual(
    routes.map((r) => [r.dst, r.gateway ?? null]),
    [
      ['default', '169.254.1.1'],
      ['169.254.1.1', null],
    ],
  );

  await c1.sandbox.exec('ping', ['-c', '2', '-i', '0.2', '-W', '2', c2.ip4]);
  await c2.sandbox.exec('ping', ['-c', '2', '-i', '0.2', '-W', '2', c1.ip4]);
  await c1.sandbox.exec('ping', ['-6', '-c', '2', '-i', '0.2', '-W', '2', c2.ip6]);

  const eps = JSON.parse((await node.cli(['endpoint', 'ls', '--json'])).stdout) as Array<{ id: string }>;
  assert.deepEqual(eps.map((e) => e.id).sort(), [c1.eid, c2.eid].sort());

  for (const c of containers) {
    await d.ok('net', 'Leave', { NetworkID: nid, EndpointID: c.eid });
    await d.ok('net', 'DeleteEndpoint', { NetworkID: nid, EndpointID: c.eid });
    await d.ok('ipam', 'ReleaseAddress', { PoolID: v4.PoolID, Address: c.ip4 });
    await d.ok('ipam', 'ReleaseAddress', { PoolID: v6.PoolID, Address: c.ip6 });
  }
  assert.deepEqual(
    await host.ipJson(['link', 'show', 'type', 'veth']).then((l) => (l as Array<{ ifname: string }>).filter((x) => x.ifname.startsWith('cali'))),
    [],
  );
  assert.deepEqual(await host.ipJson(['route', 'show', 'proto', 'static']), []);
  assert.deepEqual(await c1.sandbox.ipJson(['link', 'show', 'eth0']).catch(() => []), []);
  const check = await node.cli(['ipam', 'check', '--grace', '0', '--json']);
  assert.equal(JSON.parse(check.stdout).ok, true);
});
