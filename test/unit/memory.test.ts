import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MemoryKeeper, type MemoryAddon } from '../../lib/memory';
import { silentLogger } from '../../lib/log';

const MB = 1024 * 1024;

/** An allocator whose free total and the process's size the test moves by hand. */
function fakeAllocator() {
  const s = { free: 0, rss: 100 * MB, trims: 0, tuned: [] as number[][] };
  const addon: MemoryAddon = {
    tune: (...a) => (s.tuned.push(a), true),
    freeBytes: () => s.free,
    // Gives back the free pages but, as glibc does, still counts them as free.
    trim: () => {
      s.trims++;
      s.rss -= s.free;
      return true;
    },
  };
  return { s, addon };
}

test('the keeper fixes the allocator thresholds and caps the arenas when it starts', () => {
  const { s, addon } = fakeAllocator();
  const k = new MemoryKeeper(addon, silentLogger(), { resident: () => s.rss, intervalMs: 60_000 });
  k.start();
  k.stop();
  assert.equal(s.tuned.length, 1);
  const [arenas, mmapAt, trimAt] = s.tuned[0];
  assert.ok(arenas >= 1 && arenas <= 8 && mmapAt > 0 && trimAt > 0, `tune(${s.tuned[0].join(', ')})`);
});

test('memory freed inside the process is given back once enough piled up, and once only', () => {
  const { s, addon } = fakeAllocator();
  const k = new MemoryKeeper(addon, silentLogger(), { resident: () => s.rss, minFreeBytes: 8 * MB });
  s.free = 4 * MB;
  assert.equal(k.check(), 0, 'little free: no trim');
  s.free = 50 * MB;
  s.rss = 150 * MB;
  assert.equal(k.check(), 50 * MB);
  assert.equal(s.rss, 100 * MB);
  // Still counted free, but nothing to give back: the process did not grow since.
  assert.equal(k.check(), 0);
  assert.equal(s.trims, 1);
  // Churn brings it back: the pages were used again and freed again.
  s.rss = 130 * MB;
  assert.equal(k.check(), 50 * MB);
  assert.equal(s.trims, 2);
  assert.equal(k.releasedBytes, 100 * MB);
});

test('a process that grew by what it holds in use is not trimmed for nothing', () => {
  const { s, addon } = fakeAllocator();
  const k = new MemoryKeeper(addon, silentLogger(), { resident: () => s.rss, minFreeBytes: 8 * MB });
  s.rss = 400 * MB;
  s.free = 1 * MB;
  assert.equal(k.check(), 0);
  assert.equal(s.trims, 0);
});
