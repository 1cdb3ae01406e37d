/**
 * Contract tests for what Docker 28/29 send that 20.10 does not: GwAllocCheck, IPv6-only
 * networks (--ipv4=false), the endpoint ifname option, the endpoint name in RequestAddress, and
 * Docker 27+'s rollbacks. The fake Docker replays each engine's call order (protocol doc §5) as
 * data against the real `calico node`, real etcd and a real kernel namespace.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { Netns } from '../harness/netns';
import type { CalicoProcess } from '../harness/calico';
import { startContractHost, type ContractHost } from '../harness/contract-host';
import type { FakeDocker } from '../harness/plugin-client';

const hex = () => randomBytes(32).toString('hex');
const SPACE = 'CalicoLocalAddressSpace';

let host: ContractHost | undefined;
let ns: Netns;
let node: CalicoProcess;
let docker: FakeDocker;

before(async () => {
  host = await startContractHost('ng');
  ({ ns, node, docker } = host);
});

after(async () => {
  await host?.destroy();
});

type Family = 'v4' | 'v6';
interface Engine {
  name: string;
  /** Docker 28+: GwAllocCheck before IPAM, and no gateway in IPv*Data once told to skip it. */
  gwAllocCheck: boolean;
  /** Docker 27+: GetDefaultAddressSpaces before every RequestPool. */
  spacesPerPool: boolean;
  /** Docker 29+: RequestAddress names the endpoint. */
  endpointName: boolean;
}

/** The engines whose `docker network create` / `docker run` sequences are replayed (protocol doc §0, §5.1, §5.2). */
const ENGINES: Engine[] = [
  { name: 'Docker 20.10', gwAllocCheck: false, spacesPerPool: false, endpointName: false },
  { name: 'Docker 28', gwAllocCheck: true, spacesPerPool: true, endpointName: false },
  { name: 'Docker 29', gwAllocCheck: true, spacesPerPool: true, endpointName: true },
];

/** §5.1 for one engine: the families given, in Docker's order. */
async function createNetwork(engine: Engine, families: Family[]) {
  const id = hex();
  const options: Record<string, unknown> = {
    'com.docker.network.enable_ipv6': families.includes('v6'),
    'com.docker.network.generic': {},
  };
  if (engine.gwAllocCheck) options['com.docker.network.enable_ipv4'] = families.includes('v4');
  let skip = { SkipIPv4: false, SkipIPv6: false };
  if (engine.gwAllocCheck) {
    skip = await docker.ok('net', 'GwAllocCheck', { Options: options });
    assert.deepEqual(skip, { SkipIPv4: true, SkipIPv6: true });
  }
  const pools: Partial<Record<Family, any>> = {};
  const data: Record<Family, unknown[]> = { v4: [], v6: [] };
  for (const f of families) {
    if (engine.spacesPerPool) await docker.ok('ipam', 'GetDefaultAddressSpaces');
    const p = await docker.ok('ipam', 'RequestPool', { AddressSpace: SPACE, Pool: '', SubPool: '', Options: {}, V6: f === 'v6' });
    pools[f] = p;
    const skipped = f === 'v4' ? skip.SkipIPv4 : skip.SkipIPv6;
    data[f].push({ AddressSpace: SPACE, Pool: p.Pool, ...(skipped ? {} : { Gateway: p.Data['com.docker.network.gateway'] }) });
  }
  await docker.ok('net', 'CreateNetwork', { NetworkID: id, Options: options, IPv4Data: data.v4, IPv6Data: data.v6 });
  return { id, pools };
}

/** §5.2 up to Join. */
async function run(engine: Engine, net: Awaited<ReturnType<typeof createNetwork>>, o: { name?: string; ifname?: string } = {}) {
  const eid = hex();
  const opts = engine.endpointName && o.name ? { 'com.docker.network.endpoint.name': o.name } : null;
  const a4 = net.pools.v4 ? await docker.ok('ipam', 'RequestAddress', { PoolID: net.pools.v4.PoolID, Address: '', Options: opts }) : undefined;
  const a6 = net.pools.v6 ? await docker.ok('ipam', 'RequestAddress', { PoolID: net.pools.v6.PoolID, Address: '', Options: opts }) : undefined;
  const ce = await docker.ok('net', 'CreateEndpoint', {
    NetworkID: net.id,
    EndpointID: eid,
    Interface: { Address: a4?.Address ?? '', AddressIPv6: a6?.Address ?? '', MacAddress: '' },
    Options: { ...(o.ifname ? { 'com.docker.network.endpoint.ifname': o.ifname } : {}) },
  });
  const join = await docker.ok('net', 'Join', { NetworkID: net.id, EndpointID: eid, SandboxKey: '/var/run/docker/netns/x', Options: {} });
  return { eid, a4, a6, ce, join };
}

/** §5.5 then §5.6. */
async function teardown(net: Awaited<ReturnType<typeof createNetwork>>, eps: Array<{ eid: string; a4?: any; a6?: any }>) {
  for (const ep of eps) {
    assert.deepEqual(await docker.ok('net', 'Leave', { NetworkID: net.id, EndpointID: ep.eid }), {});
    assert.deepEqual(await docker.ok('net', 'DeleteEndpoint', { NetworkID: net.id, EndpointID: ep.eid }), {});
    if (ep.a4) await docker.ok('ipam', 'ReleaseAddress', { PoolID: net.pools.v4.PoolID, Address: ep.a4.Address.split('/')[0] });
    if (ep.a6) await docker.ok('ipam', 'ReleaseAddress', { PoolID: net.pools.v6.PoolID, Address: ep.a6.Address.split('/')[0] });
  }
  for (const f of ['v4', 'v6'] as const) {
    const p = net.pools[f];
    if (!p) continue;
    await docker.ok('ipam', 'ReleaseAddress', { PoolID: p.PoolID, Address: p.Data['com.docker.network.gateway'].split('/')[0] });
    await docker.ok('ipam', 'ReleasePool', { PoolID: p.PoolID });
  }
  await docker.ok('net', 'DeleteNetwork', { NetworkID: net.id });
}

async function endpoints(): Promise<Array<{ id: string }>> {
  return JSON.parse((await node.cli(['endpoint', 'ls', '--json'])).stdout);
}

describe('the capabilities newer engines read', () => {
  test('the driver declares GwAllocChecker and GwAllocCheck tells Docker to reserve no gateway in either family', async () => {
    assert.equal((await docker.ok('net', 'GetCapabilities')).GwAllocChecker, true);
    assert.deepEqual(await docker.ok('net', 'GwAllocCheck', { Options: { 'com.docker.network.enable_ipv4': true } }), { SkipIPv4: true, SkipIPv6: true });
    assert.deepEqual(await docker.ok('net', 'GwAllocCheck', { Options: null }), { SkipIPv4: true, SkipIPv6: true });
    assert.equal((await docker.net('GwAllocCheck', { Options: 'x' })).status, 400);
  });
});

for (const engine of ENGINES) {
  describe(`${engine.name}'s call sequences`, () => {
    test('a dual-stack network gives a container both addresses and both gateways, and teardown leaves nothing', async () => {
      const net = await createNetwork(engine, ['v4', 'v6']);
      const ep = await run(engine, net, { name: 'web-1' });
      assert.match(ep.a4.Address, /\/32$/);
      assert.match(ep.a6.Address, /\/128$/);
      assert.equal(ep.join.Gateway, '169.254.1.1');
      assert.ok(ep.join.GatewayIPv6, 'an IPv6 gateway');
      await teardown(net, [ep]);
      assert.equal(
        (await endpoints()).some((e) => e.id === ep.eid),
        false,
      );
    });

    test('an IPv6-only network (no IPv4 RequestPool at all) gives a container only an IPv6 address and IPv6 gateway', async () => {
      const net = await createNetwork(engine, ['v6']);
      const ep = await run(engine, net);
      assert.equal(ep.a4, undefined);
      assert.match(ep.a6.Address, /^fd[0-9a-f:]+\/128$/);
      assert.equal(ep.join.Gateway, '');
      assert.deepEqual(ep.join.StaticRoutes, []);
      assert.match(ep.join.GatewayIPv6, /^fe80:/);
      const addrs = await ns.exec('ip', ['-6', 'route', 'show', ep.a6.Address.split('/')[0]]);
      assert.match(addrs.stdout, /dev cali/);
      await teardown(net, [ep]);
      const gone = await ns.exec('ip', ['-6', 'route', 'show', ep.a6.Address.split('/')[0]]);
      assert.equal(gone.stdout.trim(), '');
    });
  });
}

describe('endpoint options', () => {
  const engine = ENGINES[2];

  test('com.docker.network.endpoint.ifname is answered as DstName in Join, and a replayed Join answers it again', async () => {
    const net = await createNetwork(engine, ['v4']);
    const ep = await run(engine, net, { ifname: 'data0' });
    assert.deepEqual(ep.join.InterfaceName, { SrcName: `tmp${ep.eid.slice(0, 11)}`, DstPrefix: 'eth', DstName: 'data0' });
    const again = await docker.ok('net', 'Join', { NetworkID: net.id, EndpointID: ep.eid, SandboxKey: '/var/run/docker/netns/x', Options: {} });
    assert.equal(again.InterfaceName.DstName, 'data0');
    const plain = await run(engine, net);
    assert.equal('DstName' in plain.join.InterfaceName, false);
    await teardown(net, [ep, plain]);
  });

  for (const bad of ['a/b', 'eth 0', '..', 'x'.repeat(16), 'a:b']) {
    test(`an ifname of ${JSON.stringify(bad)} fails CreateEndpoint naming the option, and Docker's rollback leaves nothing`, async () => {
      const net = await createNetwork(engine, ['v4']);
      const eid = hex();
      const a4 = await docker.ok('ipam', 'RequestAddress', { PoolID: net.pools.v4.PoolID, Address: '', Options: null });
      const r = await docker.net('CreateEndpoint', {
        NetworkID: net.id,
        EndpointID: eid,
        Interface: { Address: a4.Address, AddressIPv6: '', MacAddress: '' },
        Options: { 'com.docker.network.endpoint.ifname': bad },
      });
      assert.equal(r.status, 400);
      assert.match(r.body.Err, /com\.docker\.network\.endpoint\.ifname/);
      // Docker 27+ rolls back a failed CreateEndpoint with DeleteEndpoint, then ReleaseAddress.
      assert.deepEqual(await docker.ok('net', 'DeleteEndpoint', { NetworkID: net.id, EndpointID: eid }), {});
      await docker.ok('ipam', 'ReleaseAddress', { PoolID: net.pools.v4.PoolID, Address: a4.Address.split('/')[0] });
      assert.equal(
        (await endpoints()).some((e) => e.id === eid),
        false,
      );
      await teardown(net, []);
    });
  }

  test('the endpoint name from RequestAddress is recorded on the address and named when another request wants it', async () => {
    const net = await createNetwork(engine, ['v4']);
    const a = await docker.ok('ipam', 'RequestAddress', {
      PoolID: net.pools.v4.PoolID,
      Address: '',
      Options: { 'com.docker.network.endpoint.name': 'shop-web-1' },
    });
    const ip = a.Address.split('/')[0];
    const clash = await docker.ipam('RequestAddress', { PoolID: net.pools.v4.PoolID, Address: ip, Options: null });
    assert.notEqual(clash.status, 200);
    assert.match(clash.body.Err, /shop-web-1/);
    const bad = await docker.ipam('RequestAddress', { PoolID: net.pools.v4.PoolID, Address: '', Options: { 'com.docker.network.endpoint.name': 'a\nb' } });
    assert.equal(bad.status, 400);
    await docker.ok('ipam', 'ReleaseAddress', { PoolID: net.pools.v4.PoolID, Address: ip });
    await teardown(net, []);
  });
});

describe("Docker 27+'s rollbacks", () => {
  test('a failed Join step is rolled back by Leave twice, DeleteEndpoint and ReleaseAddress, leaving no veth, endpoint or allocation', async () => {
    const net = await createNetwork(ENGINES[2], ['v4']);
    const ep = await run(ENGINES[2], net, { name: 'crashy' });
    const host = `cali${ep.eid.slice(0, 11)}`;
    await ns.ip(['link', 'show', host]);
    // The sequence libnetwork sends when a step after Join fails (§3.11, §5.2 step 4).
    const rollback: Array<['net' | 'ipam', string, unknown]> = [
      ['net', 'Leave', { NetworkID: net.id, EndpointID: ep.eid }],
      ['net', 'Leave', { NetworkID: net.id, EndpointID: ep.eid }],
      ['net', 'DeleteEndpoint', { NetworkID: net.id, EndpointID: ep.eid }],
      ['net', 'DeleteEndpoint', { NetworkID: net.id, EndpointID: ep.eid }],
      ['ipam', 'ReleaseAddress', { PoolID: net.pools.v4.PoolID, Address: ep.a4.Address.split('/')[0] }],
    ];
    for (const [which, method, body] of rollback) assert.deepEqual(await docker.ok(which, method, body), {});
    await assert.rejects(ns.ip(['link', 'show', host]));
    assert.equal(
      (await endpoints()).some((e) => e.id === ep.eid),
      false,
    );
    // The address is free again: asking for it by name succeeds.
    const again = await docker.ok('ipam', 'RequestAddress', { PoolID: net.pools.v4.PoolID, Address: ep.a4.Address.split('/')[0], Options: null });
    await docker.ok('ipam', 'ReleaseAddress', { PoolID: net.pools.v4.PoolID, Address: again.Address.split('/')[0] });
    await teardown(net, []);
  });

  test('after every sequence, calico ipam check is clean', async () => {
    const check = await node.cli(['ipam', 'check', '--grace', '0', '--json'], { allowFail: true });
    assert.equal(check.code, 0, check.stdout + check.stderr);
  });
});

describe('prefix-size subnets (--subnet 0.0.0.0/24)', () => {
  const pool = (Pool: string, V6 = false) => ({ AddressSpace: SPACE, Pool, SubPool: '', Options: {}, V6 });

  test('each network gets its own free /24 inside the Calico pool, its containers take addresses from it, and ReleasePool frees it', async () => {
    const a = await docker.ok('ipam', 'RequestPool', pool('0.0.0.0/24'));
    const b = await docker.ok('ipam', 'RequestPool', pool('0.0.0.0/24'));
    assert.match(a.Pool, /^10\.65\.\d+\.0\/24$/);
    assert.match(b.Pool, /^10\.65\.\d+\.0\/24$/);
    assert.notEqual(a.Pool, b.Pool);
    assert.deepEqual(a.Data, { 'com.docker.network.gateway': '0.0.0.0/0' });
    const id = hex();
    await docker.ok('net', 'CreateNetwork', {
      NetworkID: id,
      Options: { 'com.docker.network.generic': {} },
      IPv4Data: [{ AddressSpace: SPACE, Pool: a.Pool, Gateway: a.Data['com.docker.network.gateway'] }],
      IPv6Data: [],
    });
    const addr = await docker.ok('ipam', 'RequestAddress', { PoolID: a.PoolID, Address: '', Options: null });
    assert.equal(addr.Address.split('.').slice(0, 3).join('.'), a.Pool.split('.').slice(0, 3).join('.'));
    await docker.ok('ipam', 'ReleaseAddress', { PoolID: a.PoolID, Address: addr.Address.split('/')[0] });
    await docker.ok('ipam', 'ReleaseAddress', { PoolID: a.PoolID, Address: '0.0.0.0' });
    assert.deepEqual(await docker.ok('ipam', 'ReleasePool', { PoolID: a.PoolID }), {});
    // A replayed ReleasePool is harmless.
    assert.deepEqual(await docker.ok('ipam', 'ReleasePool', { PoolID: a.PoolID }), {});
    await docker.ok('net', 'DeleteNetwork', { NetworkID: id });
    // a's /24 is the lowest free one again; b's stays taken.
    const c = await docker.ok('ipam', 'RequestPool', pool('0.0.0.0/24'));
    assert.equal(c.Pool, a.Pool);
    for (const p of [b, c]) await docker.ok('ipam', 'ReleasePool', { PoolID: p.PoolID });
  });

  test('the sizes run out with a message naming the pools, and IPv6 sizes come from the IPv6 pool', async () => {
    const halves = [await docker.ok('ipam', 'RequestPool', pool('0.0.0.0/17')), await docker.ok('ipam', 'RequestPool', pool('0.0.0.0/17'))];
    assert.deepEqual(halves.map((h) => h.Pool).sort(), ['10.65.0.0/17', '10.65.128.0/17']);
    const none = await docker.ipam('RequestPool', pool('0.0.0.0/24'));
    assert.notEqual(none.status, 200);
    assert.match(none.body.Err, /no free \/24 .*10\.65\.0\.0\/16/);
    const withRange = await docker.ipam('RequestPool', { ...pool('0.0.0.0/24'), SubPool: '10.65.0.0/25' });
    assert.equal(withRange.status, 400);
    for (const h of halves) await docker.ok('ipam', 'ReleasePool', { PoolID: h.PoolID });
    const v6 = await docker.ok('ipam', 'RequestPool', pool('::/120', true));
    assert.match(v6.Pool, /^fd65::[0-9a-f]*\/120$/);
    await docker.ok('ipam', 'ReleasePool', { PoolID: v6.PoolID });
  });
});
