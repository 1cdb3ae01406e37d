/** Cross-checks of allocations against endpoints and networks (ipam/check.ts). */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { newBlock } from '../../ipam/block';
import { checkIpam } from '../../ipam/check';
import type { BlockRecord, EndpointRecord, NetworkRecord, Owner } from '../../lib/datastore/records';
import { parseCidr } from '../../lib/ip';
import { type OwnerFields, makeOwner } from '../harness/owners';

const NOW = new Date('2024-06-01T12:00:00.000Z');
const GRACE = 60_000;
const EP = 'e'.repeat(64);
const NET = 'n'.repeat(64);

function owner(extra: OwnerFields & { kind?: Owner['kind'] }): Owner {
  return makeOwner(extra.kind ?? 'pending', { since: NOW.toISOString(), ...extra });
}

/** A /26 block at 10.0.0.0 with the given ordinal → owner allocations. */
function block(allocs: Record<number, Owner>, cidr = '10.0.0.0/26'): BlockRecord {
  const b = newBlock(parseCidr(cidr), 'h1');
  return { ...b, allocations: Object.fromEntries(Object.entries(allocs)), unallocated: b.unallocated.filter((o) => !(o in allocs)) };
}

function endpoint(id: string, ipv4: string[], ipv6: string[] = [], host = 'h1'): EndpointRecord {
  return { id, host, network: NET, ifName: `cali${id.slice(0, 11)}`, mac: 'ee:ee:ee:ee:ee:ee', ipv4, ipv6, labels: {}, createdAt: NOW.toISOString() };
}

function network(id: string, host = 'h1'): NetworkRecord {
  return { id, host, ipv4Pools: ['0.0.0.0/0'], ipv6Pools: [], ipv6: false, options: {}, createdAt: NOW.toISOString() };
}

const epOwner = (endpoint: string, host = 'h1') => owner({ kind: 'endpoint', endpoint, network: NET, host });
const ago = (ms: number) => new Date(NOW.getTime() - ms).toISOString();

describe('checkIpam', () => {
  test('reports ok for a consistent set of blocks, endpoints and networks', () => {
    const r = checkIpam(
      [block({ 1: epOwner(EP), 2: owner({ kind: 'aux', network: NET }), 3: owner({ since: ago(1000) }) }), block({ 5: epOwner('ep2', 'h2') }, 'fd00::/122')],
      [endpoint(EP, ['10.0.0.1/32']), endpoint('ep2', [], ['fd00::5/128'], 'h2')],
      [network(NET)],
      NOW,
      GRACE,
    );
    assert.deepEqual(r, { ok: true, allocations: 4, endpoints: 2, problems: [] });
  });

  test('reports ok for an empty datastore', () => {
    assert.deepEqual(checkIpam([], [], [], NOW, GRACE), { ok: true, allocations: 0, endpoints: 0, problems: [] });
  });

  test('reports an allocation held by a live endpoint whose record does not list it', () => {
    const r = checkIpam([block({ 7: epOwner(EP), 8: epOwner(EP) })], [endpoint(EP, ['10.0.0.8/32'])], [], NOW, GRACE);
    assert.equal(r.ok, false);
    assert.deepEqual(
      r.problems.map((p) => [p.kind, p.ip, p.endpoint]),
      [['allocation-not-listed-by-endpoint', '10.0.0.7', EP]],
    );
    assert.match(r.problems[0].detail, /whose record does not list it/);
  });

  test('reports an allocation whose endpoint no longer exists', () => {
    const r = checkIpam([block({ 7: epOwner(EP) })], [], [], NOW, GRACE);
    assert.equal(r.ok, false);
    assert.equal(r.problems.length, 1);
    const p = r.problems[0];
    assert.equal(p.kind, 'allocation-without-endpoint');
    assert.equal(p.ip, '10.0.0.7');
    assert.equal(p.endpoint, EP);
    assert.equal(p.host, 'h1');
    assert.match(p.detail, /10\.0\.0\.7 is held by endpoint e{12} on h1, which no longer exists/);
  });

  test('looks up the owning endpoint on the owner host', () => {
    const r = checkIpam([block({ 7: epOwner(EP, 'h1') })], [endpoint(EP, [], [], 'h2')], [], NOW, GRACE);
    assert.deepEqual(
      r.problems.map((p) => p.kind),
      ['allocation-without-endpoint'],
    );
  });

  test('reports a pending allocation as never attached only after the grace period', () => {
    const fresh = checkIpam([block({ 4: owner({ since: ago(GRACE - 1) }) })], [], [], NOW, GRACE);
    assert.equal(fresh.ok, true);
    const exact = checkIpam([block({ 4: owner({ since: ago(GRACE) }) })], [], [], NOW, GRACE);
    assert.equal(exact.ok, true, 'exactly at the grace limit is still fine');
    const old = checkIpam([block({ 4: owner({ since: ago(GRACE + 1) }) })], [], [], NOW, GRACE);
    assert.equal(old.ok, false);
    assert.equal(old.problems[0].kind, 'allocation-never-attached');
    assert.equal(old.problems[0].ip, '10.0.0.4');
    assert.equal(old.problems[0].host, 'h1');
    assert.match(old.problems[0].detail, /never attached to an endpoint/);
  });

  test('reports an aux address whose network no longer exists', () => {
    const r = checkIpam([block({ 9: owner({ kind: 'aux', network: NET }) })], [], [network('other')], NOW, GRACE);
    assert.equal(r.problems.length, 1);
    assert.equal(r.problems[0].kind, 'aux-without-network');
    assert.equal(r.problems[0].ip, '10.0.0.9');
    assert.match(r.problems[0].detail, /aux address of network n{12} on h1, which no longer exists/);
  });

  test('an aux address of a network on another host is not covered by a same-ID network here', () => {
    const r = checkIpam([block({ 9: owner({ kind: 'aux', network: NET, host: 'h2' }) })], [], [network(NET, 'h1')], NOW, GRACE);
    assert.deepEqual(
      r.problems.map((p) => p.kind),
      ['aux-without-network'],
    );
  });

  test('reports an endpoint whose address is not allocated', () => {
    const r = checkIpam([], [endpoint(EP, ['10.0.0.3/32'])], [], NOW, GRACE);
    assert.equal(r.problems.length, 1);
    const p = r.problems[0];
    assert.equal(p.kind, 'endpoint-without-allocation');
    assert.equal(p.ip, '10.0.0.3');
    assert.equal(p.endpoint, EP);
    assert.match(p.detail, /uses 10\.0\.0\.3, which is not allocated/);
  });

  test('reports an endpoint whose address is allocated to someone else', () => {
    const r = checkIpam([block({ 3: epOwner('someone-else') })], [endpoint(EP, ['10.0.0.3/32']), endpoint('someone-else', ['10.0.0.3/32'])], [], NOW, GRACE);
    assert.equal(r.problems.length, 1);
    assert.equal(r.problems[0].kind, 'endpoint-without-allocation');
    assert.equal(r.problems[0].endpoint, EP);
    assert.match(r.problems[0].detail, /allocated to someone else/);
  });

  test('an endpoint whose address is still only pending is reported', () => {
    const r = checkIpam([block({ 3: owner({}) })], [endpoint(EP, ['10.0.0.3/32'])], [], NOW, GRACE);
    assert.deepEqual(
      r.problems.map((p) => p.kind),
      ['endpoint-without-allocation'],
    );
  });

  test('matches IPv6 endpoint addresses in canonical form', () => {
    const r = checkIpam([block({ 5: epOwner(EP) }, 'fd00::/122')], [endpoint(EP, [], ['FD00:0:0::5/128'])], [], NOW, GRACE);
    assert.equal(r.ok, true);
  });

  test('counts allocations and endpoints and lists every problem', () => {
    const r = checkIpam(
      [block({ 1: epOwner('gone'), 2: owner({ kind: 'aux', network: 'gone-net' }), 3: owner({ since: ago(GRACE * 10) }), 4: epOwner(EP) })],
      [endpoint(EP, ['10.0.0.4/32', '10.0.0.50/32'])],
      [],
      NOW,
      GRACE,
    );
    assert.equal(r.ok, false);
    assert.equal(r.allocations, 4);
    assert.equal(r.endpoints, 1);
    assert.deepEqual(
      r.problems.map((p) => `${p.kind} ${p.ip}`),
      ['allocation-without-endpoint 10.0.0.1', 'aux-without-network 10.0.0.2', 'allocation-never-attached 10.0.0.3', 'endpoint-without-allocation 10.0.0.50'],
    );
  });
});
