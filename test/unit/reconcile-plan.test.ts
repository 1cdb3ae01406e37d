import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { type HostViews, planRepairs } from '../../agent/reconcile-plan';
import type { EndpointRecord, Owner } from '../../lib/datastore/records';
import { type OwnerFields, makeOwner } from '../harness/owners';

const NOW = Date.parse('2026-01-01T00:10:00Z');
const OLD = '2026-01-01T00:00:00Z';
const NEW = '2026-01-01T00:09:59Z';

function ep(id: string, ip: string, createdAt = OLD): EndpointRecord {
  return { id, host: 'h1', network: 'n1', ifName: `cali${id.slice(0, 11)}`, mac: '02:00:00:00:00:01', ipv4: [`${ip}/32`], ipv6: [], labels: {}, createdAt };
}
function owner(kind: Owner['kind'], extra: OwnerFields = {}): Owner {
  return makeOwner(kind, { pool: 'p', handle: `hd-${extra.endpoint ?? extra.network ?? kind}`, since: OLD, ...extra });
}
function views(v: Partial<HostViews>): HostViews {
  return { host: 'h1', now: NOW, endpoints: [], networks: [], allocations: [], links: [], routes: [], suspects: new Map(), graceMs: 60_000, ...v };
}

describe('planRepairs', () => {
  test('a consistent host needs nothing', () => {
    const e = ep('aaaaaaaaaaaaaaaa', '10.0.0.1');
    const plan = planRepairs(
      views({
        dockerEndpoints: new Set([e.id]),
        endpoints: [e],
        allocations: [{ ip: '10.0.0.1', owner: owner('endpoint', { endpoint: e.id }) }],
        links: [e.ifName],
        routes: [{ dst: '10.0.0.1/32', ifName: e.ifName }],
      }),
    );
    assert.deepEqual(plan.repairs, []);
    assert.equal(plan.suspects.size, 0);
  });

  test('recreates a missing host route for a live endpoint', () => {
    const e = ep('aaaaaaaaaaaaaaaa', '10.0.0.1');
    const plan = planRepairs(
      views({
        dockerEndpoints: new Set([e.id]),
        endpoints: [e],
        links: [e.ifName],
        allocations: [{ ip: '10.0.0.1', owner: owner('endpoint', { endpoint: e.id }) }],
      }),
    );
    assert.deepEqual(
      plan.repairs.map((r) => [r.kind, 'ip' in r ? r.ip : '']),
      [['add-route', '10.0.0.1']],
    );
  });

  test('removes a veth no endpoint owns', () => {
    const plan = planRepairs(views({ links: ['calideadbeef123'] }));
    assert.deepEqual(
      plan.repairs.map((r) => r.kind),
      ['remove-link'],
    );
  });

  test('removes an old endpoint no running container uses, with its addresses, but only when Docker answered', () => {
    const e = ep('bbbbbbbbbbbbbbbb', '10.0.0.2');
    const base = {
      endpoints: [e],
      links: [e.ifName],
      routes: [{ dst: '10.0.0.2/32', ifName: e.ifName }],
      allocations: [{ ip: '10.0.0.2', owner: owner('endpoint', { endpoint: e.id }) }],
    };
    const plan = planRepairs(views({ ...base, dockerEndpoints: new Set() }));
    assert.deepEqual(plan.repairs.map((r) => r.kind).sort(), ['release', 'remove-endpoint']); // removing the endpoint unwires its veth
    assert.deepEqual(planRepairs(views({ ...base, dockerEndpoints: undefined })).repairs, []);
  });

  test('never removes an endpoint younger than the grace period (a container still starting)', () => {
    const e = ep('cccccccccccccccc', '10.0.0.3', NEW);
    assert.deepEqual(planRepairs(views({ endpoints: [e], dockerEndpoints: new Set() })).repairs, []);
  });

  test('releases an orphaned allocation only when seen on two passes with the same handle', () => {
    const alloc = { ip: '10.0.0.4', owner: owner('endpoint', { endpoint: 'gone-endpoint-id' }) };
    const first = planRepairs(views({ allocations: [alloc] }));
    assert.deepEqual(first.repairs, []);
    assert.equal(first.suspects.get('10.0.0.4'), alloc.owner.handle);
    const second = planRepairs(views({ allocations: [alloc], suspects: first.suspects }));
    assert.deepEqual(
      second.repairs.map((r) => [r.kind, 'handle' in r ? r.handle : '']),
      [['release', alloc.owner.handle]],
    );
    const reused = planRepairs(views({ allocations: [{ ...alloc, owner: { ...alloc.owner, handle: 'new' } }], suspects: first.suspects }));
    assert.deepEqual(reused.repairs, [], 'an address re-allocated meanwhile is a new suspect, not released');
  });

  test('pending allocations count as leaked only after the grace period; aux ones when their network is gone', () => {
    const fresh = { ip: '10.0.0.5', owner: { ...owner('pending'), since: NEW } };
    const stale = { ip: '10.0.0.6', owner: owner('pending') };
    const aux = { ip: '10.0.0.7', owner: owner('aux', { network: 'n-gone' }) };
    const keep = { ip: '10.0.0.8', owner: owner('aux', { network: 'n1' }) };
    const other = { ip: '10.0.0.9', owner: { ...owner('pending'), host: 'h2' } };
    const plan = planRepairs(
      views({
        networks: [{ id: 'n1', host: 'h1', ipv4Pools: [], ipv6Pools: [], ipv6: false, options: {}, createdAt: OLD }],
        allocations: [fresh, stale, aux, keep, other],
      }),
    );
    assert.deepEqual([...plan.suspects.keys()].sort(), ['10.0.0.6', '10.0.0.7']);
  });
});
