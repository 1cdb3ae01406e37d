/** The host's endpoint cache and its interface index (lib/datastore/records-store.ts). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { keys } from '../../lib/datastore/keys';
import type { EndpointRecord } from '../../lib/datastore/records';
import { MemoryKV } from '../../lib/datastore/memory';
import { Records } from '../../lib/datastore/records-store';

const ep = (id: string, host = 'h1'): EndpointRecord => ({
  id,
  host,
  network: 'n'.repeat(64),
  ifName: `cali${id.slice(0, 11)}`,
  mac: 'ee:ee:ee:ee:ee:ee',
  ipv4: ['10.0.0.1/32'],
  ipv6: [],
  labels: {},
  createdAt: '2024-01-01T00:00:00.000Z',
});

test("finds who uses an interface from etcd once, then from memory, and only this host's endpoints", async () => {
  const kv = new MemoryKV();
  const a = ep('a'.repeat(64));
  await kv.put(keys.endpoint('h1', a.id), JSON.stringify(a));
  await kv.put(keys.endpoint('h2', 'b'.repeat(64)), JSON.stringify(ep('a'.repeat(11) + 'b'.repeat(53), 'h2')));
  const r = new Records(kv, 'h1');
  assert.deepEqual(
    (await r.endpointsUsing(a.ifName)).map((e) => e.id),
    [a.id],
  );
  // Known without a read now: an endpoint added behind its back is not seen, one it writes is.
  await kv.put(keys.endpoint('h1', 'c'.repeat(64)), JSON.stringify(ep('c'.repeat(64))));
  assert.deepEqual(await r.endpointsUsing(`cali${'c'.repeat(11)}`), []);
  r.rememberEndpoint(ep('d'.repeat(64)));
  assert.deepEqual((await r.endpointsUsing(`cali${'d'.repeat(11)}`)).length, 1);
  await r.deleteEndpoint(a.id);
  assert.deepEqual(await r.endpointsUsing(a.ifName), []);
});

test('an endpoint deleted while a listing is in flight does not come back from that listing', async () => {
  const kv = new MemoryKV();
  const a = ep('a'.repeat(64));
  await kv.put(keys.endpoint('h1', a.id), JSON.stringify(a));
  const r = new Records(kv, 'h1');
  const list = kv.list.bind(kv);
  let release!: () => void;
  const gate = new Promise<void>((res) => (release = res));
  kv.list = async (...args: Parameters<MemoryKV['list']>) => {
    const out = await list(...args);
    await gate;
    return out;
  };
  const listing = r.listEndpoints('h1');
  await r.deleteEndpoint(a.id);
  release();
  assert.equal((await listing).length, 1);
  assert.deepEqual(await r.endpointsUsing(a.ifName), []);
  assert.equal(r.cachedEndpoint(a.id), undefined);
});
