/** Allocator release, endpoint attachment and aux marking (ipam/allocator.ts). */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Allocator } from '../../ipam/allocator';
import { newBlock } from '../../ipam/block';
import { Pools } from '../../ipam/pools';
import { keys } from '../../lib/datastore/keys';
import { MemoryKV } from '../../lib/datastore/memory';
import type { BlockRecord, EndpointRecord, Owner } from '../../lib/datastore/records';
import { BadRequestError, ConflictError } from '../../lib/errors';
import { type IP, enclosing, formatCidr, formatIP, parseCidr, parseIP } from '../../lib/ip';
import { silentLogger } from '../../lib/log';
import { codecs } from '../../lib/datastore/codec';
import { endpointOf } from '../harness/owners';

async function setup(poolCidrs = ['10.0.0.0/16']) {
  const kv = new MemoryKV();
  const pools = new Pools(kv, 0);
  for (const p of poolCidrs) await pools.add(p);
  return { kv, pools, a: new Allocator(kv, pools, 'host-a', silentLogger()) };
}

const blockOf = (ip: IP, prefix = 26) => formatCidr(enclosing(ip, prefix));

async function ownerIn(kv: MemoryKV, ip: IP, prefix = 26): Promise<Owner | undefined> {
  const e = await kv.get(keys.block(blockOf(ip, prefix)));
  if (!e) return undefined;
  const rec = codecs.block.decode(e);
  return rec.allocations[String(ip.value - parseCidr(rec.cidr).base)];
}

function endpoint(id: string, ips: IP[], network = 'net-1'): EndpointRecord {
  return {
    id,
    host: 'host-a',
    network,
    ifName: `cali${id.slice(0, 11)}`,
    mac: 'ee:ee:ee:ee:ee:ee',
    ipv4: ips.filter((i) => i.family === 4).map((i) => `${formatIP(i)}/32`),
    ipv6: ips.filter((i) => i.family === 6).map((i) => `${formatIP(i)}/128`),
    labels: {},
    createdAt: '2024-01-01T00:00:00.000Z',
  };
}

/** Allocates and attaches one address to endpoint `id`. */
async function attached(a: Allocator, id: string): Promise<IP> {
  const ip = await a.autoAssign(4, a.newOwner('p'));
  await a.attachEndpoint([ip], endpoint(id, [ip]), keys.endpoint('host-a', id));
  return ip;
}

describe('Allocator.release', () => {
  test('frees an address and is idempotent (not-allocated the second time)', async () => {
    const { kv, a } = await setup();
    const ip = await a.autoAssign(4, a.newOwner('p'));
    assert.equal(await a.release(ip), 'released');
    assert.equal(await ownerIn(kv, ip), undefined);
    assert.equal(await a.release(ip), 'not-allocated');
  });

  test('releases an address allocated through another Allocator instance (stale cache)', async () => {
    const { kv, pools, a } = await setup();
    await a.autoAssign(4, a.newOwner('p')); // a caches the block
    const other = new Allocator(kv, pools, 'host-a', silentLogger());
    const ip = await other.autoAssign(4, other.newOwner('p'));
    assert.equal(await a.release(ip), 'released');
    assert.equal(await ownerIn(kv, ip), undefined);
  });

  test('reports not-allocated for an address in a pool without a block, or outside every pool', async () => {
    const { a } = await setup();
    assert.equal(await a.release(parseIP('10.0.9.9')), 'not-allocated');
    assert.equal(await a.release(parseIP('172.16.0.1')), 'not-allocated');
  });

  test('keeps the block of this host after its last address is released', async () => {
    const { kv, a } = await setup();
    const ip = await a.autoAssign(4, a.newOwner('p'));
    await a.release(ip);
    assert.ok(await kv.get(keys.block(blockOf(ip))));
  });

  test('deletes a block with no affinity once its last address is released', async () => {
    const { kv, a } = await setup();
    const net = parseCidr('10.0.5.0/26');
    const rec: BlockRecord = { ...newBlock(net, null), allocations: { 3: a.newOwner('p') }, unallocated: [...Array(64).keys()].filter((o) => o !== 3) };
    await kv.put(keys.block('10.0.5.0/26'), JSON.stringify(rec));
    assert.equal(await a.release(parseIP('10.0.5.3')), 'released');
    assert.equal(await kv.get(keys.block('10.0.5.0/26')), undefined);
  });

  test('releases an address whose pool no longer exists', async () => {
    const { kv, a } = await setup();
    const net = parseCidr('172.16.0.0/26');
    const rec: BlockRecord = {
      ...newBlock(net, 'host-a'),
      allocations: { 1: a.newOwner('p') },
      unallocated: [0, ...Array.from({ length: 62 }, (_, i) => i + 2)],
    };
    await kv.put(keys.block('172.16.0.0/26'), JSON.stringify(rec));
    assert.equal(await a.release(parseIP('172.16.0.1')), 'released');
    assert.equal(await a.release(parseIP('172.16.0.1')), 'not-allocated');
  });

  test('refuses (in-use) while the owning endpoint record exists', async () => {
    const { kv, a } = await setup();
    const ip = await attached(a, 'ep-1');
    assert.ok(await kv.get(keys.endpoint('host-a', 'ep-1')));
    assert.equal(await a.release(ip), 'in-use');
    assert.equal(endpointOf(await ownerIn(kv, ip)), 'ep-1');
  });

  test('releases an endpoint address once the endpoint record is gone', async () => {
    const { kv, a } = await setup();
    const ip = await attached(a, 'ep-1');
    await kv.del(keys.endpoint('host-a', 'ep-1'));
    assert.equal(await a.release(ip), 'released');
  });

  test('force releases an address even while its endpoint exists', async () => {
    const { kv, a } = await setup();
    const ip = await attached(a, 'ep-1');
    assert.equal(await a.release(ip, { force: true }), 'released');
    assert.equal(await ownerIn(kv, ip), undefined);
  });

  test('hands out a released address last', async () => {
    const { a } = await setup();
    const ips = [];
    for (let i = 0; i < 3; i++) ips.push(await a.autoAssign(4, a.newOwner('p')));
    await a.release(ips[0]);
    const next = await a.autoAssign(4, a.newOwner('p'));
    assert.notEqual(formatIP(next), formatIP(ips[0]));
    const later = [];
    for (let i = 0; i < 60; i++) later.push(formatIP(await a.autoAssign(4, a.newOwner('p'))));
    assert.ok(!later.includes(formatIP(ips[0])), 'not reused while other addresses of the block are free');
    const last = await a.autoAssign(4, a.newOwner('p'));
    assert.equal(formatIP(last), formatIP(ips[0]), 'reused only once the rest of the block is taken');
  });
});

describe('Allocator.attachEndpoint', () => {
  test('writes the endpoint record and marks the owner in one transaction', async () => {
    const { kv, a } = await setup();
    const ip = await a.autoAssign(4, a.newOwner('p'));
    const ep = endpoint('ep-1', [ip]);
    await a.attachEndpoint([ip], ep, keys.endpoint('host-a', 'ep-1'));
    const epEntry = (await kv.get(keys.endpoint('host-a', 'ep-1')))!;
    assert.deepEqual(JSON.parse(epEntry.value), ep);
    const blockEntry = (await kv.get(keys.block(blockOf(ip))))!;
    assert.equal(epEntry.mod, blockEntry.mod, 'both keys written by the same revision');
    const owner = (await ownerIn(kv, ip))!;
    assert.equal(owner.kind, 'endpoint');
    assert.equal(owner.endpoint, 'ep-1');
    assert.equal(owner.network, 'net-1');
    assert.equal(owner.host, 'host-a');
  });

  test('attaches IPv4 and IPv6 addresses of one endpoint together', async () => {
    const { kv, a } = await setup(['10.0.0.0/16', 'fd00::/64']);
    const v4 = await a.autoAssign(4, a.newOwner('p4'));
    const v6 = await a.autoAssign(6, a.newOwner('p6'));
    await a.attachEndpoint([v4, v6], endpoint('ep-2', [v4, v6]), keys.endpoint('host-a', 'ep-2'));
    assert.equal(endpointOf(await ownerIn(kv, v4)), 'ep-2');
    assert.equal(endpointOf(await ownerIn(kv, v6, 122)), 'ep-2');
  });

  test('is idempotent for the same endpoint', async () => {
    const { kv, pools, a } = await setup();
    const ip = await attached(a, 'ep-1');
    await a.attachEndpoint([ip], endpoint('ep-1', [ip]), keys.endpoint('host-a', 'ep-1'));
    await new Allocator(kv, pools, 'host-a', silentLogger()).attachEndpoint([ip], endpoint('ep-1', [ip]), keys.endpoint('host-a', 'ep-1'));
    assert.equal(endpointOf(await ownerIn(kv, ip)), 'ep-1');
  });

  test('throws ConflictError when another endpoint owns the address', async () => {
    const { kv, a } = await setup();
    const ip = await attached(a, 'ep-1');
    await assert.rejects(
      a.attachEndpoint([ip], endpoint('ep-2', [ip]), keys.endpoint('host-a', 'ep-2')),
      (e: unknown) => e instanceof ConflictError && /already in use by endpoint ep-1/.test(e.message),
    );
    assert.equal(await kv.get(keys.endpoint('host-a', 'ep-2')), undefined, 'nothing written');
    assert.equal(endpointOf(await ownerIn(kv, ip)), 'ep-1');
  });

  test('throws BadRequestError for an address that was never allocated', async () => {
    const { kv, a } = await setup();
    const x = await a.autoAssign(4, a.newOwner('p'));
    const never = { family: 4 as const, value: x.value + 9n };
    await assert.rejects(
      a.attachEndpoint([never], endpoint('ep-1', [never]), keys.endpoint('host-a', 'ep-1')),
      (e: unknown) => e instanceof BadRequestError && /was not allocated by calico-ipam/.test(e.message),
    );
    await assert.rejects(a.attachEndpoint([parseIP('10.0.77.1')], endpoint('ep-1', []), keys.endpoint('host-a', 'ep-1')), BadRequestError);
    await assert.rejects(
      a.attachEndpoint([parseIP('172.16.0.1')], endpoint('ep-1', []), keys.endpoint('host-a', 'ep-1')),
      (e: unknown) => e instanceof BadRequestError && /not inside any Calico IP pool/.test(e.message),
    );
    assert.equal(await kv.get(keys.endpoint('host-a', 'ep-1')), undefined);
  });

  test('writes nothing when one of several addresses is not allocated', async () => {
    const { kv, a } = await setup();
    const ok = await a.autoAssign(4, a.newOwner('p'));
    const never = { family: 4 as const, value: ok.value + 9n };
    await assert.rejects(a.attachEndpoint([ok, never], endpoint('ep-1', [ok, never]), keys.endpoint('host-a', 'ep-1')), BadRequestError);
    assert.equal((await ownerIn(kv, ok))?.kind, 'pending');
    assert.equal(await kv.get(keys.endpoint('host-a', 'ep-1')), undefined);
  });

  test('sees an allocation made through another Allocator instance (stale cache)', async () => {
    const { kv, pools, a } = await setup();
    await a.autoAssign(4, a.newOwner('p')); // a caches the block
    const other = new Allocator(kv, pools, 'host-a', silentLogger());
    const ip = await other.autoAssign(4, other.newOwner('p'));
    await a.attachEndpoint([ip], endpoint('ep-9', [ip]), keys.endpoint('host-a', 'ep-9'));
    assert.equal(endpointOf(await ownerIn(kv, ip)), 'ep-9');
  });
});

describe('Allocator.markAux', () => {
  test('marks a pending address as an aux address of the network', async () => {
    const { kv, a } = await setup();
    const ip = await a.autoAssign(4, a.newOwner('p'));
    await a.markAux(ip, 'net-7');
    const o = (await ownerIn(kv, ip))!;
    assert.equal(o.kind, 'aux');
    assert.equal(o.network, 'net-7');
  });

  test('leaves endpoint addresses and unallocated addresses alone', async () => {
    const { kv, a } = await setup();
    const ip = await attached(a, 'ep-1');
    await a.markAux(ip, 'net-7');
    assert.equal((await ownerIn(kv, ip))?.kind, 'endpoint');
    const free = { family: 4 as const, value: ip.value + 20n };
    await a.markAux(free, 'net-7');
    assert.equal(await ownerIn(kv, free), undefined);
    await a.markAux(parseIP('172.16.0.1'), 'net-7'); // outside every pool: no-op
  });
});
