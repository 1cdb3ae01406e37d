/** Host-affine allocation over the in-memory KV (ipam/allocator.ts): auto-assign and assign. */
import { describe, test } from 'node:test';
import { makeOwner } from '../harness/owners';
import assert from 'node:assert/strict';
import { Allocator } from '../../ipam/allocator';
import { Pools } from '../../ipam/pools';
import { keys } from '../../lib/datastore/keys';
import { MemoryKV } from '../../lib/datastore/memory';
import type { BlockRecord } from '../../lib/datastore/records';
import { BadRequestError, ConflictError } from '../../lib/errors';
import { type IP, containsIP, enclosing, formatCidr, formatIP, parseCidr, parseIP } from '../../lib/ip';
import { silentLogger } from '../../lib/log';
import { codecs } from '../../lib/datastore/codec';

async function setup(poolCidrs: Array<string | [string, number]> = ['10.0.0.0/16']) {
  const kv = new MemoryKV();
  const pools = new Pools(kv, 0);
  for (const p of poolCidrs) {
    if (typeof p === 'string') await pools.add(p);
    else await pools.add(p[0], { blockSize: p[1] });
  }
  const alloc = (host: string) => new Allocator(kv, pools, host, silentLogger());
  return { kv, pools, alloc, a: alloc('host-a') };
}

async function block(kv: MemoryKV, cidr: string): Promise<BlockRecord | undefined> {
  const e = await kv.get(keys.block(cidr));
  return e ? codecs.block.decode(e) : undefined;
}

const blockOf = (ip: IP, prefix = 26) => formatCidr(enclosing(ip, prefix));

async function auto(al: Allocator, n: number, within?: ReturnType<typeof parseCidr>[]): Promise<IP[]> {
  const out: IP[] = [];
  for (let i = 0; i < n; i++) out.push(await al.autoAssign(4, al.newOwner('CalicoPoolIPv4'), within));
  return out;
}

/** Asserts `p` rejects with an instance of `cls` whose message matches every pattern. */
async function rejects(p: Promise<unknown>, cls: new (...a: never[]) => Error, ...patterns: RegExp[]) {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof cls, `expected ${cls.name}, got ${String(err)}`);
    for (const re of patterns) assert.match(err.message, re);
    return true;
  });
}

describe('Allocator.autoAssign', () => {
  test('claims a /26 block affine to the host, storing block and affinity', async () => {
    const { kv, a } = await setup();
    const ip = await a.autoAssign(4, a.newOwner('CalicoPoolIPv4'));
    const cidr = blockOf(ip);
    assert.ok(containsIP(parseCidr('10.0.0.0/16'), ip));
    assert.ok(await kv.get(`ipam/blocks/${cidr.replace('/', '-')}`), 'block key exists');
    assert.ok(await kv.get(`ipam/affinity/host-a/${cidr.replace('/', '-')}`), 'affinity key exists');
    const rec = (await block(kv, cidr))!;
    assert.equal(rec.affinity, 'host-a');
    assert.equal(Object.keys(rec.allocations).length, 1);
    const owner = Object.values(rec.allocations)[0];
    assert.equal(owner.host, 'host-a');
    assert.equal(owner.kind, 'pending');
    assert.equal(owner.pool, 'CalicoPoolIPv4');
    assert.deepEqual(await a.affineBlocks(4), [cidr]);
  });

  test('keeps using the host block for later addresses', async () => {
    const { kv, a } = await setup();
    const ips = await auto(a, 10);
    assert.equal(new Set(ips.map((ip) => blockOf(ip))).size, 1);
    assert.equal(new Set(ips.map(formatIP)).size, 10);
    assert.equal((await kv.list(keys.blocks())).length, 1);
  });

  test('claims a second block when the first is full (64 addresses)', async () => {
    const { kv, a } = await setup();
    const ips = await auto(a, 65);
    const first = blockOf(ips[0]);
    assert.ok(ips.slice(0, 64).every((ip) => blockOf(ip) === first));
    assert.notEqual(blockOf(ips[64]), first);
    assert.equal(new Set(ips.map(formatIP)).size, 65);
    assert.equal((await kv.list(keys.affinities('host-a'))).length, 2);
    assert.equal((await a.affineBlocks(4)).length, 2);
  });

  test('gives two hosts different blocks', async () => {
    const { kv, alloc } = await setup();
    const [x] = await auto(alloc('host-a'), 1);
    const [y] = await auto(alloc('host-b'), 1);
    assert.notEqual(blockOf(x), blockOf(y));
    assert.equal((await block(kv, blockOf(y)))!.affinity, 'host-b');
    assert.ok(await kv.get(keys.affinity('host-b', blockOf(y))));
  });

  test('takes addresses inside the within subnet only', async () => {
    const { a } = await setup();
    const within = [parseCidr('10.0.200.0/24')];
    const ips = await auto(a, 5, within);
    assert.ok(ips.every((ip) => containsIP(within[0], ip)));
  });

  test('keeps an ip-range constraint even when the host block has room elsewhere', async () => {
    const { kv, a } = await setup();
    const range = parseCidr('10.0.200.16/28');
    const ips = await auto(a, 16, [range]);
    assert.ok(ips.every((ip) => containsIP(range, ip)));
    assert.equal(new Set(ips.map(formatIP)).size, 16);
    await rejects(a.autoAssign(4, a.newOwner('p'), [range]), ConflictError, /no free IPv4 address in 10\.0\.200\.16\/28/);
    assert.equal((await kv.list(keys.blocks())).length, 1, 'no block claimed outside the range');
  });

  test('allocates IPv6 from /122 blocks', async () => {
    const { kv, a } = await setup(['fd00::/64']);
    const ip = await a.autoAssign(6, a.newOwner('CalicoPoolIPv6'));
    assert.equal(ip.family, 6);
    assert.ok(await kv.get(keys.block(blockOf(ip, 122))));
    assert.deepEqual(await a.affineBlocks(6), [blockOf(ip, 122)]);
    assert.deepEqual(await a.affineBlocks(4), []);
  });

  test('borrows from another host block when the pool has no unclaimed block left', async () => {
    const { kv, alloc } = await setup([['10.9.0.0/26', 28]]);
    const a = alloc('host-a');
    const b = alloc('host-b');
    const mine = await auto(a, 64); // host-a claims all four /28 blocks and fills them
    assert.equal((await kv.list(keys.affinities('host-a'))).length, 4);
    await rejects(b.autoAssign(4, b.newOwner('p')), ConflictError, /no free IPv4 address in 10\.9\.0\.0\/26/);
    assert.equal(await a.release(mine[37]), 'released');
    const borrowed = await b.autoAssign(4, b.newOwner('p'));
    assert.equal(formatIP(borrowed), formatIP(mine[37]));
    const rec = (await block(kv, blockOf(borrowed, 28)))!;
    assert.equal(rec.affinity, 'host-a', 'the block stays affine to its host');
    assert.equal(Object.values(rec.allocations).find((o) => o.host === 'host-b')?.host, 'host-b');
    assert.deepEqual(await kv.list(keys.affinities('host-b')), []);
  });

  test('borrows a free address before failing when another host holds the only block', async () => {
    const { kv, alloc } = await setup(['10.9.0.0/28']);
    const [first] = await auto(alloc('host-a'), 1);
    const rest = await auto(alloc('host-b'), 15);
    const all = new Set([first, ...rest].map(formatIP));
    assert.equal(all.size, 16);
    assert.equal((await kv.list(keys.blocks())).length, 1);
    await rejects(alloc('host-b').autoAssign(4, alloc('host-b').newOwner('p')), ConflictError, /no free IPv4 address/);
  });

  test('refuses when no enabled pool exists, or none covers within', async () => {
    const { pools, a } = await setup(['10.0.0.0/16']);
    await rejects(a.autoAssign(6, a.newOwner('p')), BadRequestError, /no enabled IPv6 pool/);
    await rejects(a.autoAssign(4, a.newOwner('p'), [parseCidr('172.16.0.0/24')]), BadRequestError, /no enabled Calico IP pool covers 172\.16\.0\.0\/24/);
    await pools.setDisabled('10.0.0.0/16', true);
    await rejects(a.autoAssign(4, a.newOwner('p')), BadRequestError, /no enabled IPv4 pool/);
  });

  test('does not use a host block of a disabled pool', async () => {
    const { pools, a } = await setup(['10.0.0.0/16', '10.1.0.0/16']);
    const [x] = await auto(a, 1, [parseCidr('10.0.0.0/16')]);
    await pools.setDisabled('10.0.0.0/16', true);
    const [y] = await auto(a, 1);
    assert.ok(containsIP(parseCidr('10.1.0.0/16'), y), `${formatIP(y)} should come from the enabled pool`);
    assert.ok(containsIP(parseCidr('10.0.0.0/16'), x));
  });
});

describe('Allocator.assign', () => {
  test('takes a chosen address, claiming its block for this host when the block does not exist', async () => {
    const { kv, a } = await setup();
    const ip = parseIP('10.0.3.7');
    await a.assign(ip, makeOwner('aux', { host: 'host-a', pool: 'p', handle: 'h-aux', network: 'net1' }));
    const rec = (await block(kv, '10.0.3.0/26'))!;
    assert.equal(rec.affinity, 'host-a');
    assert.equal(rec.allocations['7'].kind, 'aux');
    assert.equal(rec.unallocated.includes(7), false);
    assert.ok(await kv.get(keys.affinity('host-a', '10.0.3.0/26')));
  });

  test('a second assign of the same address throws ConflictError naming the holder', async () => {
    const { alloc } = await setup();
    const a = alloc('host-a');
    const ip = parseIP('10.0.3.7');
    await a.assign(ip, a.newOwner('p'));
    const b = alloc('host-b');
    await rejects(b.assign(ip, b.newOwner('p')), ConflictError, /10\.0\.3\.7 is already in use by a request on host host-a/);
    await rejects(a.assign(ip, a.newOwner('p')), ConflictError, /already in use/);
  });

  test('the conflict message names the endpoint and network once attached', async () => {
    const { a } = await setup();
    const ip = parseIP('10.0.3.7');
    await a.assign(ip, makeOwner('endpoint', { host: 'host-a', pool: 'p', handle: 'h-endpoint', endpoint: 'e'.repeat(64), network: 'n'.repeat(64) }));
    await rejects(a.assign(ip, a.newOwner('p')), ConflictError, /in use by endpoint e{12} on network n{12} \(host host-a\)/);
  });

  test('assigns into an existing block of another host without changing its affinity', async () => {
    const { kv, alloc } = await setup();
    const [x] = await auto(alloc('host-a'), 1);
    const target = { family: 4 as const, value: x.value + 5n };
    await alloc('host-b').assign(target, alloc('host-b').newOwner('p'));
    const rec = (await block(kv, blockOf(x)))!;
    assert.equal(rec.affinity, 'host-a');
    assert.equal(Object.keys(rec.allocations).length, 2);
    assert.deepEqual(await kv.list(keys.affinities('host-b')), []);
  });

  test('an assigned address is never handed out by autoAssign', async () => {
    const { a } = await setup(['10.9.0.0/28']);
    await a.assign(parseIP('10.9.0.0'), a.newOwner('p'));
    await a.assign(parseIP('10.9.0.5'), a.newOwner('p'));
    const ips = (await auto(a, 14)).map(formatIP);
    assert.ok(!ips.includes('10.9.0.0') && !ips.includes('10.9.0.5'));
    assert.equal(new Set(ips).size, 14);
  });

  test('refuses an address outside every pool or inside a disabled pool', async () => {
    const { pools, a } = await setup();
    await rejects(a.assign(parseIP('172.16.0.1'), a.newOwner('p')), BadRequestError, /172\.16\.0\.1 is not inside any Calico IP pool/);
    await pools.setDisabled('10.0.0.0/16', true);
    await rejects(a.assign(parseIP('10.0.0.1'), a.newOwner('p')), BadRequestError, /which is disabled/, /calico pool enable 10\.0\.0\.0\/16/);
  });
});
