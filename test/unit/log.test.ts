/** The structured logger (lib/log.ts): levels below the configured one cost nothing and write nothing. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import winston from 'winston';
import { createLogger } from '../../lib/log';

function capture(level: 'warn' | 'info') {
  const log = createLogger(level);
  log.clear();
  const stream = new PassThrough();
  const lines: Array<Record<string, unknown>> = [];
  stream.on('data', (b: Buffer) =>
    lines.push(
      ...b
        .toString()
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as Record<string, unknown>),
    ),
  );
  log.add(new winston.transports.Stream({ stream }));
  return { log, lines };
}

test('entries below the level are dropped before formatting, entries at or above it are written as JSON', async () => {
  const { log, lines } = capture('warn');
  log.info('hidden', { a: 1 });
  log.debug('hidden too');
  log.warn('shown', { b: 2 });
  log.error('also shown');
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(
    lines.map((l) => [l.level, l.message, l.b]),
    [
      ['warn', 'shown', 2],
      ['error', 'also shown', undefined],
    ],
  );
  assert.ok(lines.every((l) => typeof l.timestamp === 'string'));
});

test('a child logger keeps its metadata and follows a level changed at run time', async () => {
  const { log, lines } = capture('warn');
  const child = log.child({ component: 'test' });
  child.info('hidden');
  log.level = 'info';
  child.info('shown', { c: 3 });
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(
    lines.map((l) => [l.message, l.component, l.c]),
    [['shown', 'test', 3]],
  );
});
