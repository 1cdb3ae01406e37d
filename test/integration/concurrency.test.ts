/**
 * Four `calico node` instances, as four hosts sharing one etcd, allocate 2,000 addresses from
 * one pool at once. Compare-and-swap on blocks must give zero duplicates, an owner on every
 * address and blocks affine to the host that allocated from them; releasing everything must
 * leave `calico ipam check` clean.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { netnsScope, type Netns } from '../harness/netns';
import { startEtcd, type TestEtcd } from '../harness/etcd';
import { startCalico, type CalicoProcess } from '../harness/calico';

const HOSTS = 4;
const PER_HOST = 500;
const IN_FLIGHT = 16;
const scope = netnsScope();
let ns: Netns;
let etcd: TestEtcd;
const nodes: CalicoProcess[] = [];

before(async () => {
  ns = await scope.create('cc');
  etcd = await startEtcd(ns);
  for (let i = 0; i < HOSTS; i++) {
    nodes.push(await startCalico(ns, { name: `cc-host${i}`, etcd: etcd.endpoint, env: { CALICO_LOG_LEVEL: 'info', CALICO_IPV4POOL_CIDR: '10.66.0.0/16' } }));
  }
  await Promise.all(nodes.map((n) => n.ready()));
});

after(async () => {
  await Promise.all(nodes.map((n) => n.destroy()));
  await etcd?.destroy();
  await scope.destroyAll();
});

async function pool<T>(n: number, width: number, fn: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = new Array(n);
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < n) {
        const i = next++;
        out[i] = await fn(i);
      }
    }),
  );
  return out;
}

test('four hosts allocating 2,000 addresses concurrently get no duplicates, every address owned, blocks affine to their host; releasing all leaves ipam check clean', async () => {
  const results = await Promise.all(
    nodes.map(async (node) => {
      const poolId = (
        await node.docker.ok('ipam', 'RequestPool', { AddressSpace: 'CalicoLocalAddressSpace', Pool: '10.66.0.0/16', SubPool: '', Options: null, V6: false })
      ).PoolID;
      const addrs = await pool(
        PER_HOST,
        IN_FLIGHT,
        async () => (await node.docker.ok('ipam', 'RequestAddress', { PoolID: poolId, Address: '', Options: null })).Address as string,
      );
      return { node, poolId, addrs: addrs.map((a) => a.split('/')[0]) };
    }),
  );
  const all = results.flatMap((r) => r.addrs);
  assert.equal(all.length, HOSTS * PER_HOST);
  assert.equal(new Set(all).size, all.length, 'duplicate addresses were handed out');

  const allocations = JSON.parse((await nodes[0].cli(['ipam', 'show', '--allocations', '--json'])).stdout) as Array<{
    ip: string;
    affinity: string;
    owner: { host: string; kind: string };
  }>;
  assert.equal(allocations.length, all.length);
  const byIp = new Map(allocations.map((a) => [a.ip, a]));
  for (const r of results) {
    for (const ip of r.addrs) {
      const a = byIp.get(ip);
      assert.ok(a, `${ip} has no owner record`);
      assert.equal(a.owner.host, r.node.name);
      assert.equal(a.affinity, r.node.name, `${ip} came from a block not affine to ${r.node.name}`);
    }
  }
  const blocks = JSON.parse((await nodes[0].cli(['ipam', 'show', '--json'])).stdout) as Array<{ cidr: string; affinity: string; used: number }>;
  for (const n of nodes) {
    // 500 addresses need 8 blocks of 64; a host never needs more than it fills.
    const mine = blocks.filter((b) => b.affinity === n.name);
    assert.equal(mine.length, Math.ceil(PER_HOST / 64), `${n.name} holds ${mine.length} blocks`);
  }

  await Promise.all(
    results.map((r) => pool(r.addrs.length, IN_FLIGHT, (i) => r.node.docker.ok('ipam', 'ReleaseAddress', { PoolID: r.poolId, Address: r.addrs[i] }))),
  );
  const check = await nodes[0].cli(['ipam', 'check', '--grace', '0', '--json'], { allowFail: true });
  const report = JSON.parse(check.stdout);
  assert.deepEqual(report.problems, []);
  assert.equal(report.allocations, 0);
  assert.equal(check.code, 0);
});
