/** The storage boundary: codecs, list-then-watch with resume and re-list, leases, transact. */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as blk from '../../ipam/block';
import { CorruptRecordError, codecs } from '../../lib/datastore/codec';
import type { KVEntry, WatchEvent, WatchListener } from '../../lib/datastore/kv';
import { type WatchSource, listWatch } from '../../lib/datastore/list-watch';
import { MemoryKV } from '../../lib/datastore/memory';
import { createLogger } from '../../lib/log';
import { transact } from '../../lib/datastore/transact';
import { UnavailableError } from '../../lib/errors';
import { parseCidr } from '../../lib/ip';
import { makeOwner } from '../harness/owners';

const tick = () => new Promise((r) => setTimeout(r, 5));

/** A listener that keeps the state it was told, and counts resets. */
function recorder() {
  const state = new Map<string, string>();
  const log = { resets: 0, events: [] as WatchEvent[] };
  const l: WatchListener = {
    reset(entries: KVEntry[]) {
      log.resets++;
      state.clear();
      for (const e of entries) state.set(e.key, e.value);
    },
    changes(events) {
      log.events.push(...events);
      for (const e of events)
        if (e.type === 'put') state.set(e.entry.key, e.entry.value);
        else state.delete(e.key);
    },
  };
  return { l, state, log };
}

async function until(cond: () => boolean, what: string) {
  for (let i = 0; i < 200 && !cond(); i++) await tick();
  assert.ok(cond(), what);
}

describe('block codec', () => {
  const net = parseCidr('10.0.0.0/26');
  const full = () => {
    let rec = blk.newBlock(net, 'host-a');
    for (let i = 0; i < 64; i++) {
      const o =
        i % 3 === 0
          ? makeOwner('endpoint', {
              host: 'host-a',
              pool: 'CalicoPoolIPv4|10.0.0.0/16',
              handle: `h${i}`,
              network: 'n'.repeat(64),
              endpoint: `${i}`.padStart(64, 'e'),
            })
          : i % 3 === 1
            ? makeOwner('aux', { host: 'host-a', pool: 'CalicoPoolIPv4', handle: `h${i}`, network: 'n'.repeat(64) })
            : makeOwner('pending', { host: 'host-b', pool: 'CalicoPoolIPv4', handle: `h${i}`, since: '2026-12-02T07:00:00.123Z' });
      rec = blk.allocate(rec, net, o)!.rec;
    }
    return rec;
  };

  test('a block round-trips through its compact form unchanged', () => {
    const rec = full();
    assert.deepEqual(codecs.block.decodeValue('k', codecs.block.encode(rec)), rec);
  });

  test('a full block is written far smaller than its plain JSON', () => {
    const rec = full();
    const compact = codecs.block.encode(rec).length;
    const plain = JSON.stringify(rec).length;
    assert.ok(compact < plain * 0.7, `compact ${compact} bytes vs plain ${plain}`);
  });

  test('blocks written in the older object form still decode', () => {
    const rec = full();
    assert.deepEqual(codecs.block.decodeValue('k', JSON.stringify(rec)), rec);
  });

  test('a malformed record is refused naming its key and field', () => {
    assert.throws(
      () => codecs.endpoint.decodeValue('endpoints/h/x', JSON.stringify({ id: 1 })),
      (err: Error) => {
        assert.ok(err instanceof CorruptRecordError);
        assert.match(err.message, /endpoint record at endpoints\/h\/x is malformed: field "id"/);
        return true;
      },
    );
    assert.throws(() => codecs.pool.decodeValue('pools/x', 'not json'), /pool record at pools\/x is not JSON/);
  });

  test('decodeAll skips and reports what it cannot decode', () => {
    const bad: string[] = [];
    const good = { name: 'h1', version: '1', startedAt: 't' };
    const out = codecs.host.decodeAll(
      [
        { key: 'hosts/h1', value: JSON.stringify(good), mod: '1' },
        { key: 'hosts/h2', value: '{', mod: '2' },
      ],
      (key) => bad.push(key),
    );
    assert.deepEqual(out, [good]);
    assert.deepEqual(bad, ['hosts/h2']);
  });

  test('a rule field this version does not know makes the policy unreadable rather than broader', () => {
    const p = { name: 'p', order: 1, selector: 'all()', types: ['ingress'], ingress: [{ action: 'allow', source: { serviceAccounts: ['x'] } }], egress: [] };
    assert.throws(() => codecs.policy.decodeValue('policies/p', JSON.stringify(p)), CorruptRecordError);
  });
});

describe('MemoryKV watch', () => {
  test('starts with the whole state of its prefixes, then follows changes', async () => {
    const kv = new MemoryKV();
    await kv.put('a/1', 'x');
    await kv.put('b/1', 'y');
    const r = recorder();
    const w = kv.watch(['a/'], r.l);
    await w.ready;
    assert.deepEqual([...r.state], [['a/1', 'x']]);
    await kv.put('a/2', 'z');
    await kv.put('b/2', 'not mine');
    await kv.del('a/1');
    await until(() => r.state.size === 1 && r.state.get('a/2') === 'z', 'changes followed');
    assert.equal(r.log.resets, 1);
    await w.cancel();
  });

  test('a lost watch resumes where it was, missing nothing written meanwhile and listing nothing again', async () => {
    const kv = new MemoryKV();
    const r = recorder();
    const w = kv.watch(['a/'], r.l);
    await w.ready;
    await kv.put('a/1', 'one');
    await until(() => r.state.has('a/1'), 'first event');
    kv.dropWatches();
    await kv.put('a/2', 'two');
    await kv.del('a/1');
    await until(() => r.state.has('a/2') && !r.state.has('a/1'), 'events written while lost');
    assert.equal(r.log.resets, 1, 'resumed, not listed again');
    assert.equal(r.log.events.filter((e) => e.type === 'put' && e.entry.key === 'a/1').length, 1, 'no event delivered twice');
    await w.cancel();
  });

  test('a watch whose history was compacted away lists again and resets', async () => {
    const kv = new MemoryKV();
    const r = recorder();
    const w = kv.watch(['a/'], r.l);
    await w.ready;
    kv.dropWatches();
    await kv.put('a/1', 'one');
    await kv.put('a/2', 'two');
    await kv.del('a/2');
    kv.compact();
    await until(() => r.log.resets === 2, 'listed again');
    assert.deepEqual([...r.state], [['a/1', 'one']]);
    await kv.put('a/3', 'three');
    await until(() => r.state.has('a/3'), 'follows after the reset');
    await w.cancel();
  });

  test('a cancelled watch tells its owner nothing more', async () => {
    const kv = new MemoryKV();
    const r = recorder();
    const w = kv.watch(['a/'], r.l);
    await w.ready;
    await w.cancel();
    await kv.put('a/1', 'x');
    await tick();
    assert.equal(r.state.size, 0);
  });
});

describe('listWatch over several prefixes', () => {
  test('delivers an older event of one prefix that arrives after a newer event of another (their etcd streams are not ordered)', async () => {
    let emit!: (events: WatchEvent[]) => void;
    const source: WatchSource = {
      snapshot: () => Promise.resolve({ entries: [], revision: '10' }),
      watchFrom: (_prefixes, _from, onEvents) => {
        emit = onEvents;
        return Promise.resolve(() => Promise.resolve());
      },
    };
    const r = recorder();
    const w = listWatch(source, ['hosts/', 'affinity/'], r.l, createLogger('error'));
    await w.ready;
    await until(() => emit !== undefined, 'watching');
    emit([{ type: 'put', entry: { key: 'hosts/h1', value: 'h', mod: '50' } }]);
    emit([
      { type: 'put', entry: { key: 'affinity/h1/b1', value: 'a', mod: '48' } },
      { type: 'put', entry: { key: 'affinity/h1/b2', value: 'a', mod: '48' } },
    ]);
    emit([{ type: 'put', entry: { key: 'hosts/h1', value: 'stale copy', mod: '50' } }]);
    assert.deepEqual([...r.state.keys()].sort(), ['affinity/h1/b1', 'affinity/h1/b2', 'hosts/h1']);
    assert.equal(r.state.get('hosts/h1'), 'h', 'a replayed event is not delivered again');
    await w.cancel();
  });
});

describe('MemoryKV leases', () => {
  test('a key put on a lease goes when the lease expires, and its owner hears of it', async () => {
    const kv = new MemoryKV();
    const lease = await kv.lease(10);
    let lost = false;
    lease.onLost(() => (lost = true));
    await lease.put('alive/h1', '{}');
    assert.ok(await kv.get('alive/h1'));
    kv.expireLeases();
    assert.equal(await kv.get('alive/h1'), undefined);
    assert.ok(lost);
    await assert.rejects(lease.put('alive/h1', '{}'), /not found/);
  });

  test('revoking a lease deletes its keys at once', async () => {
    const kv = new MemoryKV();
    const lease = await kv.lease(10);
    await lease.put('alive/h1', '{}');
    await lease.revoke();
    assert.equal(await kv.get('alive/h1'), undefined);
  });
});

describe('transact', () => {
  test('decides again on fresh data when another writer won', async () => {
    const kv = new MemoryKV();
    await kv.put('n', '0');
    let competitor = true;
    const out = await transact(
      kv,
      async () => {
        const e = (await kv.get('n'))!;
        if (competitor) {
          competitor = false;
          await kv.put('n', '10');
        }
        const next = String(Number(e.value) + 1);
        return { compares: [{ key: 'n', mod: e.mod }], ops: [{ put: 'n', value: next }], result: next };
      },
      { what: 'the counter' },
    );
    assert.equal(out, '11');
    assert.equal((await kv.get('n'))!.value, '11');
  });

  test('gives up after its bounded attempts with a retryable error naming what kept changing', async () => {
    const kv = new MemoryKV();
    await kv.put('n', '0');
    let attempts = 0;
    await assert.rejects(
      transact(
        kv,
        async () => {
          attempts++;
          const e = (await kv.get('n'))!;
          await kv.put('n', 'moved');
          return { compares: [{ key: 'n', mod: e.mod }], ops: [{ put: 'n', value: 'mine' }], result: undefined };
        },
        { what: 'the counter', attempts: 4 },
      ),
      (err: Error) => err instanceof UnavailableError && /the counter kept changing under concurrent writers \(4 attempts\)/.test(err.message),
    );
    assert.equal(attempts, 4);
  });

  test('writes nothing when the step decides there is nothing to do', async () => {
    const kv = new MemoryKV();
    const out = await transact(kv, async () => ({ done: 'nothing' }), { what: 'x' });
    assert.equal(out, 'nothing');
    assert.equal(kv.currentRevision(), '0');
  });
});
