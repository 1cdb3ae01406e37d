/**
 * The allocator caches block records between calls. Another host may change a block meanwhile;
 * a decision must never rest on a cached copy alone (ipam/allocator.ts, ipam/block-writer.ts).
 * These tests document the correct behaviour; the ones marked todo fail against the current source.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Allocator } from '../../ipam/allocator';
import * as blk from '../../ipam/block';
import { Pools } from '../../ipam/pools';
import { keys } from '../../lib/datastore/keys';
import { MemoryKV } from '../../lib/datastore/memory';
import { type IP, enclosing, formatCidr, formatIP, parseCidr, parseIP } from '../../lib/ip';
import { silentLogger } from '../../lib/log';
import { codecs } from '../../lib/datastore/codec';
import { endpointOf } from '../harness/owners';

async function setup(pool: string) {
  const kv = new MemoryKV();
  const pools = new Pools(kv, 0);
  await pools.add(pool);
  const alloc = (host: string) => new Allocator(kv, pools, host, silentLogger());
  return { kv, pools, a: alloc('host-a'), b: alloc('host-b') };
}

async function fill(al: Allocator, n: number): Promise<IP[]> {
  const out: IP[] = [];
  for (let i = 0; i < n; i++) out.push(await al.autoAssign(4, al.newOwner('p')));
  return out;
}

describe('allocator with a stale block cache', () => {
  test('a host whose block was freed by another host allocates from it again', async () => {
    const { a, b } = await setup('10.6.0.0/28');
    const mine = await fill(a, 1);
    const theirs = await fill(b, 14); // b borrows from a's only block
    await fill(a, 1); // a now caches its block as full
    assert.equal(await b.release(theirs[0]), 'released');
    const ip = await a.autoAssign(4, a.newOwner('p'));
    assert.equal(formatIP(ip), formatIP(theirs[0]));
    assert.notEqual(formatIP(ip), formatIP(mine[0]));
  });

  test('a borrowing host sees an address the block owner released', async () => {
    const { a, b } = await setup('10.6.0.0/28');
    const mine = await fill(a, 15);
    await fill(b, 1); // b borrows the last free address and caches the full block
    assert.equal(await a.release(mine[3]), 'released');
    assert.equal(formatIP(await b.autoAssign(4, b.newOwner('p'))), formatIP(mine[3]));
  });

  test('assign takes an address another host released after this host cached the block', async () => {
    const { kv, a, b } = await setup('10.6.0.0/16');
    await a.assign(parseIP('10.6.0.3'), a.newOwner('p'));
    await b.assign(parseIP('10.6.0.4'), b.newOwner('p')); // b caches the block with .3 held
    assert.equal(await a.release(parseIP('10.6.0.3')), 'released');
    await b.assign(parseIP('10.6.0.3'), b.newOwner('p'));
    const rec = codecs.block.decode((await kv.get(keys.block('10.6.0.0/26')))!);
    assert.equal(rec.allocations['3'].host, 'host-b');
  });

  test('markAux marks an address allocated through another Allocator instance', async () => {
    const { kv, pools, a } = await setup('10.6.0.0/16');
    await fill(a, 1); // a caches the block
    const other = new Allocator(kv, pools, 'host-a', silentLogger());
    const [ip] = await fill(other, 1);
    await a.markAux(ip, 'net-1');
    const net = enclosing(ip, 26);
    const rec = codecs.block.decode((await kv.get(keys.block(formatCidr(net))))!);
    const owner = blk.ownerOf(rec, net, ip);
    assert.equal(owner?.kind, 'aux');
  });

  test('a cached full block does not stop a fresh Allocator from borrowing (control)', async () => {
    const { kv, pools, a } = await setup('10.6.0.0/28');
    const mine = await fill(a, 16);
    await a.release(mine[5]);
    const fresh = new Allocator(kv, pools, 'host-b', silentLogger());
    assert.equal(formatIP(await fresh.autoAssign(4, fresh.newOwner('p'))), formatIP(mine[5]));
  });
});

describe('allocator losing a claim race', () => {
  test('borrows from the block the winner just claimed instead of reporting the pool full', async () => {
    const { kv, b } = await setup('10.6.0.0/26'); // a single /26 block
    const net = parseCidr('10.6.0.0/26');
    const winner = blk.allocate(blk.newBlock(net, 'host-a'), net, { host: 'host-a', pool: 'p', kind: 'pending', handle: 'w', since: '' })!;
    let fired = false;
    kv.beforeTxn = () => {
      if (fired) return;
      fired = true; // host-a claims the block just before host-b's claim reaches the store
      void kv.txn(
        [],
        [
          { put: keys.block('10.6.0.0/26'), value: JSON.stringify(winner.rec) },
          { put: keys.affinity('host-a', '10.6.0.0/26'), value: '{"state":"confirmed"}' },
        ],
      );
    };
    const ip = await b.autoAssign(4, b.newOwner('p'));
    assert.ok(fired);
    assert.notEqual(formatIP(ip), formatIP(winner.ip));
  });

  test('two hosts splitting one block exactly both succeed', async () => {
    const { kv, a, b } = await setup('10.6.0.0/26');
    const burst = (al: Allocator) => Promise.all(Array.from({ length: 32 }, () => al.autoAssign(4, al.newOwner('p'))));
    const all = (await Promise.all([burst(a), burst(b)])).flat();
    assert.equal(new Set(all.map(formatIP)).size, 64);
    assert.equal((await kv.list(keys.blocks())).length, 1);
  });
});

describe('allocator release racing an attach', () => {
  test('does not free an address whose endpoint was attached after the release looked at it', async () => {
    const { kv, a } = await setup('10.6.0.0/16');
    const [ip] = await fill(a, 1);
    const net = enclosing(ip, 26);
    const key = keys.block(formatCidr(net));
    const snapshot = codecs.block.decode((await kv.get(key))!);
    const pending = blk.ownerOf(snapshot, net, ip)!;
    const attached = blk.setOwner(snapshot, net, ip, { ...pending, kind: 'endpoint', endpoint: 'ep-1', network: 'n' });
    let fired = false;
    kv.beforeTxn = () => {
      if (fired) return;
      fired = true; // CreateEndpoint's transaction lands just before the release's write
      void kv.txn(
        [],
        [
          { put: key, value: JSON.stringify(attached) },
          { put: keys.endpoint('host-a', 'ep-1'), value: '{"id":"ep-1"}' },
        ],
      );
    };
    const result = await a.release(ip);
    assert.ok(fired);
    assert.equal(result, 'in-use');
    assert.equal(endpointOf(blk.ownerOf(codecs.block.decode((await kv.get(key))!), net, ip)), 'ep-1');
  });
});
