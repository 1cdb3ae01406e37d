/** Bounded retries, deadlines and per-key serialisation (lib/retry.ts). */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { BadRequestError, UnavailableError, isRetryable } from '../../lib/errors';
import { KeyedMutex, jitteredDelay, retry, sleep, withDeadline } from '../../lib/retry';

const fast = { baseMs: 1, maxMs: 2 };

describe('retry', () => {
  test('returns the first success without further attempts', async () => {
    const seen: number[] = [];
    assert.equal(await retry(async (n) => (seen.push(n), 'ok'), { attempts: 5, ...fast }), 'ok');
    assert.deepEqual(seen, [0]);
  });

  test('retries until success, passing the attempt number', async () => {
    const seen: number[] = [];
    const out = await retry(
      async (n) => {
        seen.push(n);
        if (n < 2) throw new UnavailableError('not yet');
        return n;
      },
      { attempts: 5, ...fast },
    );
    assert.equal(out, 2);
    assert.deepEqual(seen, [0, 1, 2]);
  });

  test('is bounded: makes exactly `attempts` calls and rethrows the last error', async () => {
    let calls = 0;
    await assert.rejects(
      retry(
        async () => {
          calls++;
          throw new UnavailableError(`fail ${calls}`);
        },
        { attempts: 4, ...fast },
      ),
      /fail 4/,
    );
    assert.equal(calls, 4);
  });

  test('stops at once when retryOn says no', async () => {
    let calls = 0;
    const err = new BadRequestError('bad');
    await assert.rejects(
      retry(
        async () => {
          calls++;
          throw err;
        },
        { attempts: 10, ...fast, retryOn: isRetryable },
      ),
      (e: unknown) => e === err,
    );
    assert.equal(calls, 1);
  });

  test('keeps retrying while retryOn says yes', async () => {
    let calls = 0;
    const out = await retry(
      async () => {
        if (++calls < 3) throw new UnavailableError('etcd');
        return 'done';
      },
      { attempts: 5, ...fast, retryOn: isRetryable },
    );
    assert.equal(out, 'done');
    assert.equal(calls, 3);
  });

  test('does not wait after the last attempt', async () => {
    const started = Date.now();
    await assert.rejects(retry(async () => Promise.reject(new Error('x')), { attempts: 1, baseMs: 10_000, maxMs: 10_000 }));
    assert.ok(Date.now() - started < 1000);
  });
});

describe('jitteredDelay', () => {
  test('stays within [0, min(max, base * 2^attempt))', () => {
    for (let attempt = 0; attempt < 12; attempt++) {
      for (let i = 0; i < 50; i++) {
        const d = jitteredDelay(attempt, 2, 50);
        assert.ok(d >= 0 && d <= Math.min(50, 2 * 2 ** attempt), `attempt ${attempt}: ${d}`);
      }
    }
  });
});

describe('withDeadline', () => {
  test('passes through a value that arrives in time', async () => {
    assert.equal(await withDeadline(Promise.resolve(5), 100, 'op'), 5);
  });

  test('passes through a rejection that arrives in time', async () => {
    await assert.rejects(withDeadline(Promise.reject(new BadRequestError('no')), 100, 'op'), BadRequestError);
  });

  test('rejects with an UnavailableError naming the operation when too slow', async () => {
    await assert.rejects(
      withDeadline(new Promise<never>(() => undefined), 10, 'etcd get'),
      (e: unknown) => e instanceof UnavailableError && e.message === 'etcd get timed out after 10 ms' && isRetryable(e),
    );
  });
});

describe('KeyedMutex', () => {
  test('serialises work on one key in call order', async () => {
    const m = new KeyedMutex();
    const log: string[] = [];
    let active = 0;
    const job = (name: string, ms: number) =>
      m.run('k', async () => {
        active++;
        assert.equal(active, 1, 'never two at once on the same key');
        log.push(`start ${name}`);
        await sleep(ms);
        log.push(`end ${name}`);
        active--;
        return name;
      });
    assert.deepEqual(await Promise.all([job('a', 15), job('b', 1), job('c', 5)]), ['a', 'b', 'c']);
    assert.deepEqual(log, ['start a', 'end a', 'start b', 'end b', 'start c', 'end c']);
  });

  test('runs different keys concurrently', async () => {
    const m = new KeyedMutex();
    let active = 0;
    let peak = 0;
    const job = (key: string) =>
      m.run(key, async () => {
        peak = Math.max(peak, ++active);
        await sleep(10);
        active--;
      });
    await Promise.all([job('a'), job('b'), job('c')]);
    assert.equal(peak, 3);
  });

  test('a failing job does not block the next one on the key', async () => {
    const m = new KeyedMutex();
    await assert.rejects(
      m.run('k', async () => Promise.reject(new Error('boom'))),
      /boom/,
    );
    assert.equal(await m.run('k', async () => 'after'), 'after');
  });

  test('forgets a key once its queue is empty', async () => {
    const m = new KeyedMutex();
    await m.run('k', async () => undefined);
    await sleep(0);
    assert.equal((m as unknown as { tails: Map<string, unknown> }).tails.size, 0);
  });

  test('runAll takes the keys in sorted order, each once', async () => {
    const m = new KeyedMutex();
    const order: string[] = [];
    const orig = m.run.bind(m);
    m.run = <T>(key: string, fn: () => Promise<T>) => {
      order.push(key);
      return orig(key, fn);
    };
    assert.equal(await m.runAll(['c', 'a', 'b', 'a'], async () => 'held'), 'held');
    assert.deepEqual(order, ['a', 'b', 'c']);
  });

  test('runAll holds every key: a single-key job started meanwhile waits for it', async () => {
    const m = new KeyedMutex();
    const log: string[] = [];
    let entered!: () => void;
    const inside = new Promise<void>((r) => (entered = r));
    const all = m.runAll(['x', 'y'], async () => {
      entered();
      await sleep(10);
      log.push('all');
    });
    await inside;
    const singles = [m.run('x', async () => void log.push('x')), m.run('y', async () => void log.push('y'))];
    await Promise.all([all, ...singles]);
    assert.equal(log[0], 'all', 'neither key was free while runAll held it');
    assert.deepEqual(log.slice(1).sort(), ['x', 'y']);
  });

  test('two runAll calls with reversed key lists both complete (no deadlock)', async () => {
    const m = new KeyedMutex();
    const log: string[] = [];
    const job = (name: string, keys: string[]) =>
      m.runAll(keys, async () => {
        log.push(`in ${name}`);
        await sleep(5);
        log.push(`out ${name}`);
        return name;
      });
    const done = Promise.all([job('one', ['a', 'b', 'c']), job('two', ['c', 'b', 'a']), job('three', ['b', 'a'])]);
    const result = await withDeadline(done, 2000, 'runAll');
    assert.deepEqual(result, ['one', 'two', 'three']);
    assert.deepEqual(log, ['in one', 'out one', 'in two', 'out two', 'in three', 'out three']);
  });

  test('runAll with no keys just runs the function', async () => {
    assert.equal(await new KeyedMutex().runAll([], async () => 7), 7);
  });
});
