/** The structured logger (lib/log.ts): levels below the configured one cost nothing and write nothing. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import winston from 'winston';
import { createLogger, resolveLogFormat, textLine } from '../../lib/log';
import { loadConfig } from '../../lib/config';

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

test('text lines carry time, level, message and fields, not the shared node name, and quote values with spaces', () => {
  const line = textLine(
    {
      level: 'warn',
      message: 'cannot follow Docker',
      timestamp: '2026-12-03T08:15:14.523Z',
      node: 'h1',
      error: 'connect ENOENT /run/docker.sock',
      retryInMs: 812,
    },
    new Set(['node']),
  );
  assert.match(line, /^\d\d:\d\d:\d\d\.523 WARN {2}cannot follow Docker error="connect ENOENT \/run\/docker\.sock" retryInMs=812$/);
});

test('a text line shows a stack only under an error, never under a warning (an expected retry)', () => {
  const stack = 'Error: boom\n    at x (y.js:1:1)';
  assert.doesNotMatch(textLine({ level: 'warn', message: 'retrying', stack }), /at x/);
  const err = textLine({ level: 'error', message: 'unhandled rejection', stack });
  assert.equal(err.split('\n').length, 3);
  assert.match(err, /\n {4}Error: boom\n {8}at x \(y\.js:1:1\)$/);
});

test('a text logger writes one short line per entry', async () => {
  const log = createLogger('info', { node: 'h1' }, 'text');
  log.clear();
  const stream = new PassThrough();
  let out = '';
  stream.on('data', (b: Buffer) => (out += b.toString()));
  log.add(new winston.transports.Stream({ stream }));
  log.info('host registered', { name: 'h1', ipv4: '10.0.0.1' });
  await new Promise((r) => setImmediate(r));
  assert.match(out, /^\d\d:\d\d:\d\d\.\d{3} INFO {2}host registered name=h1 ipv4=10\.0\.0\.1\n$/);
});

test('the log format is text on a terminal and JSON otherwise unless CALICO_LOG_FORMAT says', () => {
  assert.equal(resolveLogFormat('auto', true), 'text');
  assert.equal(resolveLogFormat('auto', false), 'json');
  assert.equal(resolveLogFormat('json', true), 'json');
  assert.equal(resolveLogFormat('text', false), 'text');
  assert.equal(loadConfig({}).logFormat, 'auto');
  assert.equal(loadConfig({ CALICO_LOG_FORMAT: 'TEXT' }).logFormat, 'text');
  assert.throws(() => loadConfig({ CALICO_LOG_FORMAT: 'xml' }), /^BadRequestError: CALICO_LOG_FORMAT="xml" is not valid: use auto, text, json$/);
});
