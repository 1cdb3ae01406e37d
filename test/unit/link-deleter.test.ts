import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LinkDeleter, type GroupDeleteOps } from '../../lib/dataplane/link-deleter';

const veth = (l: { kind?: string }) => {
  if (l.kind !== 'veth') throw new Error('not a veth');
};

/** Links by index (named l<index>; l7 is a bridge) with their group; each request takes a tick, like a kernel call would. */
function kernel(indexes: number[], faults: { groupDelete?: boolean; setGroup?: number } = {}) {
  const links = new Map(indexes.map((i) => [i, 0]));
  const requests: string[] = [];
  const tick = () => new Promise((r) => setTimeout(r, 5));
  const ops: GroupDeleteOps = {
    async getLink(name) {
      const index = Number(name.slice(1));
      return links.has(index) ? { index, kind: index === 7 ? 'bridge' : 'veth' } : undefined;
    },
    async deleteLink(index) {
      requests.push(`del ${index}`);
      await tick();
      return links.delete(index) ? 'deleted' : 'missing';
    },
    async setLinkGroup(index, group) {
      requests.push(`group ${index}`);
      if (faults.setGroup === index) throw new Error('EPERM');
      if (!links.has(index)) return 'no-link';
      links.set(index, group);
      return 'ok';
    },
    async deleteGroup(group) {
      requests.push('del group');
      await tick();
      if (faults.groupDelete) throw new Error('EBUSY');
      const members = [...links].filter(([, g]) => g === group);
      for (const [i] of members) links.delete(i);
      return members.length ? 'deleted' : 'missing';
    },
  };
  return { links, requests, ops };
}

test('a lone deletion goes out by index; those asked for while it runs are deleted together in one request', async () => {
  const k = kernel([1, 2, 3, 4, 5, 9]);
  const d = new LinkDeleter(k.ops);
  await Promise.all([1, 2, 3, 4, 5].map((i) => d.delete(`l${i}`, veth)));
  assert.deepEqual([...k.links.keys()], [9]);
  assert.deepEqual(k.requests, ['del 1', 'group 2', 'group 3', 'group 4', 'group 5', 'del group']);
});

test('links already gone are success; a failed group deletion falls back to one request per link', async () => {
  const k = kernel([1, 3, 4], { groupDelete: true });
  const d = new LinkDeleter(k.ops);
  await Promise.all([1, 2, 3, 4].map((i) => d.delete(`l${i}`, veth)));
  assert.equal(k.links.size, 0);
  assert.deepEqual(k.requests, ['del 1', 'group 3', 'group 4', 'del group', 'del 3', 'del 4']);
});

test('links queued while a deletion runs are looked up in the batch; one refused by the check is left alone and only its caller sees why', async () => {
  const k = kernel([1, 2, 3, 7]);
  const d = new LinkDeleter(k.ops);
  const first = d.delete('l1', veth);
  // Queued after the first went out, as requests arriving during its sendmsg() would be.
  await new Promise((r) => setImmediate(r));
  const out = await Promise.allSettled([first, ...[2, 7, 3].map((i) => d.delete(`l${i}`, veth))]);
  assert.deepEqual(
    out.map((o) => o.status),
    ['fulfilled', 'fulfilled', 'rejected', 'fulfilled'],
  );
  assert.deepEqual([...k.links.keys()], [7]);
  assert.deepEqual(k.requests, ['del 1', 'group 2', 'group 3', 'del group']);
});

test('a link that cannot be tagged is deleted on its own, and its error reaches only its caller', async () => {
  const k = kernel([1, 2, 3], { setGroup: 2 });
  const ops = { ...k.ops, deleteLink: async (i: number) => (i === 2 ? Promise.reject(new Error('EPERM')) : k.ops.deleteLink(i)) };
  const d = new LinkDeleter(ops);
  const out = await Promise.allSettled([1, 2, 3].map((i) => d.delete(`l${i}`, veth)));
  assert.deepEqual(
    out.map((o) => o.status),
    ['fulfilled', 'rejected', 'fulfilled'],
  );
  assert.deepEqual([...k.links.keys()], [2]);
});

test('idle(name) settles only once every deletion of that name asked for so far has, failed or not', async () => {
  const k = kernel([1, 2]);
  const d = new LinkDeleter(k.ops);
  assert.equal(d.idle('l1'), undefined);
  const del = d.delete('l1', veth);
  const idle = d.idle('l1');
  assert.ok(idle);
  let settled = false;
  void idle.then(() => (settled = true));
  await new Promise((r) => setImmediate(r));
  assert.equal(settled, false);
  await del;
  await idle;
  assert.equal(d.idle('l1'), undefined);
});
