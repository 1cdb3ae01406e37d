/** The agents' apply scheduler (lib/apply-loop.ts). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ApplyLoop } from '../../lib/apply-loop';
import { silentLogger } from '../../lib/log';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function loop(apply: () => Promise<void>, debounceMs = 30) {
  return new ApplyLoop(apply, silentLogger(), { debounceMs, retryMs: 20, retryCapMs: 40, what: 'test' });
}

test('changes within the debounce window make one apply, and later changes never push it back', async () => {
  let runs = 0;
  const l = loop(async () => void runs++);
  const t0 = Date.now();
  let firstAt = 0;
  for (let i = 0; i < 12; i++) {
    l.schedule();
    await sleep(10);
    if (runs && !firstAt) firstAt = Date.now();
  }
  await sleep(40);
  l.stop();
  assert.ok(firstAt > 0 && firstAt - t0 < 100, `first apply after ${firstAt - t0} ms despite changes every 10 ms`);
  assert.ok(runs >= 3 && runs <= 6, `${runs} applies for 12 changes 10 ms apart with a 30 ms window`);
});

test('schedule(true) applies at once, and a change during an apply causes exactly one more', async () => {
  const started: number[] = [];
  let release!: () => void;
  const l = loop(async () => {
    started.push(Date.now());
    if (started.length === 1) await new Promise<void>((r) => (release = r));
  }, 1000);
  l.schedule(true);
  assert.equal(started.length, 1);
  l.schedule(true);
  l.schedule(true);
  release();
  await sleep(20);
  l.stop();
  assert.equal(started.length, 2, 'the changes during the first apply made one more, at once');
});

test('a failed apply is retried after a delay until it succeeds', async () => {
  let runs = 0;
  const l = loop(async () => {
    runs++;
    if (runs < 3) throw new Error('etcd down');
  });
  await l.runNow();
  await sleep(400);
  l.stop();
  assert.equal(runs, 3);
});

test('nothing runs after stop', async () => {
  let runs = 0;
  const l = loop(async () => void runs++, 10);
  l.schedule();
  l.stop();
  l.schedule(true);
  await sleep(30);
  assert.equal(runs, 0);
});
