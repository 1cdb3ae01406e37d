/** The published-ports agent (ports/agent.ts) over an in-memory etcd and a fake backend: what it applies, when Program may answer, repairs. */
import { afterEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryKV } from '../../lib/datastore/memory';
import { codecs } from '../../lib/datastore/codec';
import { keys } from '../../lib/datastore/keys';
import type { EndpointRecord } from '../../lib/datastore/records';
import { silentLogger } from '../../lib/log';
import { PortsAgent } from '../../ports/agent';
import type { PortsBackend } from '../../ports/backends';
import type { PortsPlan } from '../../ports/rules';

class FakeBackend implements PortsBackend {
  readonly name = 'nftables' as const;
  plans: PortsPlan[] = [];
  removed = 0;
  kernelIntact = true;
  async apply(plan: PortsPlan) {
    this.plans.push(plan);
    this.kernelIntact = true;
  }
  async intact() {
    return this.kernelIntact;
  }
  async remove() {
    this.removed++;
  }
}

const ep = (id: string, published?: number): EndpointRecord => ({
  id,
  host: 'h1',
  network: 'n',
  ifName: `cali${id.slice(0, 11)}`,
  mac: '02:00:00:00:00:01',
  ipv4: ['10.65.0.1/32'],
  ipv6: [],
  labels: {},
  createdAt: '2026-01-01T00:00:00Z',
  ports: [{ protocol: 'tcp', port: 80, hostPort: 8080, hostPortEnd: 8080, ...(published ? { published } : {}) }],
});

let agent: PortsAgent | undefined;
afterEach(async () => {
  await agent?.stop();
});

async function started() {
  const kv = new MemoryKV();
  const mine = new FakeBackend();
  const other = new FakeBackend();
  agent = new PortsAgent({ kv, log: silentLogger(), host: 'h1' }, mine, other, { debounceMs: 5, resyncMs: 50 });
  await agent.start();
  return { kv, mine, other, agent };
}
const put = (kv: MemoryKV, rec: EndpointRecord) => kv.put(keys.endpoint(rec.host, rec.id), codecs.endpoint.encode(rec));

test("the other backend's rules go at start, and only this host's published bindings are applied", async () => {
  const { kv, mine, other, agent } = await started();
  assert.equal(other.removed, 1);
  assert.equal(mine.plans.at(-1)!.rules[4].length, 0);
  await put(kv, ep('a'.repeat(64)));
  await put(kv, { ...ep('b'.repeat(64), 8080), host: 'h2' });
  const pub = ep('c'.repeat(64), 8080);
  await put(kv, pub);
  assert.equal(await agent.covers(pub, 2000), true);
  assert.deepEqual(
    mine.plans.at(-1)!.rules[4].map((r) => r.endpoint),
    [pub.id],
  );
});

test('covers waits for the exact rules recorded: a changed host port is not covered by the old rule', async () => {
  const { kv, agent } = await started();
  const first = ep('d'.repeat(64), 8080);
  await put(kv, first);
  assert.equal(await agent.covers(first, 2000), true);
  const moved = { ...first, ports: [{ ...first.ports![0], hostPort: 9090, hostPortEnd: 9090, published: 9090 }] };
  const waiting = agent.covers(moved, 2000);
  await put(kv, moved);
  assert.equal(await waiting, true);
  assert.equal(await agent.covers(first, 50), false);
});

test('the periodic check rewrites rules the kernel lost, and leaves intact ones alone', async () => {
  const { kv, mine } = await started();
  await put(kv, ep('e'.repeat(64), 8080));
  await new Promise((r) => setTimeout(r, 120));
  const n = mine.plans.length;
  await new Promise((r) => setTimeout(r, 120));
  assert.equal(mine.plans.length, n, 'no reapply while intact');
  mine.kernelIntact = false;
  await new Promise((r) => setTimeout(r, 150));
  assert.ok(mine.plans.length > n, 'rewritten');
});
