/**
 * Concurrent allocation over one shared MemoryKV: compare-and-swap losers must re-read and retry,
 * never hand out an address twice and never lose another writer's allocation.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Allocator } from '../../ipam/allocator';
import { newBlock } from '../../ipam/block';
import * as blk from '../../ipam/block';
import { pickUnclaimedBlock } from '../../ipam/placement';
import { Pools } from '../../ipam/pools';
import { keys } from '../../lib/datastore/keys';
import { MemoryKV } from '../../lib/datastore/memory';
import type { Owner } from '../../lib/datastore/records';
import { ConflictError, UnavailableError } from '../../lib/errors';
import { type IP, enclosing, formatCidr, formatIP, parseCidr, parseIP } from '../../lib/ip';
import { silentLogger } from '../../lib/log';
import { codecs } from '../../lib/datastore/codec';
import { endpointOf } from '../harness/owners';

async function setup(pool = '10.0.0.0/16') {
  const kv = new MemoryKV();
  const pools = new Pools(kv, 0);
  await pools.add(pool);
  const alloc = (host: string) => new Allocator(kv, pools, host, silentLogger());
  return { kv, pools, alloc };
}

/** Every allocation recorded in the KV, as address → owner handle. */
async function recorded(kv: MemoryKV): Promise<Map<string, Owner>> {
  const out = new Map<string, Owner>();
  for (const e of await kv.list(keys.blocks())) {
    const rec = codecs.block.decode(e);
    const net = parseCidr(rec.cidr);
    for (const { ip, owner } of blk.allocations(rec, net)) out.set(formatIP(ip), owner);
    // The free list and the allocations must partition the block.
    const all = [...rec.unallocated, ...Object.keys(rec.allocations).map(Number)].sort((x, y) => x - y);
    assert.deepEqual(all, [...Array(Number(1n << BigInt(32 - net.prefix))).keys()], `block ${rec.cidr} is inconsistent`);
  }
  return out;
}

/** Starts `n` autoAssigns at once; returns the addresses with the owner handle used for each. */
function burst(al: Allocator, n: number): Promise<Array<{ ip: IP; handle: string }>> {
  return Promise.all(
    Array.from({ length: n }, async () => {
      const owner = al.newOwner('p');
      return { ip: await al.autoAssign(4, owner), handle: owner.handle };
    }),
  );
}

/** Runs `fn` once, synchronously, just before the next transaction reaches the store. */
function beforeNextTxn(kv: MemoryKV, fn: () => void): { fired: () => boolean } {
  let fired = false;
  kv.beforeTxn = () => {
    if (fired) return;
    fired = true;
    fn();
  };
  return { fired: () => fired };
}

/** A synchronous competing write: MemoryKV.txn has no await before it applies its ops. */
function competingPut(kv: MemoryKV, key: string, value: unknown): void {
  void kv.txn([], [{ put: key, value: JSON.stringify(value) }]);
}

const intruder = (handle: string): Owner => ({ host: 'intruder', pool: 'p', kind: 'pending', handle, since: new Date().toISOString() });

describe('concurrent allocation', () => {
  test('200 concurrent autoAssign calls on one Allocator yield 200 distinct addresses', async () => {
    const { kv, alloc } = await setup();
    const got = await burst(alloc('host-a'), 200);
    assert.equal(new Set(got.map((g) => formatIP(g.ip))).size, 200);
    const rec = await recorded(kv);
    assert.equal(rec.size, 200);
    for (const g of got) assert.equal(rec.get(formatIP(g.ip))?.handle, g.handle, 'each address recorded for its own request');
    assert.equal((await kv.list(keys.affinities('host-a'))).length, 4, '200 addresses fill four /26 blocks');
  });

  test('two hosts sharing one store, 100 each at once, yield 200 distinct addresses', async () => {
    const { kv, alloc } = await setup();
    const [a, b] = await Promise.all([burst(alloc('host-a'), 100), burst(alloc('host-b'), 100)]);
    const all = [...a, ...b];
    assert.equal(new Set(all.map((g) => formatIP(g.ip))).size, 200);
    const rec = await recorded(kv);
    assert.equal(rec.size, 200);
    for (const g of all) assert.equal(rec.get(formatIP(g.ip))?.handle, g.handle);
  });

  test('two hosts racing for a pool that fits exactly their demand fill it with no duplicate', async () => {
    const { kv, alloc } = await setup('10.5.0.0/24'); // four /26 blocks, 256 addresses
    const a = alloc('host-a');
    const b = alloc('host-b');
    const all = (await Promise.all([burst(a, 128), burst(b, 128)])).flat();
    assert.equal(new Set(all.map((g) => formatIP(g.ip))).size, 256);
    assert.equal((await recorded(kv)).size, 256);
    await assert.rejects(a.autoAssign(4, a.newOwner('p')), ConflictError);
  });

  test('concurrent releases and allocations lose nothing', async () => {
    const { kv, alloc } = await setup('10.5.0.0/26');
    const a = alloc('host-a');
    const b = alloc('host-b');
    const first = await burst(a, 40);
    const released = first.slice(0, 20);
    const results = await Promise.all([...released.map((g) => a.release(g.ip)), ...Array.from({ length: 20 }, () => b.autoAssign(4, b.newOwner('p')))]);
    assert.deepEqual(results.slice(0, 20), Array(20).fill('released'));
    const rec = await recorded(kv);
    assert.equal(rec.size, 40);
    for (const g of first.slice(20)) assert.equal(rec.get(formatIP(g.ip))?.handle, g.handle);
  });
});

describe('compare-and-swap retry', () => {
  test('a competing write to the host block makes autoAssign re-read and pick another address', async () => {
    const { kv, alloc } = await setup();
    const a = alloc('host-a');
    const x = await a.autoAssign(4, a.newOwner('p'));
    await a.autoAssign(4, a.newOwner('p')); // the block is now cached with its revision
    const cidr = formatCidr(enclosing(x, 26));
    const net = parseCidr(cidr);
    const snapshot = codecs.block.decode((await kv.get(keys.block(cidr)))!);
    const stolen = blk.allocate(snapshot, net, intruder('theirs'))!; // takes the very next free address
    const hook = beforeNextTxn(kv, () => competingPut(kv, keys.block(cidr), stolen.rec));
    const owner = a.newOwner('p');
    const mine = await a.autoAssign(4, owner);
    assert.ok(hook.fired());
    assert.notEqual(formatIP(mine), formatIP(stolen.ip), 'no duplicate');
    const rec = await recorded(kv);
    assert.equal(rec.get(formatIP(stolen.ip))?.handle, 'theirs', 'the competing allocation survives');
    assert.equal(rec.get(formatIP(mine))?.handle, owner.handle);
    assert.equal(rec.size, 4);
  });

  test('losing the race to claim a block makes autoAssign claim another one', async () => {
    const { kv, pools, alloc } = await setup();
    const pool = (await pools.list())[0];
    const wanted = pickUnclaimedBlock(pool.net, 26, new Set(), 'host-a')!;
    const cidr = formatCidr(wanted);
    const theirs = blk.allocate(newBlock(wanted, 'host-b'), wanted, intruder('theirs'))!;
    const hook = beforeNextTxn(kv, () => {
      void kv.txn(
        [],
        [
          { put: keys.block(cidr), value: JSON.stringify(theirs.rec) },
          { put: keys.affinity('host-b', cidr), value: '{"state":"confirmed"}' },
        ],
      );
    });
    const a = alloc('host-a');
    const mine = await a.autoAssign(4, a.newOwner('p'));
    assert.ok(hook.fired());
    assert.notEqual(formatCidr(enclosing(mine, 26)), cidr, 'claimed a different block');
    assert.equal(codecs.block.decode((await kv.get(keys.block(cidr)))!).affinity, 'host-b');
    assert.equal(await kv.get(keys.affinity('host-a', cidr)), undefined);
    assert.deepEqual(await a.affineBlocks(4), [formatCidr(enclosing(mine, 26))]);
  });

  test('assign retries after a competing write and keeps both allocations', async () => {
    const { kv, alloc } = await setup();
    const a = alloc('host-a');
    const x = await a.autoAssign(4, a.newOwner('p'));
    const cidr = formatCidr(enclosing(x, 26));
    const snapshot = codecs.block.decode((await kv.get(keys.block(cidr)))!);
    const stolen = blk.allocate(snapshot, parseCidr(cidr), intruder('theirs'))!;
    beforeNextTxn(kv, () => competingPut(kv, keys.block(cidr), stolen.rec));
    const target = { family: 4 as const, value: x.value + 30n };
    await a.assign(target, a.newOwner('p'));
    const rec = await recorded(kv);
    assert.equal(rec.get(formatIP(stolen.ip))?.handle, 'theirs');
    assert.ok(rec.has(formatIP(target)));
    assert.ok(rec.has(formatIP(x)));
  });

  test('assign reports a conflict when the competing write took the same address', async () => {
    const { kv, alloc } = await setup();
    const a = alloc('host-a');
    const x = await a.autoAssign(4, a.newOwner('p'));
    const cidr = formatCidr(enclosing(x, 26));
    const target = { family: 4 as const, value: x.value + 30n };
    const snapshot = codecs.block.decode((await kv.get(keys.block(cidr)))!);
    const taken = blk.assign(snapshot, parseCidr(cidr), target, intruder('theirs'));
    assert.ok('rec' in taken);
    beforeNextTxn(kv, () => competingPut(kv, keys.block(cidr), taken.rec));
    await assert.rejects(a.assign(target, a.newOwner('p')), (e: unknown) => e instanceof ConflictError && /host intruder/.test(e.message));
  });

  test('attachEndpoint retries after a competing write to the block', async () => {
    const { kv, alloc } = await setup();
    const a = alloc('host-a');
    const ip = await a.autoAssign(4, a.newOwner('p'));
    const cidr = formatCidr(enclosing(ip, 26));
    const snapshot = codecs.block.decode((await kv.get(keys.block(cidr)))!);
    const stolen = blk.allocate(snapshot, parseCidr(cidr), intruder('theirs'))!;
    beforeNextTxn(kv, () => competingPut(kv, keys.block(cidr), stolen.rec));
    const ep = {
      id: 'ep-1',
      host: 'host-a',
      network: 'n',
      ifName: 'caliep-1',
      mac: 'ee:ee:ee:ee:ee:ee',
      ipv4: [`${formatIP(ip)}/32`],
      ipv6: [],
      labels: {},
      createdAt: '',
    };
    await a.attachEndpoint([ip], ep, keys.endpoint('host-a', 'ep-1'));
    const rec = await recorded(kv);
    assert.equal(endpointOf(rec.get(formatIP(ip))), 'ep-1');
    assert.equal(rec.get(formatIP(stolen.ip))?.handle, 'theirs');
    assert.ok(await kv.get(keys.endpoint('host-a', 'ep-1')));
  });

  test('gives up with UnavailableError when the block keeps changing', async (t) => {
    t.mock.method(Math, 'random', () => 0); // no jitter: the 20 back-offs take no time
    const { kv, alloc } = await setup();
    const a = alloc('host-a');
    const ip = parseIP('10.0.3.1');
    await a.assign(ip, a.newOwner('p'));
    const key = keys.block('10.0.3.0/26');
    const unchanged = codecs.block.decode((await kv.get(key))!);
    let inside = false;
    let writes = 0;
    kv.beforeTxn = () => {
      if (inside) return;
      inside = true;
      competingPut(kv, key, unchanged); // same content: only the revision moves, so every CAS fails
      writes++;
      inside = false;
    };
    await assert.rejects(a.release(ip), (e: unknown) => e instanceof UnavailableError && /kept changing/.test(e.message));
    assert.equal(writes, 20, 'bounded: one attempt per competing write');
    kv.beforeTxn = undefined;
    assert.equal(await a.release(ip), 'released');
  });
});
