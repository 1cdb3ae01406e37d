import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { test } from 'node:test';
import { memoryAddonCandidates } from '../../lib/memory';

/**
 * The real allocator: a process mallocs 200 MB in blocks below any mmap threshold, frees them,
 * and holds on to the pages until the addon's trim gives them back.
 */
const CHILD = `
const m = require(process.argv[1]);
const rss = () => Number(require('fs').readFileSync('/proc/self/statm', 'utf8').split(' ')[1]) * 4096 / 1048576;
let keep = [];
for (let i = 0; i < 3200; i++) keep.push(Buffer.allocUnsafeSlow(64 * 1024).fill(1));
// One block at the top keeps glibc from shrinking the heap by itself.
const pin = Buffer.allocUnsafeSlow(1024).fill(1);
keep = [];
global.gc(); global.gc();
const held = rss();
const trimmed = m.trim();
process.stdout.write(JSON.stringify({ held, after: rss(), trimmed, free: m.freeBytes(), pin: pin.length }));
`;

test('the memory addon gives pages freed inside the process back to the kernel', () => {
  const found = memoryAddonCandidates().find((p) => fs.existsSync(p));
  assert.ok(found, `the addon is built by scripts/install-deps.sh; looked in ${memoryAddonCandidates().join(', ')}`);
  const r = spawnSync(process.execPath, ['--expose-gc', '-e', CHILD, found], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout) as { held: number; after: number; trimmed: boolean; free: number };
  assert.ok(out.free > 100 * 1024 * 1024, `freed blocks count as free in the arenas: ${JSON.stringify(out)}`);
  assert.ok(out.held - out.after > 100, `trim gave back more than 100 MB: ${JSON.stringify(out)}`);
});
