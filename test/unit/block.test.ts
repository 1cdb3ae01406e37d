/** Pure allocation inside one block (ipam/block.ts). */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as blk from '../../ipam/block';
import type { BlockRecord, Owner } from '../../lib/datastore/records';
import { formatIP, parseCidr, parseIP } from '../../lib/ip';
import { type OwnerFields, endpointOf, makeOwner } from '../harness/owners';

const NET = parseCidr('10.0.0.0/28');
const owner = (handle: string, extra: OwnerFields & { kind?: Owner['kind'] } = {}): Owner =>
  makeOwner(extra.kind ?? 'pending', { since: '2024-01-01T00:00:00.000Z', ...extra, handle });
const ip = (s: string) => parseIP(s);

/** Each request has its own handle (allocate is idempotent per handle). */
let requests = 0;

/** Allocates `n` addresses in turn, returning the final record and the addresses. */
function take(rec: BlockRecord, n: number, within?: ReturnType<typeof parseCidr>[]): { rec: BlockRecord; ips: string[] } {
  const ips: string[] = [];
  for (let i = 0; i < n; i++) {
    const got = blk.allocate(rec, NET, owner(`h${requests++}`), within);
    assert.ok(got, `allocation ${i} failed`);
    rec = got.rec;
    ips.push(formatIP(got.ip));
  }
  return { rec, ips };
}

describe('newBlock', () => {
  test('lists every ordinal as free, in address order, with no allocations', () => {
    const b = blk.newBlock(NET, 'h1');
    assert.deepEqual(b, { cidr: '10.0.0.0/28', affinity: 'h1', allocations: {}, unallocated: [...Array(16).keys()] });
    assert.equal(blk.isEmpty(b), true);
  });

  test('records a null affinity and canonical IPv6 cidr', () => {
    const b = blk.newBlock(parseCidr('fd00::/122'), null);
    assert.equal(b.cidr, 'fd00::/122');
    assert.equal(b.affinity, null);
    assert.equal(b.unallocated.length, 64);
  });
});

describe('ipAt and ordinalOf', () => {
  test('map between ordinals and addresses', () => {
    assert.equal(formatIP(blk.ipAt(NET, 5)), '10.0.0.5');
    assert.equal(blk.ordinalOf(NET, ip('10.0.0.15')), 15);
  });

  test('ordinalOf refuses an address outside the block', () => {
    assert.throws(() => blk.ordinalOf(NET, ip('10.0.0.16')), RangeError);
  });
});

describe('allocate', () => {
  test('hands out addresses in order from the first free ordinal', () => {
    const { rec, ips } = take(blk.newBlock(NET, 'h1'), 3);
    assert.deepEqual(ips, ['10.0.0.0', '10.0.0.1', '10.0.0.2']);
    assert.deepEqual(Object.keys(rec.allocations).sort(), ['0', '1', '2']);
    assert.equal(rec.unallocated.length, 13);
    assert.equal(blk.isEmpty(rec), false);
  });

  test('records the owner of each address', () => {
    const got = blk.allocate(blk.newBlock(NET, 'h1'), NET, owner('x', { kind: 'aux', network: 'n1' }))!;
    assert.deepEqual(blk.ownerOf(got.rec, NET, got.ip), owner('x', { kind: 'aux', network: 'n1' }));
  });

  test('does not modify the record it was given', () => {
    const b = blk.newBlock(NET, 'h1');
    const before = structuredClone(b);
    blk.allocate(b, NET, owner('x'));
    assert.deepEqual(b, before);
  });

  test('returns undefined when the block is full', () => {
    const { rec } = take(blk.newBlock(NET, 'h1'), 16);
    assert.equal(rec.unallocated.length, 0);
    assert.equal(blk.allocate(rec, NET, owner('x')), undefined);
  });

  test('takes only addresses inside the within constraint', () => {
    const within = [parseCidr('10.0.0.8/30')];
    const { rec, ips } = take(blk.newBlock(NET, 'h1'), 4, within);
    assert.deepEqual(ips, ['10.0.0.8', '10.0.0.9', '10.0.0.10', '10.0.0.11']);
    assert.equal(blk.allocate(rec, NET, owner('x'), within), undefined, 'nothing left inside the range');
    assert.equal(formatIP(blk.allocate(rec, NET, owner('x'))!.ip), '10.0.0.0', 'outside the range is still free');
  });

  test('accepts an address inside any of several within networks', () => {
    const within = [parseCidr('10.0.0.14/31'), parseCidr('10.0.0.4/32')];
    assert.deepEqual(take(blk.newBlock(NET, 'h1'), 3, within).ips, ['10.0.0.4', '10.0.0.14', '10.0.0.15']);
  });

  test('returns undefined when within does not touch the block', () => {
    assert.equal(blk.allocate(blk.newBlock(NET, 'h1'), NET, owner('x'), [parseCidr('10.0.1.0/24')]), undefined);
  });

  test('hands out released addresses last (FIFO reuse)', () => {
    let { rec } = take(blk.newBlock(NET, 'h1'), 4);
    rec = blk.release(rec, NET, ip('10.0.0.1'))!;
    rec = blk.release(rec, NET, ip('10.0.0.0'))!;
    const { ips } = take(rec, 14);
    assert.deepEqual(
      ips.slice(0, 12),
      [...Array(12).keys()].map((i) => `10.0.0.${i + 4}`),
    );
    assert.deepEqual(ips.slice(12), ['10.0.0.1', '10.0.0.0'], 'released ordinals come back in release order, after all others');
  });
});

describe('allocate, replayed', () => {
  test('a request whose write already landed gets the address it holds, not a second one', () => {
    const first = blk.allocate(blk.newBlock(NET, 'h1'), NET, owner('same'))!;
    const again = blk.allocate(first.rec, NET, owner('same'))!;
    assert.equal(formatIP(again.ip), formatIP(first.ip));
    assert.deepEqual(again.rec, first.rec);
    assert.deepEqual(blk.assign(first.rec, NET, first.ip, owner('same')), { rec: first.rec });
    assert.ok('heldBy' in blk.assign(first.rec, NET, first.ip, owner('other')));
  });
});

describe('assign', () => {
  test('takes a chosen address and removes it from the free list', () => {
    const r = blk.assign(blk.newBlock(NET, 'h1'), NET, ip('10.0.0.7'), owner('a'));
    assert.ok('rec' in r);
    assert.equal(r.rec.allocations['7'].handle, 'a');
    assert.equal(r.rec.unallocated.includes(7), false);
    assert.equal(r.rec.unallocated.length, 15);
  });

  test('returns heldBy with the current owner when the address is taken', () => {
    const first = blk.assign(blk.newBlock(NET, 'h1'), NET, ip('10.0.0.7'), owner('a'));
    assert.ok('rec' in first);
    const second = blk.assign(first.rec, NET, ip('10.0.0.7'), owner('b'));
    assert.deepEqual(second, { heldBy: owner('a') });
  });

  test('an assigned address is never handed out by allocate', () => {
    const r = blk.assign(blk.newBlock(NET, 'h1'), NET, ip('10.0.0.0'), owner('a'));
    assert.ok('rec' in r);
    assert.equal(formatIP(blk.allocate(r.rec, NET, owner('b'))!.ip), '10.0.0.1');
  });

  test('throws for an address outside the block', () => {
    assert.throws(() => blk.assign(blk.newBlock(NET, 'h1'), NET, ip('10.0.1.0'), owner('a')), RangeError);
  });
});

describe('release', () => {
  test('frees an address and appends its ordinal to the free list', () => {
    const { rec } = take(blk.newBlock(NET, 'h1'), 2);
    const next = blk.release(rec, NET, ip('10.0.0.0'))!;
    assert.equal(next.allocations['0'], undefined);
    assert.equal(next.unallocated.at(-1), 0);
    assert.equal(next.unallocated.length, 15);
  });

  test('returns undefined for an address that is already free (idempotent)', () => {
    const { rec } = take(blk.newBlock(NET, 'h1'), 1);
    const once = blk.release(rec, NET, ip('10.0.0.0'))!;
    assert.equal(blk.release(once, NET, ip('10.0.0.0')), undefined);
    assert.equal(blk.release(blk.newBlock(NET, 'h1'), NET, ip('10.0.0.9')), undefined);
  });

  test('leaves an empty block once everything is released', () => {
    const { rec } = take(blk.newBlock(NET, 'h1'), 1);
    assert.equal(blk.isEmpty(blk.release(rec, NET, ip('10.0.0.0'))!), true);
  });
});

describe('setOwner and allocations', () => {
  test('setOwner replaces the owner without touching the free list', () => {
    const { rec } = take(blk.newBlock(NET, 'h1'), 1);
    const next = blk.setOwner(rec, NET, ip('10.0.0.0'), owner('z', { kind: 'endpoint', endpoint: 'ep1', network: 'n1' }));
    assert.equal(blk.ownerOf(next, NET, ip('10.0.0.0'))?.kind, 'endpoint');
    assert.equal(endpointOf(blk.ownerOf(next, NET, ip('10.0.0.0'))), 'ep1');
    assert.deepEqual(next.unallocated, rec.unallocated);
    assert.equal(blk.ownerOf(rec, NET, ip('10.0.0.0'))?.kind, 'pending', 'original record untouched');
  });

  test('ownerOf is undefined for a free address', () => {
    assert.equal(blk.ownerOf(blk.newBlock(NET, 'h1'), NET, ip('10.0.0.3')), undefined);
  });

  test('allocations lists addresses in numeric address order', () => {
    let rec = blk.newBlock(NET, 'h1');
    for (const a of ['10.0.0.10', '10.0.0.2', '10.0.0.15', '10.0.0.9']) {
      const r = blk.assign(rec, NET, ip(a), owner(a));
      assert.ok('rec' in r);
      rec = r.rec;
    }
    const list = blk.allocations(rec, NET);
    assert.deepEqual(
      list.map((x) => formatIP(x.ip)),
      ['10.0.0.2', '10.0.0.9', '10.0.0.10', '10.0.0.15'],
    );
    assert.deepEqual(
      list.map((x) => x.owner.handle),
      ['10.0.0.2', '10.0.0.9', '10.0.0.10', '10.0.0.15'],
    );
  });

  test('allocations is empty for a new block', () => {
    assert.deepEqual(blk.allocations(blk.newBlock(NET, null), NET), []);
  });
});
