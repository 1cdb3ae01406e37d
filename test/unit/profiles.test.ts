/** Per-network profiles (policy/profiles.ts): the default profile and keeping etcd in step. */
import { describe, test } from 'node:test';
import { keys } from '../../lib/datastore/keys';
import assert from 'node:assert/strict';
import { MemoryKV } from '../../lib/datastore/memory';
import type { EndpointRecord, NetworkRecord } from '../../lib/datastore/records';
import { NotFoundError } from '../../lib/errors';
import { NETWORK_LABEL, type ProfileRecord, defaultProfile, getProfile, listProfiles, networkName, syncProfiles, wantedProfiles } from '../../policy/profiles';
import { matches, parseSelector } from '../../policy/selector';

const net = (host: string, id: string, name?: string, internal?: boolean): NetworkRecord => ({
  id,
  host,
  ...(name === undefined ? {} : { name }),
  ipv4Pools: ['0.0.0.0/0'],
  ipv6Pools: [],
  ipv6: false,
  options: {},
  ...(internal === undefined ? {} : { internal }),
  createdAt: '2024-01-01T00:00:00.000Z',
});

/** Runs a sync the way the agent does: with the entries as stored right now. */
const sync = async (kv: MemoryKV, networks: NetworkRecord[]) => syncProfiles(kv, networks, await kv.list(keys.profiles()));
const stored = async (kv: MemoryKV) => (await listProfiles(kv)).map((p) => [p.name, p.internal]);

describe('defaultProfile', () => {
  test('lets in the same network and out anywhere', () => {
    assert.deepEqual(defaultProfile('front', false), {
      name: 'front',
      internal: false,
      ingress: [{ action: 'allow', source: { selector: "calico/network == 'front'" } }],
      egress: [{ action: 'allow' }],
    });
  });

  test('lets an internal network out only to the same network', () => {
    const p = defaultProfile('back', true);
    assert.equal(p.internal, true);
    assert.deepEqual(p.egress, [{ action: 'allow', destination: { selector: "calico/network == 'back'" } }]);
    assert.deepEqual(p.ingress, defaultProfile('back', false).ingress);
  });

  test('its selector matches exactly the endpoints labelled with the network, quotes and all', () => {
    for (const name of ['front', "bob's net", 'say "hi"']) {
      const s = parseSelector(defaultProfile(name, false).ingress[0].source!.selector);
      assert.equal(matches(s, { [NETWORK_LABEL]: name }), true, name);
      assert.equal(matches(s, { [NETWORK_LABEL]: `${name}x` }), false, name);
      assert.equal(matches(s, {}), false, name);
    }
  });
});

describe('networkName', () => {
  const ep = { host: 'h1', network: 'n1' } as EndpointRecord;

  test("is the learned name of the endpoint's network on its own host", () => {
    assert.equal(networkName(ep, new Map([['h1/n1', net('h1', 'n1', 'front')]])), 'front');
  });

  test('is the network ID until the name is learned, or when only another host has the record', () => {
    assert.equal(networkName(ep, new Map([['h1/n1', net('h1', 'n1')]])), 'n1');
    assert.equal(networkName(ep, new Map([['h2/n1', net('h2', 'n1', 'front')]])), 'n1');
  });
});

describe('wantedProfiles', () => {
  test('wants one profile per learned network name, across hosts', () => {
    const w = wantedProfiles([net('h1', 'n1', 'front'), net('h2', 'n9', 'front'), net('h1', 'n2', 'back'), net('h1', 'n3')]);
    assert.deepEqual([...w.keys()].sort(), ['back', 'front']);
    assert.deepEqual(w.get('front'), defaultProfile('front', false));
  });

  test('makes a profile internal when the network is internal on any host', () => {
    const w = wantedProfiles([net('h1', 'n1', 'db', false), net('h2', 'n2', 'db', true), net('h3', 'n3', 'db')]);
    assert.equal(w.get('db')!.internal, true);
    assert.deepEqual(w.get('db'), defaultProfile('db', true));
  });

  test('wants nothing for no networks or only unnamed ones', () => {
    assert.equal(wantedProfiles([]).size, 0);
    assert.equal(wantedProfiles([net('h1', 'n1')]).size, 0);
  });
});

describe('syncProfiles', () => {
  test('creates the missing profiles and reports each change', async () => {
    const kv = new MemoryKV();
    assert.equal(await sync(kv, [net('h1', 'n1', 'front'), net('h1', 'n2', 'back', true), net('h2', 'n3', 'front')]), 2);
    assert.deepEqual(await stored(kv), [
      ['back', true],
      ['front', false],
    ]);
    assert.deepEqual(await getProfile(kv, 'back'), defaultProfile('back', true));
  });

  test('a second pass over the same networks changes nothing', async () => {
    const kv = new MemoryKV();
    const nets = [net('h1', 'n1', 'front'), net('h1', 'n2', 'back', true)];
    await sync(kv, nets);
    const before = await kv.list(keys.profiles());
    assert.equal(await sync(kv, nets), 0);
    assert.deepEqual(await kv.list(keys.profiles()), before);
  });

  test('fixes the internal flag both ways', async () => {
    const kv = new MemoryKV();
    await sync(kv, [net('h1', 'n1', 'db')]);
    assert.equal(await sync(kv, [net('h1', 'n1', 'db', true)]), 1);
    assert.deepEqual(await getProfile(kv, 'db'), defaultProfile('db', true));
    assert.equal(await sync(kv, [net('h1', 'n1', 'db', false)]), 1);
    assert.deepEqual(await getProfile(kv, 'db'), defaultProfile('db', false));
  });

  test('removes profiles no network is named for any more, and keeps the rest untouched', async () => {
    const kv = new MemoryKV();
    await sync(kv, [net('h1', 'n1', 'front'), net('h1', 'n2', 'old'), net('h2', 'n3', 'gone')]);
    const front = await kv.get(keys.profile('front'));
    assert.equal(await sync(kv, [net('h1', 'n1', 'front'), net('h1', 'n2')]), 2);
    assert.deepEqual(await stored(kv), [['front', false]]);
    assert.deepEqual(await kv.get(keys.profile('front')), front);
  });

  test('removes every profile when no networks remain', async () => {
    const kv = new MemoryKV();
    await sync(kv, [net('h1', 'n1', 'a'), net('h1', 'n2', 'b')]);
    assert.equal(await sync(kv, []), 2);
    assert.deepEqual(await listProfiles(kv), []);
  });

  test('leaves a matching stored profile alone even when its rules were edited', async () => {
    const kv = new MemoryKV();
    const edited: ProfileRecord = { ...defaultProfile('front', false), ingress: [{ action: 'allow' }] };
    await kv.put(keys.profile('front'), JSON.stringify(edited));
    assert.equal(await sync(kv, [net('h1', 'n1', 'front')]), 0);
    assert.deepEqual(await getProfile(kv, 'front'), edited);
  });

  test('does not overwrite a profile changed since the entries it was given (revision guard)', async () => {
    const kv = new MemoryKV();
    await sync(kv, [net('h1', 'n1', 'db')]);
    const old = await kv.list(keys.profiles());
    // Another host rewrites it first; a pass working from the older entries must neither
    // overwrite nor delete what that host wrote (it sees the change on its next pass).
    const theirs = { ...defaultProfile('db', true), ingress: [] };
    await kv.put(keys.profile('db'), JSON.stringify(theirs));
    assert.equal(await syncProfiles(kv, [net('h1', 'n1', 'db', true)], old), 0);
    assert.equal(await syncProfiles(kv, [], old), 0);
    assert.deepEqual(await getProfile(kv, 'db'), theirs);
  });

  test('does not create a profile another host created meanwhile', async () => {
    const kv = new MemoryKV();
    kv.beforeTxn = () => {
      kv.beforeTxn = undefined;
      void kv.put(keys.profile('front'), JSON.stringify({ ...defaultProfile('front', false), ingress: [] }));
    };
    assert.equal(await syncProfiles(kv, [net('h1', 'n1', 'front')], []), 0);
    assert.deepEqual((await getProfile(kv, 'front')).ingress, []);
  });
});

describe('getProfile', () => {
  test('is NotFoundError for a network name without a profile', async () => {
    await assert.rejects(
      getProfile(new MemoryKV(), 'nope'),
      (e: unknown) => e instanceof NotFoundError && /no profile nope; profiles are named after Docker networks/.test(e.message),
    );
  });
});
