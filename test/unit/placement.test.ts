/** Which block a host claims next (ipam/placement.ts). */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { hostSeed, pickUnclaimedBlock } from '../../ipam/placement';
import { type Cidr, containsCidr, formatCidr, overlaps, parseCidr } from '../../lib/ip';

const POOL = parseCidr('10.0.0.0/16');
const none = new Set<bigint>();
const fmt = (c: Cidr | undefined) => (c ? formatCidr(c) : undefined);

/** Picks repeatedly, marking each pick taken, until nothing is left (or `max` picks). */
function drain(pool: Cidr, prefix: number, host: string, within?: Cidr[], max = 10_000): string[] {
  const taken = new Set<bigint>();
  const out: string[] = [];
  for (let i = 0; i < max; i++) {
    const b = pickUnclaimedBlock(pool, prefix, taken, host, within);
    if (!b) break;
    out.push(formatCidr(b));
    taken.add(b.base);
  }
  return out;
}

describe('hostSeed', () => {
  test('is a stable 64-bit FNV-1a hash', () => {
    assert.equal(hostSeed(''), 0xcbf29ce484222325n);
    assert.equal(hostSeed('a'), 0xaf63dc4c8601ec8cn);
    assert.equal(hostSeed('node-1'), hostSeed('node-1'));
    assert.notEqual(hostSeed('node-1'), hostSeed('node-2'));
  });
});

describe('pickUnclaimedBlock', () => {
  test('returns a block of the requested size aligned inside the pool', () => {
    const b = pickUnclaimedBlock(POOL, 26, none, 'host-a')!;
    assert.equal(b.prefix, 26);
    assert.equal(b.family, 4);
    assert.ok(containsCidr(POOL, b));
    assert.equal(b.base % 64n, 0n);
  });

  test('is deterministic for one host', () => {
    const first = fmt(pickUnclaimedBlock(POOL, 26, none, 'host-a'));
    for (let i = 0; i < 5; i++) assert.equal(fmt(pickUnclaimedBlock(POOL, 26, new Set(), 'host-a')), first);
  });

  test('different hosts usually start at different blocks', () => {
    const starts = new Set<string | undefined>();
    for (let i = 0; i < 32; i++) starts.add(fmt(pickUnclaimedBlock(POOL, 26, none, `node-${i}`)));
    assert.ok(starts.size >= 28, `only ${starts.size} distinct starting blocks for 32 hosts`);
  });

  test('skips taken blocks and moves to the next one', () => {
    const first = pickUnclaimedBlock(POOL, 26, none, 'host-a')!;
    const second = pickUnclaimedBlock(POOL, 26, new Set([first.base]), 'host-a')!;
    assert.notEqual(second.base, first.base);
    const expected = first.base + 64n <= 0x0a00ffc0n ? first.base + 64n : POOL.base;
    assert.equal(second.base, expected, 'probes the following block, wrapping at the pool end');
  });

  test('visits every block of the pool exactly once, then returns undefined', () => {
    const pool = parseCidr('10.1.0.0/22');
    const all = drain(pool, 26, 'host-a');
    assert.equal(all.length, 16);
    assert.equal(new Set(all).size, 16);
    assert.ok(all.every((c) => containsCidr(pool, parseCidr(c))));
  });

  test('returns undefined when every block is taken', () => {
    const pool = parseCidr('10.1.0.0/24');
    const taken = new Set([0n, 64n, 128n, 192n].map((o) => pool.base + o));
    assert.equal(pickUnclaimedBlock(pool, 26, taken, 'host-a'), undefined);
  });

  test('finds the last free block even when taken blocks sit right after the start', () => {
    const pool = parseCidr('10.1.0.0/24');
    const taken = new Set([0n, 64n, 192n].map((o) => pool.base + o));
    for (const host of ['a', 'b', 'c', 'd', 'e', 'f']) assert.equal(fmt(pickUnclaimedBlock(pool, 26, taken, host)), '10.1.0.128/26');
  });

  test('ignores taken entries that are outside the pool', () => {
    const pool = parseCidr('10.1.0.0/26');
    const taken = new Set([parseCidr('10.2.0.0/26').base, parseCidr('10.3.0.0/26').base]);
    assert.equal(fmt(pickUnclaimedBlock(pool, 26, taken, 'a')), '10.1.0.0/26');
  });

  test('a pool of exactly one block gives that block', () => {
    assert.equal(fmt(pickUnclaimedBlock(parseCidr('10.1.0.0/26'), 26, none, 'anyone')), '10.1.0.0/26');
  });

  test('a /28 subnet inside a /26 block gives that block', () => {
    const within = [parseCidr('10.0.7.80/28')];
    for (const host of ['a', 'b', 'c']) assert.equal(fmt(pickUnclaimedBlock(POOL, 26, none, host, within)), '10.0.7.64/26');
    assert.equal(pickUnclaimedBlock(POOL, 26, new Set([parseCidr('10.0.7.64/26').base]), 'a', within), undefined);
  });

  test('a /24 subnet gives only the four blocks inside it', () => {
    const within = [parseCidr('10.0.5.0/24')];
    const all = drain(POOL, 26, 'host-a', within);
    assert.deepEqual([...all].sort(), ['10.0.5.0/26', '10.0.5.128/26', '10.0.5.192/26', '10.0.5.64/26']);
  });

  test('a within network larger than the pool allows every block of the pool', () => {
    const pool = parseCidr('10.0.0.0/24');
    assert.equal(drain(pool, 26, 'h', [parseCidr('10.0.0.0/8')]).length, 4);
  });

  test('several within networks each contribute their blocks', () => {
    const within = [parseCidr('10.0.1.0/26'), parseCidr('10.0.9.200/29')];
    assert.deepEqual(drain(POOL, 26, 'h', within).sort(), ['10.0.1.0/26', '10.0.9.192/26']);
  });

  test('returns undefined when within lies outside the pool or in another family', () => {
    assert.equal(pickUnclaimedBlock(POOL, 26, none, 'h', [parseCidr('10.1.0.0/24')]), undefined);
    assert.equal(pickUnclaimedBlock(POOL, 26, none, 'h', [parseCidr('fd00::/64')]), undefined);
    assert.equal(pickUnclaimedBlock(POOL, 26, none, 'h', []), undefined);
  });

  test('works quickly for a huge IPv6 pool (/64 with /122 blocks)', () => {
    const pool = parseCidr('fd80:24e2:f998:72d6::/64');
    const started = process.hrtime.bigint();
    const taken = new Set<bigint>();
    for (let i = 0; i < 200; i++) {
      const b = pickUnclaimedBlock(pool, 122, taken, 'host-a')!;
      assert.equal(b.prefix, 122);
      assert.ok(containsCidr(pool, b));
      assert.equal(taken.has(b.base), false);
      taken.add(b.base);
    }
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    assert.ok(ms < 1000, `took ${ms} ms`);
  });

  test('IPv6 picks differ per host and respect a /120 within', () => {
    const pool = parseCidr('fd00::/64');
    assert.notEqual(fmt(pickUnclaimedBlock(pool, 122, none, 'a')), fmt(pickUnclaimedBlock(pool, 122, none, 'b')));
    const within = [parseCidr('fd00::1:0/120')];
    const all = drain(pool, 122, 'a', within);
    assert.equal(all.length, 4);
    assert.ok(all.every((c) => overlaps(within[0], parseCidr(c))));
  });
});
