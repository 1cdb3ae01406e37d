import { test } from 'node:test';
import assert from 'node:assert/strict';
import { calicoLabels } from '../../agent/docker-watcher';

test('keeps only org.projectcalico.label.* container labels, with the prefix removed', () => {
  assert.deepEqual(
    calicoLabels({ 'org.projectcalico.label.role': 'db', 'org.projectcalico.label.tier': 'back', other: 'x', 'org.projectcalico.label.': 'empty-key' }),
    { role: 'db', tier: 'back' },
  );
});

test('no labels (Docker sends null) gives none', () => {
  assert.deepEqual(calicoLabels(null), {});
  assert.deepEqual(calicoLabels(undefined), {});
});
