/** When BIRD starts in graceful-restart recovery: only after a run that left routes behind. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startFlags } from '../../routing/bird';

test('BIRD starts in graceful-restart recovery (-R) when the kernel holds routes a previous BIRD installed', () => {
  assert.deepEqual(startFlags(3), ['-R']);
});

test('a first start, with no BIRD routes in the kernel, skips recovery so learned routes go to the kernel at once', () => {
  assert.deepEqual(startFlags(0), []);
});
