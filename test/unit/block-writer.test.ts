/** Group commit of block documents (ipam/block-writer.ts). */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as blk from '../../ipam/block';
import { BlockWriter, type CachedBlock } from '../../ipam/block-writer';
import { keys } from '../../lib/datastore/keys';
import { MemoryKV } from '../../lib/datastore/memory';
import type { BlockRecord, Owner } from '../../lib/datastore/records';
import { ConflictError, UnavailableError } from '../../lib/errors';
import { formatIP, parseCidr } from '../../lib/ip';
import { codecs } from '../../lib/datastore/codec';

const CIDR = '10.0.0.0/28';
const NET = parseCidr(CIDR);
const owner = (handle: string): Owner => ({ host: 'h1', pool: 'p', kind: 'pending', handle, since: '' });

/** A MemoryKV that counts transactions. */
function counting() {
  const kv = new MemoryKV();
  let txns = 0;
  kv.beforeTxn = () => void txns++;
  return { kv, txns: () => txns };
}

async function stored(kv: MemoryKV): Promise<BlockRecord | undefined> {
  const e = await kv.get(keys.block(CIDR));
  return e ? codecs.block.decode(e) : undefined;
}

/** A change that allocates one address for `handle`. */
const allocate = (handle: string) => (c: CachedBlock | undefined) => {
  const got = c && blk.allocate(c.rec, c.net, owner(handle));
  return got ? { write: got.rec, result: formatIP(got.ip) } : { done: undefined };
};

async function seed(kv: MemoryKV) {
  await kv.put(keys.block(CIDR), JSON.stringify(blk.newBlock(NET, 'h1')));
}

describe('BlockWriter', () => {
  test('applies concurrent changes to one block in few transactions, each seeing the previous', async () => {
    const { kv, txns } = counting();
    await seed(kv);
    const w = new BlockWriter(kv);
    const before = txns();
    const ips = await Promise.all(Array.from({ length: 8 }, (_, i) => w.change(CIDR, allocate(`r${i}`))));
    assert.equal(new Set(ips).size, 8);
    assert.ok(txns() - before <= 2, `${txns() - before} transactions for 8 changes`);
    assert.equal(Object.keys((await stored(kv))!.allocations).length, 8);
  });

  test('writes nothing for a change that returns done', async () => {
    const { kv, txns } = counting();
    await seed(kv);
    const w = new BlockWriter(kv);
    const before = txns();
    assert.equal(await w.change(CIDR, () => ({ done: 'nothing' })), 'nothing');
    assert.equal(txns(), before);
  });

  test('passes undefined for a missing block and can create it', async () => {
    const { kv } = counting();
    const w = new BlockWriter(kv);
    const seen: Array<CachedBlock | undefined> = [];
    await w.change(CIDR, (c) => (seen.push(c), { write: blk.newBlock(NET, 'h1'), result: undefined }));
    assert.deepEqual(seen, [undefined]);
    assert.equal((await stored(kv))?.affinity, 'h1');
    assert.equal(w.cached(CIDR)?.rec.affinity, 'h1');
  });

  test('deletes the block when a change writes null', async () => {
    const { kv } = counting();
    await seed(kv);
    const w = new BlockWriter(kv);
    await w.change(CIDR, () => ({ write: null, result: undefined }));
    assert.equal(await stored(kv), undefined);
    assert.equal(w.cached(CIDR), undefined);
  });

  test('writes extra ops in the same transaction', async () => {
    const { kv } = counting();
    await seed(kv);
    const w = new BlockWriter(kv);
    await w.change(CIDR, (c) => ({ write: c!.rec, ops: [{ put: 'endpoints/h1/e1', value: '{}' }], result: undefined }));
    assert.equal((await kv.get('endpoints/h1/e1'))?.mod, (await kv.get(keys.block(CIDR)))?.mod);
  });

  test('a throwing change rejects only its own caller', async () => {
    const { kv } = counting();
    await seed(kv);
    const w = new BlockWriter(kv);
    const results = await Promise.allSettled([
      w.change(CIDR, allocate('a')),
      w.change(CIDR, () => {
        throw new ConflictError('mine only');
      }),
      w.change(CIDR, allocate('b')),
    ]);
    assert.deepEqual(
      results.map((r) => r.status),
      ['fulfilled', 'rejected', 'fulfilled'],
    );
    assert.equal(Object.keys((await stored(kv))!.allocations).length, 2);
  });

  test('re-reads and re-applies the batch when another writer changed the block', async () => {
    const { kv } = counting();
    await seed(kv);
    const w = new BlockWriter(kv);
    await w.change(CIDR, allocate('first')); // cached now
    const theirs = blk.allocate((await stored(kv))!, NET, owner('theirs'))!;
    await new BlockWriter(kv).change(CIDR, () => ({ write: theirs.rec, result: undefined }));
    const mine = await w.change(CIDR, allocate('mine'));
    assert.notEqual(mine, formatIP(theirs.ip));
    const handles = Object.values((await stored(kv))!.allocations)
      .map((o) => o.handle)
      .sort();
    assert.deepEqual(handles, ['first', 'mine', 'theirs']);
  });

  test('gives up with UnavailableError after bounded attempts under constant contention', async (t) => {
    t.mock.method(Math, 'random', () => 0);
    const kv = new MemoryKV();
    await seed(kv);
    const value = (await kv.get(keys.block(CIDR)))!.value;
    let inside = false;
    let attempts = 0;
    kv.beforeTxn = () => {
      if (inside) return;
      inside = true;
      attempts++;
      void kv.txn([], [{ put: keys.block(CIDR), value }]);
      inside = false;
    };
    await assert.rejects(new BlockWriter(kv).change(CIDR, allocate('x')), (e: unknown) => e instanceof UnavailableError && /kept changing/.test(e.message));
    assert.equal(attempts, 20);
  });
});
