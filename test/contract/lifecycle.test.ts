/**
 * Contract tests: a fake Docker daemon drives the real `calico node` (real etcd, real kernel
 * inside a throw-away namespace) through the call sequences of docs/protocol.md §5 and
 * checks the exact JSON answers, including duplicates, replays and empty bodies.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { Netns } from '../harness/netns';
import type { CalicoProcess } from '../harness/calico';
import { startContractHost, type ContractHost } from '../harness/contract-host';
import type { FakeDocker } from '../harness/plugin-client';

const hex = () => randomBytes(32).toString('hex');
const MAC = /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/;

let host: ContractHost | undefined;
let ns: Netns;
let node: CalicoProcess;
let docker: FakeDocker;

before(async () => {
  host = await startContractHost('ct');
  ({ ns, node, docker } = host);
});

after(async () => {
  await host?.destroy();
});

/** `docker network create -d calico --ipam-driver calico-ipam [opts] NAME` (§5.1). */
async function createNetwork(o: { subnet?: string; range?: string; v6subnet?: string; ipv6?: boolean; mtu?: string } = {}) {
  const id = hex();
  const v4 = await docker.ok('ipam', 'RequestPool', {
    AddressSpace: 'CalicoLocalAddressSpace',
    Pool: o.subnet ?? '',
    SubPool: o.range ?? '',
    Options: {},
    V6: false,
  });
  let v6: any;
  if (o.ipv6)
    v6 = await docker.ok('ipam', 'RequestPool', { AddressSpace: 'CalicoLocalAddressSpace', Pool: o.v6subnet ?? '', SubPool: '', Options: {}, V6: true });
  await docker.ok('net', 'CreateNetwork', {
    NetworkID: id,
    Options: { 'com.docker.network.enable_ipv6': !!o.ipv6, 'com.docker.network.generic': o.mtu ? { 'com.docker.network.driver.mtu': o.mtu } : {} },
    IPv4Data: [{ AddressSpace: 'CalicoLocalAddressSpace', Pool: v4.Pool, Gateway: v4.Data['com.docker.network.gateway'] }],
    IPv6Data: v6 ? [{ AddressSpace: 'CalicoLocalAddressSpace', Pool: v6.Pool, Gateway: v6.Data['com.docker.network.gateway'] }] : [],
  });
  return { id, v4, v6 };
}

/** `docker run --network NET` (§5.2): RequestAddress, CreateEndpoint, Join, ProgramExternalConnectivity. */
async function run(net: { id: string; v4: any; v6?: any }, o: { ip?: string } = {}) {
  const eid = hex();
  const a4 = await docker.ok('ipam', 'RequestAddress', { PoolID: net.v4.PoolID, Address: o.ip ?? '', Options: null });
  const a6 = net.v6 ? await docker.ok('ipam', 'RequestAddress', { PoolID: net.v6.PoolID, Address: '', Options: null }) : undefined;
  const ce = await docker.ok('net', 'CreateEndpoint', {
    NetworkID: net.id,
    EndpointID: eid,
    Interface: { Address: a4.Address, AddressIPv6: a6?.Address ?? '', MacAddress: '' },
    Options: { 'com.docker.network.endpoint.exposedports': [], 'com.docker.network.portmap': [] },
  });
  const join = await docker.ok('net', 'Join', { NetworkID: net.id, EndpointID: eid, SandboxKey: '/var/run/docker/netns/x', Options: {} });
  assert.deepEqual(await docker.ok('net', 'ProgramExternalConnectivity', { NetworkID: net.id, EndpointID: eid, Options: {} }), {});
  assert.deepEqual(await docker.ok('net', 'EndpointOperInfo', { NetworkID: net.id, EndpointID: eid }), { Value: {} });
  return { eid, a4, a6, ce, join };
}

/** `docker rm -f` / `docker network disconnect` (§5.4, §5.5). */
async function remove(net: { id: string; v4: any; v6?: any }, ep: { eid: string; a4: any; a6?: any }) {
  assert.deepEqual(await docker.ok('net', 'RevokeExternalConnectivity', { NetworkID: net.id, EndpointID: ep.eid }), {});
  assert.deepEqual(await docker.ok('net', 'Leave', { NetworkID: net.id, EndpointID: ep.eid }), {});
  assert.deepEqual(await docker.ok('net', 'DeleteEndpoint', { NetworkID: net.id, EndpointID: ep.eid }), {});
  assert.deepEqual(await docker.ok('ipam', 'ReleaseAddress', { PoolID: net.v4.PoolID, Address: ep.a4.Address.split('/')[0] }), {});
  if (ep.a6) assert.deepEqual(await docker.ok('ipam', 'ReleaseAddress', { PoolID: net.v6.PoolID, Address: ep.a6.Address.split('/')[0] }), {});
}

/** `docker network rm` (§5.6). */
async function removeNetwork(net: { id: string; v4: any; v6?: any }) {
  assert.deepEqual(await docker.ok('ipam', 'ReleaseAddress', { PoolID: net.v4.PoolID, Address: '0.0.0.0' }), {});
  assert.deepEqual(await docker.ok('ipam', 'ReleasePool', { PoolID: net.v4.PoolID }), {});
  if (net.v6) assert.deepEqual(await docker.ok('ipam', 'ReleasePool', { PoolID: net.v6.PoolID }), {});
  assert.deepEqual(await docker.ok('net', 'DeleteNetwork', { NetworkID: net.id }), {});
}

describe('plugin activation', () => {
  test('answers Activate and both GetCapabilities with the exact documented JSON', async () => {
    const act = await import('../harness/plugin-client');
    assert.deepEqual((await act.callPlugin(docker.networkSock, 'Plugin.Activate')).body, { Implements: ['NetworkDriver'] });
    assert.deepEqual((await act.callPlugin(docker.ipamSock, 'Plugin.Activate')).body, { Implements: ['IpamDriver'] });
    assert.deepEqual(await docker.ok('net', 'GetCapabilities'), { Scope: 'local', ConnectivityScope: 'global', GwAllocChecker: true });
    assert.deepEqual(await docker.ok('ipam', 'GetCapabilities'), { RequiresMACAddress: false, RequiresRequestReplay: false });
    assert.deepEqual(await docker.ok('ipam', 'GetDefaultAddressSpaces'), {
      LocalDefaultAddressSpace: 'CalicoLocalAddressSpace',
      GlobalDefaultAddressSpace: 'CalicoGlobalAddressSpace',
    });
  });
});

describe('docker network create', () => {
  test('a network without a subnet gets the any-pool marker and the link-local gateway marker', async () => {
    const r = await docker.ok('ipam', 'RequestPool', { AddressSpace: 'CalicoLocalAddressSpace', Pool: '', SubPool: '', Options: null, V6: false });
    assert.deepEqual(r, { PoolID: 'CalicoPoolIPv4', Pool: '0.0.0.0/0', Data: { 'com.docker.network.gateway': '0.0.0.0/0' } });
    const r6 = await docker.ok('ipam', 'RequestPool', { AddressSpace: 'CalicoLocalAddressSpace', Pool: '', SubPool: '', Options: null, V6: true });
    assert.deepEqual(r6, { PoolID: 'CalicoPoolIPv6', Pool: '::/0', Data: { 'com.docker.network.gateway': '::/0' } });
  });

  test('a subnet equal to or inside a pool is accepted and a replayed RequestPool gets the same answer', async () => {
    const eq = { AddressSpace: 'CalicoLocalAddressSpace', Pool: '10.65.0.0/16', SubPool: '', Options: {}, V6: false };
    assert.deepEqual(await docker.ok('ipam', 'RequestPool', eq), {
      PoolID: 'CalicoPoolIPv4|10.65.0.0/16',
      Pool: '10.65.0.0/16',
      Data: { 'com.docker.network.gateway': '0.0.0.0/0' },
    });
    assert.deepEqual(await docker.ok('ipam', 'RequestPool', eq), {
      PoolID: 'CalicoPoolIPv4|10.65.0.0/16',
      Pool: '10.65.0.0/16',
      Data: { 'com.docker.network.gateway': '0.0.0.0/0' },
    });
    const inside = await docker.ok('ipam', 'RequestPool', { ...eq, Pool: '10.65.7.0/24', SubPool: '10.65.7.128/25' });
    assert.deepEqual(inside, {
      PoolID: 'CalicoPoolIPv4|10.65.7.0/24|10.65.7.128/25',
      Pool: '10.65.7.0/24',
      Data: { 'com.docker.network.gateway': '0.0.0.0/0' },
    });
  });

  test('a subnet outside every pool is refused with a message listing the pools', async () => {
    const r = await docker.ipam('RequestPool', { AddressSpace: 'CalicoLocalAddressSpace', Pool: '10.99.0.0/16', SubPool: '', Options: {}, V6: false });
    assert.equal(r.status, 400);
    assert.match(r.body.Err, /10\.99\.0\.0\/16 is not inside any Calico IP pool \(IPv4 pools: 10\.65\.0\.0\/16\)/);
  });

  test('--gateway is refused with an explanation of the link-local gateway', async () => {
    const pool = await docker.ok('ipam', 'RequestPool', { AddressSpace: 'CalicoLocalAddressSpace', Pool: '10.65.8.0/24', SubPool: '', Options: {}, V6: false });
    const r = await docker.ipam('RequestAddress', { PoolID: pool.PoolID, Address: '10.65.8.1', Options: { RequestAddressType: 'com.docker.network.gateway' } });
    assert.equal(r.status, 400);
    assert.match(r.body.Err, /do not take --gateway.*169\.254\.1\.1/);
  });

  test('unknown -o options and --ipam-opt are refused by name', async () => {
    const r = await docker.net('CreateNetwork', {
      NetworkID: hex(),
      Options: { 'com.docker.network.enable_ipv6': false, 'com.docker.network.generic': { zeta: '1', alpha: '2' } },
      IPv4Data: [{ AddressSpace: 'CalicoLocalAddressSpace', Pool: '0.0.0.0/0', Gateway: '0.0.0.0/0' }],
      IPv6Data: [],
    });
    assert.equal(r.status, 400);
    assert.equal(r.body.Err, 'calico does not support the options alpha, zeta; known options: com.docker.network.driver.mtu');
    const p = await docker.ipam('RequestPool', { AddressSpace: 'CalicoLocalAddressSpace', Pool: '', SubPool: '', Options: { foo: 'bar' }, V6: false });
    assert.equal(p.status, 400);
    assert.match(p.body.Err, /IPAM option\(s\) foo/);
  });

  test('a network made with another IPAM driver is refused', async () => {
    const r = await docker.net('CreateNetwork', {
      NetworkID: hex(),
      Options: {},
      IPv4Data: [{ AddressSpace: 'LocalDefault', Pool: '172.18.0.0/16', Gateway: '172.18.0.1/16' }],
      IPv6Data: [],
    });
    assert.equal(r.status, 400);
    assert.match(r.body.Err, /--ipam-driver calico-ipam/);
  });
});

describe('docker run, disconnect and rm', () => {
  test('a container gets a /32, a generated MAC and the link-local gateway, and replays get the same answers', async () => {
    const net = await createNetwork();
    const ep = await run(net);
    assert.match(ep.a4.Address, /^10\.65\.\d+\.\d+\/32$/);
    assert.deepEqual(Object.keys(ep.a4), ['Address', 'Data']);
    assert.match(ep.ce.Interface.MacAddress, MAC);
    assert.deepEqual(ep.join, {
      InterfaceName: { SrcName: `tmp${ep.eid.slice(0, 11)}`, DstPrefix: 'eth' },
      Gateway: '169.254.1.1',
      StaticRoutes: [{ Destination: '169.254.1.1/32', RouteType: 1 }],
      DisableGatewayService: false,
    });
    // Replays: same endpoint, same answers.
    const again = await docker.ok('net', 'CreateEndpoint', {
      NetworkID: net.id,
      EndpointID: ep.eid,
      Interface: { Address: ep.a4.Address, AddressIPv6: '', MacAddress: '' },
      Options: null,
    });
    assert.deepEqual(again, ep.ce);
    assert.deepEqual(await docker.ok('net', 'Join', { NetworkID: net.id, EndpointID: ep.eid, SandboxKey: '', Options: null }), ep.join);
    const links = await ns.ipJson<Array<{ ifname: string; mtu: number }>>(['link', 'show', `cali${ep.eid.slice(0, 11)}`]);
    assert.equal(links.length, 1);
    await remove(net, ep);
    await removeNetwork(net);
    assert.deepEqual(await ns.ipJson(['link', 'show', 'type', 'veth']), []);
  });

  test('a dual-stack container gets a /128 and an IPv6 link-local gateway', async () => {
    const net = await createNetwork({ ipv6: true });
    const ep = await run(net);
    assert.match(ep.a6.Address, /^fd65::[0-9a-f:]+\/128$/);
    assert.equal(ep.join.GatewayIPv6, 'fe80::ecee:eeff:feee:eeee');
    await remove(net, ep);
    await removeNetwork(net);
  });

  test('--ip is honoured and a taken --ip is refused naming the holder', async () => {
    const net = await createNetwork({ subnet: '10.65.20.0/24' });
    const ep = await run(net, { ip: '10.65.20.7' });
    assert.equal(ep.a4.Address, '10.65.20.7/32');
    const clash = await docker.ipam('RequestAddress', { PoolID: net.v4.PoolID, Address: '10.65.20.7', Options: null });
    assert.equal(clash.status, 400);
    assert.match(clash.body.Err, new RegExp(`10\\.65\\.20\\.7 is already in use by endpoint ${ep.eid.slice(0, 12)}`));
    const outside = await docker.ipam('RequestAddress', { PoolID: net.v4.PoolID, Address: '10.65.21.7', Options: null });
    assert.equal(outside.status, 400);
    assert.match(outside.body.Err, /outside the network's subnet 10\.65\.20\.0\/24/);
    await remove(net, ep);
    await removeNetwork(net);
  });

  test('--ip-range limits addresses to the range and aux addresses are never handed out', async () => {
    const id = hex();
    const pool = await docker.ok('ipam', 'RequestPool', {
      AddressSpace: 'CalicoLocalAddressSpace',
      Pool: '10.65.30.0/24',
      SubPool: '10.65.30.0/30',
      Options: {},
      V6: false,
    });
    const aux = await docker.ok('ipam', 'RequestAddress', { PoolID: pool.PoolID, Address: '10.65.30.1', Options: null });
    assert.equal(aux.Address, '10.65.30.1/32');
    await docker.ok('net', 'CreateNetwork', {
      NetworkID: id,
      Options: { 'com.docker.network.enable_ipv6': false, 'com.docker.network.generic': {} },
      IPv4Data: [{ AddressSpace: 'CalicoLocalAddressSpace', Pool: pool.Pool, Gateway: '0.0.0.0/0', AuxAddresses: { router: '10.65.30.1/32' } }],
      IPv6Data: [],
    });
    const got = [];
    for (let i = 0; i < 3; i++) got.push((await docker.ok('ipam', 'RequestAddress', { PoolID: pool.PoolID, Address: '', Options: null })).Address);
    assert.deepEqual(got.sort(), ['10.65.30.0/32', '10.65.30.2/32', '10.65.30.3/32']);
    const full = await docker.ipam('RequestAddress', { PoolID: pool.PoolID, Address: '', Options: null });
    assert.equal(full.status, 400);
    assert.match(full.body.Err, /no free IPv4 address in 10\.65\.30\.0\/30/);
    for (const a of got) await docker.ok('ipam', 'ReleaseAddress', { PoolID: pool.PoolID, Address: a.split('/')[0] });
    await docker.ok('ipam', 'ReleaseAddress', { PoolID: pool.PoolID, Address: '10.65.30.1' });
    await removeNetwork({ id, v4: pool });
  });

  test('Leave, DeleteEndpoint and ReleaseAddress succeed for things already gone, in any order', async () => {
    const net = await createNetwork();
    const ep = await run(net);
    await remove(net, ep);
    await remove(net, ep); // the whole teardown again
    assert.deepEqual(await docker.ok('net', 'DeleteEndpoint', { NetworkID: net.id, EndpointID: hex() }), {});
    assert.deepEqual(await docker.ok('net', 'Leave', { NetworkID: net.id, EndpointID: hex() }), {});
    assert.deepEqual(await docker.ok('ipam', 'ReleaseAddress', { PoolID: 'CalicoPoolIPv4', Address: '10.65.255.254' }), {});
    await removeNetwork(net);
    await removeNetwork(net);
  });

  test('a Join that is rolled back (Leave twice, DeleteEndpoint, ReleaseAddress) leaves nothing behind', async () => {
    const net = await createNetwork();
    const ep = await run(net);
    for (let i = 0; i < 2; i++) assert.deepEqual(await docker.ok('net', 'Leave', { NetworkID: net.id, EndpointID: ep.eid }), {});
    assert.deepEqual(await docker.ok('net', 'DeleteEndpoint', { NetworkID: net.id, EndpointID: ep.eid }), {});
    assert.deepEqual(await docker.ok('ipam', 'ReleaseAddress', { PoolID: net.v4.PoolID, Address: ep.a4.Address.split('/')[0] }), {});
    assert.deepEqual(await ns.ipJson(['link', 'show', 'type', 'veth']), []);
    await removeNetwork(net);
  });

  test('a container joining a second calico network gets no second gateway, so Docker adds no clashing route', async () => {
    const [n1, n2] = [await createNetwork(), await createNetwork()];
    const sandbox = '/var/run/docker/netns/0123456789ab';
    const eps = [];
    for (const net of [n1, n2]) {
      const eid = hex();
      const a4 = await docker.ok('ipam', 'RequestAddress', { PoolID: net.v4.PoolID, Address: '', Options: null });
      await docker.ok('net', 'CreateEndpoint', {
        NetworkID: net.id,
        EndpointID: eid,
        Interface: { Address: a4.Address, AddressIPv6: '', MacAddress: '' },
        Options: null,
      });
      eps.push({ net, eid, a4, join: await docker.ok('net', 'Join', { NetworkID: net.id, EndpointID: eid, SandboxKey: sandbox, Options: null }) });
    }
    assert.equal(eps[0].join.Gateway, '169.254.1.1');
    assert.deepEqual(eps[1].join, {
      InterfaceName: { SrcName: `tmp${eps[1].eid.slice(0, 11)}`, DstPrefix: 'eth' },
      Gateway: '',
      StaticRoutes: [],
      DisableGatewayService: true,
    });
    // Once the first has left, a new first interface of that container gets the gateway again.
    await remove(eps[0].net, eps[0]);
    await remove(eps[1].net, eps[1]);
    const again = await run(n2);
    assert.equal(again.join.Gateway, '169.254.1.1');
    await remove(n2, again);
    await removeNetwork(n1);
    await removeNetwork(n2);
  });

  test('a network MTU option reaches the veth', async () => {
    const net = await createNetwork({ mtu: '1400' });
    const ep = await run(net);
    const [link] = await ns.ipJson<Array<{ mtu: number }>>(['link', 'show', `cali${ep.eid.slice(0, 11)}`]);
    assert.equal(link.mtu, 1400);
    await remove(net, ep);
    await removeNetwork(net);
  });
});

describe('bad input', () => {
  const methods: Array<['net' | 'ipam', string]> = [
    ['net', 'CreateNetwork'],
    ['net', 'DeleteNetwork'],
    ['net', 'CreateEndpoint'],
    ['net', 'DeleteEndpoint'],
    ['net', 'Join'],
    ['net', 'Leave'],
    ['net', 'EndpointOperInfo'],
    ['ipam', 'RequestPool'],
    ['ipam', 'ReleasePool'],
    ['ipam', 'RequestAddress'],
    ['ipam', 'ReleaseAddress'],
  ];
  test('an empty body (Docker retrying a request) is a 400 with an Err, on every method that takes arguments', async () => {
    for (const [which, m] of methods) {
      const r = await docker[which](m, { raw: '' });
      assert.equal(r.status, 400, m);
      assert.match(r.body.Err, /empty request body/, m);
    }
  });

  test('malformed JSON and wrong types are 400s that name the field', async () => {
    const bad = await docker.net('CreateEndpoint', { raw: '{"NetworkID": ' });
    assert.equal(bad.status, 400);
    assert.match(bad.body.Err, /malformed JSON/);
    const types = await docker.net('CreateEndpoint', { NetworkID: hex(), EndpointID: 42, Interface: {} });
    assert.equal(types.status, 400);
    assert.match(types.body.Err, /field "EndpointID"/);
    const addr = await docker.net('CreateEndpoint', { NetworkID: hex(), EndpointID: hex(), Interface: { Address: '10.65.0.300/32' } });
    assert.equal(addr.status, 400);
    assert.match(addr.body.Err, /Interface\.Address/);
    const poolId = await docker.ipam('RequestAddress', { PoolID: 'LocalDefault/10.0.0.0/8', Address: '' });
    assert.equal(poolId.status, 400);
    assert.match(poolId.body.Err, /was not issued by calico-ipam/);
    const unknownMethod = await docker.net('Frobnicate', {});
    assert.equal(unknownMethod.status, 404);
  });

  test('Join and CreateEndpoint for unknown objects fail clearly and write nothing', async () => {
    const j = await docker.net('Join', { NetworkID: hex(), EndpointID: hex(), SandboxKey: '', Options: null });
    assert.equal(j.status, 400);
    assert.match(j.body.Err, /is not known to calico/);
    const c = await docker.net('CreateEndpoint', { NetworkID: hex(), EndpointID: hex(), Interface: { Address: '10.65.1.1/32' } });
    assert.equal(c.status, 400);
    assert.match(c.body.Err, /network .* is not known to calico/);
    assert.deepEqual(await ns.ipJson(['link', 'show', 'type', 'veth']), []);
  });
});

describe('restarts', () => {
  test('after calico node restarts, existing endpoints still join and stale cleanup succeeds', async () => {
    const net = await createNetwork();
    const ep = await run(net);
    await docker.ok('net', 'Leave', { NetworkID: net.id, EndpointID: ep.eid });
    assert.equal(await node.stop('SIGTERM'), 0);
    await node.restart();
    // Docker re-activates, then replays nothing: the network and endpoint come from etcd.
    assert.deepEqual(await docker.ok('net', 'GetCapabilities'), { Scope: 'local', ConnectivityScope: 'global', GwAllocChecker: true });
    await node.ready();
    assert.deepEqual(await docker.ok('net', 'Join', { NetworkID: net.id, EndpointID: ep.eid, SandboxKey: '', Options: null }), ep.join);
    // Daemon-restart stale cleanup (§5.7): Leave, DeleteEndpoint, ReleaseAddress.
    await remove(net, ep);
    await removeNetwork(net);
  });

  test('with Docker unreachable every request was served and the node said why names are missing', async () => {
    assert.match(node.logs(), /cannot follow Docker; names and labels will be learned when it answers/);
  });

  test('after everything is removed, calico ipam check is clean', async () => {
    const r = await node.cli(['ipam', 'check', '--grace', '0', '--json'], { allowFail: true });
    const report = JSON.parse(r.stdout);
    assert.deepEqual(report.problems, []);
    assert.equal(r.code, 0);
  });
});
