import { test } from 'node:test';
import assert from 'node:assert/strict';
import { calicoLabels, validDockerName } from '../../agent/docker-watcher';

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

test('leaves out labels that could break a selector or a rule, and says which', () => {
  const skipped: string[] = [];
  const out = calicoLabels(
    {
      'org.projectcalico.label.role': 'db',
      'org.projectcalico.label.bad': `x'"y`,
      "org.projectcalico.label.k'ey": 'v',
      'org.projectcalico.label.ctl': 'a\nb',
      'org.projectcalico.label.long': 'v'.repeat(254),
    },
    (k) => skipped.push(k),
  );
  assert.deepEqual(out, { role: 'db' });
  assert.deepEqual(skipped.sort(), [
    'org.projectcalico.label.bad',
    'org.projectcalico.label.ctl',
    "org.projectcalico.label.k'ey",
    'org.projectcalico.label.long',
  ]);
});

test('accepts the names Docker gives and nothing else', () => {
  for (const ok of ['net1', 'my_net.2-x', 'a']) assert.equal(validDockerName(ok), true, ok);
  for (const bad of ['', `x'"y`, '-x', 'a b', 'a/b', 'x'.repeat(256)]) assert.equal(validDockerName(bad), false, bad);
});
