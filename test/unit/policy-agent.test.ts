/**
 * The policy agent between a store and a backend (MemoryKV and a recording backend; the backends
 * themselves are proven against the kernel in the integration suite): one full apply at start,
 * then deltas naming only what an event touched, a Join waiting for its own interface only,
 * unreadable records skipped, a re-list after compaction diffed rather than re-programmed, and a
 * failed apply followed by a full one.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ApplyStats, Delta, Desired, FirewallBackend } from '../../firewall/desired';
import { codecs } from '../../lib/datastore/codec';
import { keys } from '../../lib/datastore/keys';
import { MemoryKV } from '../../lib/datastore/memory';
import type { EndpointRecord, PolicyRecord } from '../../lib/datastore/records';
import { createLogger } from '../../lib/log';
import { PolicyAgent } from '../../policy/agent';

const HOST = 'h1';
const ep = (id: string, host = HOST, network = 'n1'): EndpointRecord => ({
  id,
  host,
  network,
  ifName: `cali${id}`,
  mac: '02:42:ac:1f:00:01',
  ipv4: [`10.65.0.${parseInt(id, 16) % 250}/32`],
  ipv6: [],
  labels: {},
  createdAt: '2024-01-01T00:00:00.000Z',
});
const pol = (name: string, selector: string): PolicyRecord => ({ name, order: 10, selector, types: ['ingress'], ingress: [{ action: 'allow' }], egress: [] });

class RecordingBackend implements FirewallBackend {
  readonly name = 'nftables' as const;
  calls: Array<{ full: boolean; delta?: Delta; endpoints: string[] }> = [];
  checks = 0;
  failNext = false;
  apply(desired: Desired, delta?: Delta): Promise<ApplyStats> {
    if (this.failNext) {
      this.failNext = false;
      return Promise.reject(new Error('kernel said no'));
    }
    this.calls.push({ full: !delta, delta: delta && structuredClone(delta), endpoints: [...desired.endpoints.keys()].sort() });
    return Promise.resolve({ objects: 1, full: !delta });
  }
  check(): Promise<boolean> {
    this.checks++;
    return Promise.resolve(false);
  }
  remove(): Promise<void> {
    return Promise.resolve();
  }
}

const putEp = (kv: MemoryKV, e: EndpointRecord) => kv.put(keys.endpoint(e.host, e.id), codecs.endpoint.encode(e));
const until = async (cond: () => boolean, what: string) => {
  for (let i = 0; i < 300 && !cond(); i++) await new Promise((r) => setTimeout(r, 5));
  assert.ok(cond(), what);
};

async function started(kv: MemoryKV, opts: { checkMs?: number } = {}) {
  const backend = new RecordingBackend();
  const agent = new PolicyAgent({ kv, host: HOST, log: createLogger('error') }, { endpointToHost: 'drop', backend, debounceMs: 1, ...opts });
  await agent.start();
  return { agent, backend };
}

describe('PolicyAgent', () => {
  test('programs everything once at start, then hands the backend only what an event touched', async () => {
    const kv = new MemoryKV();
    await putEp(kv, ep('a1'));
    const { agent, backend } = await started(kv);
    assert.equal(backend.calls.length, 1);
    assert.deepEqual(backend.calls[0], { full: true, delta: undefined, endpoints: ['calia1'] });
    await putEp(kv, ep('b2'));
    await until(() => backend.calls.length === 2, 'a second apply');
    const d = backend.calls[1].delta!;
    assert.deepEqual(
      d.endpoints.upsert.map((e) => e.ifName),
      ['calib2'],
    );
    assert.deepEqual(d.policies, { upsert: [], remove: [] }, 'no policy touched');
    // A remote endpoint is only set members: nothing at all while no local rule selects it
    // (another network's endpoint is in no set of this host's profile).
    await putEp(kv, ep('c3', 'h2', 'n9'));
    await new Promise((r) => setTimeout(r, 30));
    assert.equal(backend.calls.length, 2, 'an unselected remote endpoint changes nothing here');
    await putEp(kv, ep('c4', 'h2'));
    await until(() => backend.calls.length === 3, 'a remote endpoint of this network');
    const m = backend.calls[2].delta!;
    assert.deepEqual([m.endpoints.upsert.length, m.policies.upsert.length, m.sets.upsert.length], [0, 0, 0]);
    assert.deepEqual(
      m.sets.members.map((x) => x.add),
      [['10.65.0.196']],
      'only a set member added',
    );
    await agent.stop();
  });

  test('follows network sets: one put or delete changes only the members of the selector sets matching its labels', async () => {
    const kv = new MemoryKV();
    await putEp(kv, ep('a1'));
    const p: PolicyRecord = { ...pol('p', 'all()'), ingress: [{ action: 'allow', source: { selector: "role == 'partner'" } }] };
    await kv.put(keys.policy('p'), codecs.policy.encode(p));
    const { agent, backend } = await started(kv);
    await kv.put(keys.networkSet('partners'), codecs.networkSet.encode({ name: 'partners', labels: { role: 'partner' }, nets: ['192.0.2.0/24'] }));
    await until(() => backend.calls.length === 2, 'an apply after the put');
    const d = backend.calls[1].delta!;
    assert.deepEqual(
      d.sets.members.map((m) => [m.add, m.del]),
      [[['192.0.2.0/24'], []]],
    );
    assert.equal(d.sets.upsert.length + d.policies.upsert.length + d.endpoints.upsert.length, 0);
    await kv.del(keys.networkSet('partners'));
    await until(() => backend.calls.length === 3, 'an apply after the delete');
    assert.deepEqual(
      backend.calls[2].delta!.sets.members.map((m) => [m.add, m.del]),
      [[[], ['192.0.2.0/24']]],
    );
    await agent.stop();
  });

  test("a Join waits for its own interface's rules and is told at once when they are in", async () => {
    const kv = new MemoryKV();
    const { agent } = await started(kv);
    const waiting = agent.covers('calid4', 2000);
    await putEp(kv, ep('d4'));
    assert.equal(await waiting, true);
    assert.equal(await agent.covers('calinone', 20), false, 'an interface with no record is never covered');
    await agent.stop();
  });

  test('skips an unreadable record and programs every other one', async () => {
    const kv = new MemoryKV();
    await kv.put(keys.endpoint(HOST, 'bad'), '{"not": "an endpoint"');
    await putEp(kv, ep('e5'));
    const { agent, backend } = await started(kv);
    assert.deepEqual(backend.calls[0].endpoints, ['calie5']);
    await kv.put(keys.policy('broken'), JSON.stringify({ name: 'broken', selector: "a == 'b" }));
    await kv.put(keys.policy('good'), codecs.policy.encode(pol('good', 'all()')));
    await until(() => backend.calls.some((c) => c.delta?.policies.upsert.some((p) => p.name === 'good')), 'the good policy applied');
    await agent.stop();
  });

  test('after the watch lost its history it lists again and applies only the difference, not everything', async () => {
    const kv = new MemoryKV();
    await putEp(kv, ep('f6'));
    const { agent, backend } = await started(kv);
    kv.dropWatches();
    await putEp(kv, ep('a7'));
    kv.compact();
    await until(() => backend.calls.length === 2, 'applied after the re-list');
    const c = backend.calls[1];
    assert.equal(c.full, false, 'a diff, not a full apply');
    assert.deepEqual(
      c.delta!.endpoints.upsert.map((e) => e.ifName),
      ['calia7'],
    );
    assert.deepEqual(c.endpoints, ['calia7', 'calif6']);
    await agent.stop();
  });

  test('after a failed apply the next one programs everything', async () => {
    const kv = new MemoryKV();
    const { agent, backend } = await started(kv);
    backend.failNext = true;
    await putEp(kv, ep('b8'));
    await until(() => backend.calls.length === 2, 'retried');
    assert.equal(backend.calls[1].full, true);
    assert.deepEqual(backend.calls[1].endpoints, ['calib8']);
    await agent.stop();
  });

  test('checks the kernel periodically', async () => {
    const kv = new MemoryKV();
    const { agent, backend } = await started(kv, { checkMs: 20 });
    await until(() => backend.checks >= 2, 'checked twice');
    await agent.stop();
  });
});
