/** The route agent against the in-memory store: what BIRD is given as etcd changes, across lost and compacted watches. */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { codecs } from '../../lib/datastore/codec';
import { keys } from '../../lib/datastore/keys';
import { MemoryKV } from '../../lib/datastore/memory';
import { silentLogger } from '../../lib/log';
import { type BirdControl, RouteAgent } from '../../routing/agent';

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

async function setup() {
  const kv = new MemoryKV();
  await kv.put(keys.host('h1'), host('h1', '172.31.0.1'));
  const bird = new FakeBird();
  const agent = new RouteAgent({ kv, host: 'h1', log: silentLogger() }, bird, { debounceMs: 1, resyncMs: 60_000 });
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
});
