/** IP pools over the in-memory KV (ipam/pools.ts). */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Allocator } from '../../ipam/allocator';
import { Pools } from '../../ipam/pools';
import { keys } from '../../lib/datastore/keys';
import { MemoryKV } from '../../lib/datastore/memory';
import { BadRequestError, ConflictError, NotFoundError } from '../../lib/errors';
import { parseCidr, parseIP } from '../../lib/ip';
import { silentLogger } from '../../lib/log';

function setup() {
  const kv = new MemoryKV();
  const pools = new Pools(kv, 0);
  return { kv, pools };
}

/** Asserts `p` rejects with an instance of `cls` whose message matches every pattern. */
async function rejects(p: Promise<unknown>, cls: new (...a: never[]) => Error, ...patterns: RegExp[]) {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof cls, `expected ${cls.name}, got ${String(err)}`);
    for (const re of patterns) assert.match(err.message, re);
    return true;
  });
}

describe('Pools.add', () => {
  test('stores a canonical record with the default block size', async () => {
    const { kv, pools } = setup();
    const rec = await pools.add('10.10.0.0/16');
    assert.equal(rec.cidr, '10.10.0.0/16');
    assert.equal(rec.family, 4);
    assert.equal(rec.blockSize, 26);
    assert.equal(rec.disabled, false);
    const stored = JSON.parse((await kv.get('pools/10.10.0.0-16'))!.value);
    assert.deepEqual(stored, rec);
  });

  test('canonicalises the spelling of an IPv6 pool and uses /122 blocks', async () => {
    const { kv, pools } = setup();
    const rec = await pools.add('FD00:0:0:0::/64');
    assert.equal(rec.cidr, 'fd00::/64');
    assert.equal(rec.blockSize, 122);
    assert.ok(await kv.get(keys.pool('fd00::/64')));
  });

  test('uses the pool size as block size for a pool smaller than a default block', async () => {
    const { pools } = setup();
    assert.equal((await pools.add('10.0.0.0/28')).blockSize, 28);
  });

  test('refuses a CIDR with host bits set, suggesting the network', async () => {
    const { kv, pools } = setup();
    await rejects(pools.add('10.10.1.0/16'), BadRequestError, /host bits/, /10\.10\.0\.0\/16/);
    assert.deepEqual(await kv.list('pools/'), []);
  });

  test('refuses a pool that overlaps another, naming the other pool', async () => {
    const { pools } = setup();
    await pools.add('10.10.0.0/16');
    await rejects(pools.add('10.10.5.0/24'), ConflictError, /overlaps existing pool 10\.10\.0\.0\/16/);
    await rejects(pools.add('10.0.0.0/8'), ConflictError, /10\.0\.0\.0\/8 overlaps existing pool 10\.10\.0\.0\/16/);
    assert.equal((await pools.list()).length, 1);
  });

  test('is idempotent for the same CIDR and block size', async () => {
    const { kv, pools } = setup();
    const first = await pools.add('10.10.0.0/16');
    const again = await pools.add('10.10.0.0/16');
    assert.equal(again.cidr, first.cidr);
    assert.equal(again.createdAt, first.createdAt);
    assert.equal((await kv.list('pools/')).length, 1);
  });

  test('refuses the same CIDR with a different block size', async () => {
    const { pools } = setup();
    await pools.add('10.10.0.0/16');
    await rejects(pools.add('10.10.0.0/16', { blockSize: 24 }), ConflictError, /already exists with block size 26/);
  });

  test('accepts block sizes within the family limits', async () => {
    const { pools } = setup();
    assert.equal((await pools.add('10.0.0.0/16', { blockSize: 20 })).blockSize, 20);
    assert.equal((await pools.add('10.1.0.0/16', { blockSize: 32 })).blockSize, 32);
    assert.equal((await pools.add('fd00::/64', { blockSize: 116 })).blockSize, 116);
    assert.equal((await pools.add('fd01::/64', { blockSize: 128 })).blockSize, 128);
  });

  for (const [cidr, size] of [
    ['10.0.0.0/16', 19],
    ['10.0.0.0/16', 33],
    ['10.0.0.0/16', 26.5],
    ['fd00::/64', 115],
    ['fd00::/64', 129],
  ] as const) {
    test(`refuses block size ${size} for ${cidr}`, async () => {
      const { pools } = setup();
      await rejects(pools.add(cidr, { blockSize: size }), BadRequestError, /block size .* is out of range/, /use \d+ to \d+/);
    });
  }

  test('refuses a block larger than the pool', async () => {
    const { pools } = setup();
    await rejects(pools.add('10.0.0.0/28', { blockSize: 26 }), BadRequestError, /larger than the pool 10\.0\.0\.0\/28/, /at least 28/);
  });

  test('adds a disabled pool when asked', async () => {
    const { pools } = setup();
    assert.equal((await pools.add('10.0.0.0/16', { disabled: true })).disabled, true);
    assert.deepEqual(await pools.enabled(4), []);
  });
});

describe('Pools.list and lookups', () => {
  test('lists IPv4 pools before IPv6, each in address order', async () => {
    const { pools } = setup();
    for (const c of ['fd01::/64', '10.20.0.0/16', 'fd00::/64', '10.10.0.0/16']) await pools.add(c);
    assert.deepEqual(
      (await pools.list()).map((p) => p.cidr),
      ['10.10.0.0/16', '10.20.0.0/16', 'fd00::/64', 'fd01::/64'],
    );
  });

  test('containing finds the pool of an address', async () => {
    const { pools } = setup();
    await pools.add('10.10.0.0/16');
    assert.equal((await pools.containing(parseIP('10.10.3.4')))?.cidr, '10.10.0.0/16');
    assert.equal(await pools.containing(parseIP('10.11.0.1')), undefined);
  });

  test('get of a missing pool is NotFoundError', async () => {
    const { pools } = setup();
    await rejects(pools.get('10.0.0.0/8'), NotFoundError, /no pool 10\.0\.0\.0\/8/);
  });

  test('a cached list is reused within the TTL and refreshed after invalidate', async () => {
    const kv = new MemoryKV();
    const pools = new Pools(kv, 60_000);
    await pools.add('10.0.0.0/16');
    assert.equal((await pools.list()).length, 1);
    await new Pools(kv).add('10.1.0.0/16'); // another host
    assert.equal((await pools.list()).length, 1);
    pools.invalidate();
    assert.equal((await pools.list()).length, 2);
  });
});

describe('Pools.covering', () => {
  test('returns the pool equal to the subnet', async () => {
    const { pools } = setup();
    await pools.add('10.10.0.0/16');
    assert.equal((await pools.covering(parseCidr('10.10.0.0/16'))).cidr, '10.10.0.0/16');
  });

  test('returns the pool containing the subnet', async () => {
    const { pools } = setup();
    await pools.add('10.10.0.0/16');
    await pools.add('fd00::/48');
    assert.equal((await pools.covering(parseCidr('10.10.8.0/24'))).cidr, '10.10.0.0/16');
    assert.equal((await pools.covering(parseCidr('fd00:0:0:1::/64'))).cidr, 'fd00::/48');
  });

  test('outside every pool: BadRequestError listing the pools of that family', async () => {
    const { pools } = setup();
    await pools.add('10.10.0.0/16');
    await pools.add('10.20.0.0/16', { disabled: true });
    await pools.add('fd00::/64');
    await rejects(
      pools.covering(parseCidr('172.16.0.0/24')),
      BadRequestError,
      /subnet 172\.16\.0\.0\/24 is not inside any Calico IP pool/,
      /IPv4 pools: 10\.10\.0\.0\/16, 10\.20\.0\.0\/16 \(disabled\)\)/,
      /calico pool add 172\.16\.0\.0\/24/,
    );
  });

  test('a subnet larger than a pool is not covered', async () => {
    const { pools } = setup();
    await pools.add('10.10.0.0/16');
    await rejects(pools.covering(parseCidr('10.0.0.0/8')), BadRequestError, /not inside any Calico IP pool/);
  });

  test('says "none" when there is no pool of the family', async () => {
    const { pools } = setup();
    await pools.add('10.10.0.0/16');
    await rejects(pools.covering(parseCidr('fd00::/64')), BadRequestError, /IPv6 pools: none/);
  });

  test('inside a disabled pool: the message says to enable it', async () => {
    const { pools } = setup();
    await pools.add('10.10.0.0/16', { disabled: true });
    await rejects(
      pools.covering(parseCidr('10.10.1.0/24')),
      BadRequestError,
      /inside pool 10\.10\.0\.0\/16, which is disabled/,
      /calico pool enable 10\.10\.0\.0\/16/,
    );
  });
});

describe('Pools.setDisabled', () => {
  test('disables and re-enables a pool', async () => {
    const { pools } = setup();
    await pools.add('10.10.0.0/16');
    assert.equal((await pools.setDisabled('10.10.0.0/16', true)).disabled, true);
    assert.deepEqual(await pools.enabled(4), []);
    assert.equal((await pools.get('10.10.0.0/16')).disabled, true);
    await pools.setDisabled('10.10.0.0/16', false);
    assert.equal((await pools.enabled(4)).length, 1);
  });

  test('throws NotFoundError for an unknown pool', async () => {
    const { pools } = setup();
    await rejects(pools.setDisabled('10.0.0.0/16', true), NotFoundError, /no pool 10\.0\.0\.0\/16/);
  });
});

describe('Pools.remove', () => {
  test('removes an unused pool', async () => {
    const { kv, pools } = setup();
    await pools.add('10.10.0.0/16');
    await pools.remove('10.10.0.0/16');
    assert.deepEqual(await kv.list('pools/'), []);
    await rejects(pools.remove('10.10.0.0/16'), NotFoundError);
  });

  test('refuses while addresses are in use, saying how many', async () => {
    const { kv, pools } = setup();
    await pools.add('10.10.0.0/16');
    const alloc = new Allocator(kv, pools, 'h1', silentLogger());
    await alloc.autoAssign(4, alloc.newOwner('p'));
    await alloc.autoAssign(4, alloc.newOwner('p'));
    await rejects(pools.remove('10.10.0.0/16'), ConflictError, /still has 2 address\(es\) in use/, /calico pool disable 10\.10\.0\.0\/16/);
    assert.ok(await kv.get(keys.pool('10.10.0.0/16')));
  });

  test('removes empty blocks and their affinities, leaving other pools alone', async () => {
    const { kv, pools } = setup();
    await pools.add('10.10.0.0/16');
    await pools.add('10.20.0.0/16');
    const alloc = new Allocator(kv, pools, 'h1', silentLogger());
    const a = await alloc.autoAssign(4, alloc.newOwner('p'), [parseCidr('10.10.0.0/16')]);
    const b = await alloc.autoAssign(4, alloc.newOwner('p'), [parseCidr('10.20.0.0/16')]);
    assert.equal(await alloc.release(a), 'released');
    assert.equal((await kv.list(keys.blocks())).length, 2);
    await pools.remove('10.10.0.0/16');
    const blocks = (await kv.list(keys.blocks())).map((e) => e.key);
    const affinities = (await kv.list(keys.affinities())).map((e) => e.key);
    assert.equal(blocks.length, 1);
    assert.match(blocks[0], /^ipam\/blocks\/10\.20\./);
    assert.equal(affinities.length, 1);
    assert.match(affinities[0], /^ipam\/affinity\/h1\/10\.20\./);
    assert.equal((await alloc.blockOf(b))?.pool.cidr, '10.20.0.0/16');
  });
});

describe('Pools.remove racing a claim', () => {
  test('does not leave behind a block claimed while the pool was being removed', async () => {
    const { kv, pools } = setup();
    await pools.add('10.7.0.0/24');
    const block = {
      cidr: '10.7.0.64/26',
      affinity: 'h2',
      allocations: { 0: new Allocator(kv, pools, 'h2', silentLogger()).newOwner('p') },
      unallocated: [...Array(63).keys()].map((i) => i + 1),
    };
    const poolKey = keys.pool('10.7.0.0/24');
    const poolValue = (await kv.get(poolKey))!.value;
    let fired = false;
    kv.beforeTxn = () => {
      if (fired) return;
      fired = true; // another host claims a block of the pool just before the removal commits;
      // a claim rewrites the pool's key (Allocator.claim), which is what removal compares
      void kv.txn(
        [],
        [
          { put: keys.block(block.cidr), value: JSON.stringify(block) },
          { put: keys.affinity('h2', block.cidr), value: '{}' },
          { put: poolKey, value: poolValue },
        ],
      );
    };
    await assert.rejects(pools.remove('10.7.0.0/24'), ConflictError);
    assert.ok(await kv.get(keys.pool('10.7.0.0/24')), 'the pool stays while it has an address in use');
  });
});

describe('Pools.ensureDefault', () => {
  test('creates the default pool when none of that family exists', async () => {
    const { pools } = setup();
    assert.equal((await pools.ensureDefault(4, '192.168.0.0/16'))?.cidr, '192.168.0.0/16');
    assert.equal((await pools.ensureDefault(6, 'fd80:24e2:f998:72d6::/64'))?.cidr, 'fd80:24e2:f998:72d6::/64');
  });

  test('does nothing when a pool of that family exists, even a different one', async () => {
    const { pools } = setup();
    await pools.add('10.0.0.0/16');
    assert.equal(await pools.ensureDefault(4, '192.168.0.0/16'), undefined);
    assert.deepEqual(
      (await pools.list()).map((p) => p.cidr),
      ['10.0.0.0/16'],
    );
  });

  test('a pool of the other family does not prevent the default', async () => {
    const { pools } = setup();
    await pools.add('fd00::/64');
    assert.equal((await pools.ensureDefault(4, '192.168.0.0/16'))?.cidr, '192.168.0.0/16');
  });

  test('does nothing without a CIDR', async () => {
    const { pools } = setup();
    assert.equal(await pools.ensureDefault(6, undefined), undefined);
    assert.equal(await pools.ensureDefault(6, ''), undefined);
    assert.deepEqual(await pools.list(), []);
  });

  test('refuses a CIDR of the wrong family', async () => {
    const { pools } = setup();
    await rejects(pools.ensureDefault(4, 'fd00::/64'), BadRequestError, /not an IPv4 network/);
  });
});
