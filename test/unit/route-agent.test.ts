/** The route agent against the in-memory store: what BIRD is given as etcd changes, across lost and compacted watches. */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { codecs } from '../../lib/datastore/codec';
import { keys } from '../../lib/datastore/keys';
import { MemoryKV } from '../../lib/datastore/memory';
import { silentLogger } from '../../lib/log';
import { type BirdControl, RouteAgent, needsPromptRender } from '../../routing/agent';
import type { WatchEvent } from '../../lib/datastore/kv';

class FakeBird implements BirdControl {
  configs: string[] = [];
  external = false;
  running = false;
  async install(text: string) {
    this.configs.push(text);
  }
  start() {
    this.running = true;
  }
  async configure() {}
  get last() {
    return this.configs[this.configs.length - 1] ?? '';
  }
}

const host = (name: string, ipv4: string) => codecs.host.encode({ name, ipv4, version: 't', startedAt: 't' });

async function eventually(cond: () => boolean, what: string) {
  for (let i = 0; i < 300 && !cond(); i++) await new Promise((r) => setTimeout(r, 5));
  assert.ok(cond(), what);
}

async function setup(debounceMs = 1) {
  const kv = new MemoryKV();
  await kv.put(keys.host('h1'), host('h1', '172.31.0.1'));
  const bird = new FakeBird();
  const agent = new RouteAgent({ kv, host: 'h1', log: silentLogger() }, bird, { debounceMs, resyncMs: 60_000 });
  await agent.start();
  return { kv, bird, agent };
}

describe('RouteAgent', () => {
  test('starts BIRD with a configuration rendered from etcd', async () => {
    const { bird, agent } = await setup();
    assert.ok(bird.running);
    assert.match(bird.last, /router id 172\.31\.0\.1;/);
    await agent.stop();
  });

  test('a host that joins becomes a peer, from the watch alone', async () => {
    const { kv, bird, agent } = await setup();
    await kv.put(keys.host('h2'), host('h2', '172.31.0.2'));
    await eventually(() => /neighbor 172\.31\.0\.2/.test(bird.last), 'peer added');
    await agent.stop();
  });

  test('changes made while the watch was lost still reach BIRD', async () => {
    const { kv, bird, agent } = await setup();
    kv.dropWatches();
    await kv.put(keys.host('h3'), host('h3', '172.31.0.3'));
    await eventually(() => /neighbor 172\.31\.0\.3/.test(bird.last), 'peer added after the watch resumed');
    await agent.stop();
  });

  test('after a compaction the agent lists again and drops what was deleted meanwhile', async () => {
    const { kv, bird, agent } = await setup();
    await kv.put(keys.host('h2'), host('h2', '172.31.0.2'));
    await eventually(() => /neighbor 172\.31\.0\.2/.test(bird.last), 'peer added');
    kv.dropWatches();
    await kv.del(keys.host('h2'));
    kv.compact();
    await eventually(() => !/neighbor 172\.31\.0\.2/.test(bird.last), 'peer gone after the re-list');
    await agent.stop();
  });

  test('an unreadable record is skipped and the rest still applies', async () => {
    const { kv, bird, agent } = await setup();
    await kv.put(keys.host('bad'), '{not json');
    await kv.put(keys.host('h2'), host('h2', '172.31.0.2'));
    await eventually(() => /neighbor 172\.31\.0\.2/.test(bird.last), 'good peer applied');
    await agent.stop();
  });

  test('a host that joins and a block this host claims are rendered at once, not after the debounce', async () => {
    const { kv, bird, agent } = await setup(60_000);
    await kv.put(keys.host('h2'), host('h2', '172.31.0.2'));
    await eventually(() => /neighbor 172\.31\.0\.2/.test(bird.last), 'new peer rendered within the 1.5 s the check waits, the debounce being 60 s');
    await kv.put(keys.affinity('h1', '10.65.3.0/26'), '{}');
    await eventually(() => /route 10\.65\.3\.0\/26 blackhole;/.test(bird.last), 'own block rendered at once');
    await agent.stop();
  });

  test('other changes wait for the debounce', async () => {
    const { kv, bird, agent } = await setup(60_000);
    const before = bird.configs.length;
    await kv.put(keys.bgpSettings(), codecs.bgpSettings.encode({ asn: 65000, nodeMesh: true }));
    // A host already known that registers again (a restart) is no reason to hurry either.
    await kv.put(keys.host('h1'), host('h1', '172.31.0.1'));
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(bird.configs.length, before, 'nothing rendered within the debounce');
    await agent.stop();
  });
});

describe('needsPromptRender', () => {
  const put = (key: string): WatchEvent => ({ type: 'put', entry: { key, value: '{}', mod: '1' } });
  const known = new Set([keys.host('h1'), keys.affinity('h1', '10.65.0.0/26')]);
  const has = (k: string) => known.has(k);
  test("is true for a host not seen before and for a block newly this host's", () => {
    assert.equal(needsPromptRender([put(keys.host('h2'))], has, 'h1'), true);
    assert.equal(needsPromptRender([put(keys.affinity('h1', '10.65.1.0/26'))], has, 'h1'), true);
  });
  test("is false for records already known, deletions, settings, pools and other hosts' blocks", () => {
    assert.equal(needsPromptRender([put(keys.host('h1')), put(keys.affinity('h1', '10.65.0.0/26'))], has, 'h1'), false);
    assert.equal(needsPromptRender([{ type: 'delete', key: keys.host('h1'), mod: '2' }], has, 'h1'), false);
    assert.equal(needsPromptRender([put(keys.bgpSettings()), put(keys.pool('10.66.0.0/16')), put(keys.peer('tor'))], has, 'h1'), false);
    assert.equal(needsPromptRender([put(keys.affinity('h10', '10.65.9.0/26'))], has, 'h1'), false);
  });
});
