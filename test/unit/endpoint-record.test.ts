/**
 * CreateEndpoint answers while its etcd transaction is still in flight, and Join is where the
 * record must be durable (driver/endpoint.ts, driver/joinleave.ts). These tests hold and fail
 * that transaction on purpose, which only an in-memory store can do deterministically; the
 * real-etcd path is covered by the contract, fault and e2e suites.
 */
import { beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Reconciler } from '../../agent/reconciler';
import type { DockerWatcher } from '../../agent/docker-watcher';
import { Allocator } from '../../ipam/allocator';
import { IpamHandlers } from '../../ipam/handlers';
import { Pools } from '../../ipam/pools';
import { EndpointHandlers } from '../../driver/endpoint';
import { PortHandlers } from '../../driver/ports';
import { JoinLeaveHandlers } from '../../driver/joinleave';
import { Sandboxes } from '../../driver/sandboxes';
import type { NodeContext } from '../../agent/context';
import type { Dataplane, EndpointWiring, WiringResult } from '../../lib/dataplane/types';
import { keys } from '../../lib/datastore/keys';
import type { Compare, KV, ListOptions, Op, WatchListener } from '../../lib/datastore/kv';
import { MemoryKV } from '../../lib/datastore/memory';
import { Records } from '../../lib/datastore/records-store';
import { UnavailableError } from '../../lib/errors';
import { enclosing, formatCidr, formatIP, parseIP } from '../../lib/ip';
import * as blk from '../../ipam/block';
import { silentLogger } from '../../lib/log';
import { codecs } from '../../lib/datastore/codec';

const HOST = 'host-a';
const hex = () => randomBytes(32).toString('hex');

/** A MemoryKV whose transactions can be held (etcd slow) or failed (etcd gone). */
class GateKV implements KV {
  readonly inner = new MemoryKV();
  private held: Array<() => void> = [];
  hold = false;
  fail = false;

  get(key: string) {
    return this.inner.get(key);
  }
  list(prefix: string, opts?: ListOptions) {
    return this.inner.list(prefix, opts);
  }
  watch(prefixes: string[], listener: WatchListener) {
    return this.inner.watch(prefixes, listener);
  }
  lease(ttl: number) {
    return this.inner.lease(ttl);
  }
  async txn(compares: Compare[], ops: Op[]) {
    if (this.hold) await new Promise<void>((r) => this.held.push(r));
    if (this.fail) throw new UnavailableError('etcd at test did not answer (transaction)');
    return this.inner.txn(compares, ops);
  }
  async put(key: string, value: string) {
    await this.txn([], [{ put: key, value }]);
  }
  async del(key: string) {
    if (this.fail) throw new UnavailableError('etcd at test did not answer (delete)');
    return this.inner.del(key);
  }
  async close() {}
  release() {
    this.hold = false;
    for (const r of this.held.splice(0)) r();
  }
  get waiting() {
    return this.held.length;
  }
}

class FakeDataplane implements Dataplane {
  links = new Set<string>();
  async wireEndpoint(w: EndpointWiring): Promise<WiringResult> {
    this.links.add(w.hostIfName);
    return {};
  }
  async unwireEndpoint(name: string) {
    this.links.delete(name);
  }
  async ensureRoute() {}
  async listWorkloadLinks() {
    return [...this.links];
  }
  async listWorkloadRoutes() {
    return [];
  }
  async enableForwarding() {}
  async uplinkMtu() {
    return undefined;
  }
  async uplinkIPv4() {
    return undefined;
  }
  async uplinkIPv6() {
    return undefined;
  }
  close() {}
}

let kv: GateKV;
let ctx: NodeContext;
let eps: EndpointHandlers;
let jl: JoinLeaveHandlers;
let dp: FakeDataplane;
let sandboxes: Sandboxes;
const NID = 'n'.repeat(64);

beforeEach(async () => {
  kv = new GateKV();
  const pools = new Pools(kv, 0);
  await pools.add('10.0.0.0/16');
  dp = new FakeDataplane();
  const records = new Records(kv, HOST);
  ctx = {
    host: HOST,
    kv,
    pools,
    allocator: new Allocator(kv, pools, HOST, silentLogger()),
    records,
    dataplane: dp,
    log: silentLogger(),
    defaultMtu: async () => 1500,
    ready: async () => undefined,
  };
  await records.putNetwork({ id: NID, host: HOST, ipv4Pools: ['0.0.0.0/0'], ipv6Pools: [], ipv6: false, options: {}, createdAt: new Date().toISOString() });
  sandboxes = new Sandboxes();
  const ports = new PortHandlers(ctx);
  eps = new EndpointHandlers(ctx, sandboxes, ports);
  jl = new JoinLeaveHandlers(ctx, sandboxes, ports);
});

async function requestAddress(): Promise<string> {
  const ip = await ctx.allocator.autoAssign(4, ctx.allocator.newOwner('CalicoPoolIPv4'));
  return `${formatIP(ip)}/32`;
}

const create = (eid: string, address: string) =>
  eps.createEndpoint({ NetworkID: NID, EndpointID: eid, Interface: { Address: address, AddressIPv6: '', MacAddress: '' }, Options: {} });
const join = (eid: string) => jl.join({ NetworkID: NID, EndpointID: eid, SandboxKey: '', Options: {} });
const stored = async (eid: string) => kv.inner.get(keys.endpoint(HOST, eid));

describe('CreateEndpoint before its record is durable', () => {
  test('CreateEndpoint answers while the transaction is held, and Join answers only once it landed', async () => {
    const eid = hex();
    const address = await requestAddress();
    kv.hold = true;
    const ce = await create(eid, address);
    assert.match(ce.Interface!.MacAddress, /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/);
    assert.equal(await stored(eid), undefined);
    let joined = false;
    const j = join(eid).then((r) => {
      joined = true;
      return r;
    });
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(joined, false, 'Join answered before the endpoint was in etcd');
    assert.equal(kv.waiting, 1);
    kv.release();
    const res = await j;
    assert.equal(res.Gateway, '169.254.1.1');
    assert.ok(await stored(eid), 'the endpoint record is in etcd once Join answered');
  });

  test('a write that fails makes Join fail with the cause, removes the veth, and rollback leaves nothing', async () => {
    const eid = hex();
    const address = await requestAddress();
    kv.hold = true;
    await create(eid, address);
    const j = join(eid);
    await new Promise((r) => setTimeout(r, 10));
    kv.fail = true;
    kv.release();
    await assert.rejects(
      j,
      (err: unknown) => err instanceof UnavailableError && /could not be recorded in etcd.*did not answer.*start the container again/.test(err.message),
    );
    assert.deepEqual([...dp.links], [], 'the veth made meanwhile was removed');
    kv.fail = false;
    // Docker's rollback: DeleteEndpoint, then ReleaseAddress.
    assert.deepEqual(await eps.deleteEndpoint({ NetworkID: NID, EndpointID: eid }), {});
    assert.equal(await ctx.allocator.release(parseIP(address.split('/')[0])), 'released');
    assert.equal(await stored(eid), undefined);
  });

  test('a Join after the write already failed finds no endpoint and says CreateEndpoint must come first', async () => {
    const eid = hex();
    const address = await requestAddress();
    kv.hold = true;
    await create(eid, address);
    kv.fail = true;
    kv.release();
    await ctx.records.written(eid).catch(() => undefined);
    await assert.rejects(join(eid), /not known to calico on host host-a; CreateEndpoint must come first/);
    assert.deepEqual([...dp.links], []);
  });

  test('DeleteEndpoint waits for the write, so a deleted endpoint never comes back', async () => {
    const eid = hex();
    const address = await requestAddress();
    kv.hold = true;
    await create(eid, address);
    const del = eps.deleteEndpoint({ NetworkID: NID, EndpointID: eid });
    await new Promise((r) => setTimeout(r, 10));
    kv.release();
    await del;
    assert.equal(await stored(eid), undefined);
    assert.equal(ctx.records.cachedEndpoint(eid), undefined);
  });

  test('a CreateEndpoint after a failed write takes the durable path and reports the failure itself', async () => {
    const first = hex();
    const address = await requestAddress();
    kv.fail = true;
    // The first write fails after answering (nothing had failed yet)...
    await create(first, address);
    await ctx.records.written(first).catch(() => undefined);
    // ...so the next one (Docker's retry with a new endpoint) waits for its transaction and
    // fails in CreateEndpoint, where Docker expects a datastore failure to show.
    await assert.rejects(create(hex(), address), UnavailableError);
  });

  test('an address another endpoint holds is refused by CreateEndpoint itself, not later', async () => {
    const address = await requestAddress();
    const a = hex();
    await create(a, address);
    await join(a);
    await assert.rejects(create(hex(), address), /already in use by endpoint/);
  });

  test('reconciliation never removes the veth of an endpoint whose record is still being written', async () => {
    const eid = hex();
    const address = await requestAddress();
    kv.hold = true;
    await create(eid, address);
    const j = join(eid);
    await new Promise((r) => setTimeout(r, 10));
    assert.equal(dp.links.size, 1, 'Join made the veth while the record was in flight');
    const docker = { liveEndpointIds: async () => undefined } as unknown as DockerWatcher;
    const reconciler = new Reconciler(ctx, docker, sandboxes, { intervalMs: 60_000, graceMs: 60_000 });
    const pass = reconciler.runOnce();
    await new Promise((r) => setTimeout(r, 10));
    kv.release();
    await pass;
    await j;
    assert.equal(dp.links.size, 1, 'the new veth is still there');
    await reconciler.runOnce();
    assert.equal(dp.links.size, 1, 'and stays once the record is in etcd');
  });

  test('a stray ReleaseAddress while the endpoint is being recorded keeps its address (it queues behind the write)', async () => {
    const eid = hex();
    const address = await requestAddress();
    kv.hold = true;
    await create(eid, address);
    const ipam = new IpamHandlers(ctx);
    const release = ipam.releaseAddress({ PoolID: 'CalicoPoolIPv4', Address: address.split('/')[0] });
    await new Promise((r) => setTimeout(r, 10));
    kv.release();
    assert.deepEqual(await release, {});
    await join(eid);
    const ip = parseIP(address.split('/')[0]);
    const net = enclosing(ip, 26);
    const rec = codecs.block.decode((await kv.inner.get(keys.block(formatCidr(net))))!);
    const owner = blk.ownerOf(rec, net, ip);
    assert.equal(owner?.kind, 'endpoint');
    assert.equal(owner?.endpoint, eid);
  });
});
