/** Forever-loops: bounded backoff, logged once per change of state, and the liveness key kept through a lost lease. */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import winston from 'winston';
import Transport from 'winston-transport';
import { Liveness } from '../../agent/liveness';
import { keys } from '../../lib/datastore/keys';
import { MemoryKV } from '../../lib/datastore/memory';
import { Supervisor } from '../../lib/supervise';

/** A logger that keeps what it is told. */
function capture() {
  const lines: Array<{ level: string; message: string }> = [];
  class Keep extends Transport {
    log(info: { level: string; message: string }, next: () => void) {
      lines.push({ level: info.level, message: info.message });
      next();
    }
  }
  return { log: winston.createLogger({ level: 'debug', transports: [new Keep()] }), lines };
}

describe('Supervisor', () => {
  test('retries a failing task with backoff and logs one warning and one recovery, not one line per failure', async () => {
    const { log, lines } = capture();
    const s = new Supervisor('the thing', log, { baseMs: 1, maxMs: 4 });
    let calls = 0;
    await s.run(async () => {
      if (++calls < 6) throw new Error(`boom ${calls}`);
      return 'done';
    });
    assert.equal(calls, 6);
    assert.deepEqual(
      lines.filter((l) => l.level !== 'debug').map((l) => `${l.level} ${l.message}`),
      ['warn the thing failed; retrying', 'info the thing: working again'],
    );
  });

  test('stop ends the loop at once, even while it waits to retry', async () => {
    const { log } = capture();
    const s = new Supervisor('slow', log, { baseMs: 60_000, maxMs: 60_000 });
    const running = s.run(async () => {
      throw new Error('always');
    });
    await new Promise((r) => setTimeout(r, 5));
    const t0 = Date.now();
    s.stop();
    await running;
    assert.ok(Date.now() - t0 < 1000);
  });
});

describe('Liveness', () => {
  test('holds the alive key and puts it back on a new lease after the old one was lost', async () => {
    const kv = new MemoryKV();
    const { log } = capture();
    const l = new Liveness(kv, 'h1', 10, log);
    l.start();
    for (let i = 0; i < 100 && !(await kv.get(keys.alive('h1'))); i++) await new Promise((r) => setTimeout(r, 2));
    assert.ok(await kv.get(keys.alive('h1')));
    kv.expireLeases();
    for (let i = 0; i < 100 && !(await kv.get(keys.alive('h1'))); i++) await new Promise((r) => setTimeout(r, 2));
    assert.ok(await kv.get(keys.alive('h1')), 'renewed after the lease was lost');
    await l.stop();
    assert.equal(await kv.get(keys.alive('h1')), undefined, 'a clean stop removes it at once');
  });
});
