/** Error classes and their mapping to plugin replies (lib/errors.ts). */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  BadRequestError,
  CalicoError,
  ConfigError,
  ConflictError,
  InternalError,
  NotFoundError,
  UnavailableError,
  classify,
  errorMessage,
  isRetryable,
  markRetryable,
  toCliExit,
  toPluginReply,
} from '../../lib/errors';

describe('toCliExit', () => {
  test('exits 1 when the request or a setting must change, 2 when trying again may work', () => {
    assert.deepEqual(toCliExit(new ConfigError('check ETCD_PASSWORD')), { status: 1, message: 'check ETCD_PASSWORD' });
    assert.equal(toCliExit(new BadRequestError('x')).status, 1);
    assert.equal(toCliExit(new UnavailableError('etcd is down')).status, 2);
    assert.deepEqual(toCliExit(new Error('boom')), { status: 2, message: 'internal error: boom' });
  });

  test('a configuration error is not retryable', () => {
    assert.equal(isRetryable(new ConfigError('x')), false);
  });
});

describe('toPluginReply', () => {
  const cases: Array<[string, CalicoError, number]> = [
    ['bad-request', new BadRequestError('field "Pool" is wrong'), 400],
    ['not-found', new NotFoundError('no such network'), 400],
    ['conflict', new ConflictError('address in use'), 400],
    ['unavailable', new UnavailableError('etcd is down'), 500],
    ['config', new ConfigError('check ETCD_PASSWORD'), 500],
    ['internal', new InternalError('oops'), 500],
  ];
  for (const [kind, err, status] of cases) {
    test(`maps ${kind} to ${status} with Err and Error carrying the message`, () => {
      assert.equal(err.kind, kind);
      assert.deepEqual(toPluginReply(err), { status, body: { Err: err.message, Error: err.message } });
    });
  }

  test('turns a plain Error into an internal error (500) keeping its message', () => {
    const r = toPluginReply(new TypeError('x is undefined'));
    assert.equal(r.status, 500);
    assert.equal(r.body.Err, 'internal error: x is undefined');
    assert.equal(r.body.Error, r.body.Err);
  });

  test('turns thrown non-errors into internal errors', () => {
    for (const v of ['a string', 42, null, undefined, { weird: true }]) {
      const r = toPluginReply(v);
      assert.equal(r.status, 500);
      assert.equal(r.body.Err, `internal error: ${String(v as string)}`);
    }
  });
});

describe('error classes', () => {
  test('are Errors whose name is the class name', () => {
    for (const E of [BadRequestError, NotFoundError, ConflictError, UnavailableError, InternalError]) {
      const e = new E('m');
      assert.ok(e instanceof Error);
      assert.ok(e instanceof CalicoError);
      assert.equal(e.name, E.name);
      assert.equal(e.message, 'm');
      assert.match(String(e), new RegExp(`^${E.name}: m$`));
    }
  });

  test('keep a cause', () => {
    const cause = new Error('root');
    assert.equal(new UnavailableError('wrapped', { cause }).cause, cause);
  });

  test('classify keeps CalicoErrors and wraps everything else with the cause', () => {
    const known = new ConflictError('c');
    assert.equal(classify(known), known);
    const plain = new Error('boom');
    const wrapped = classify(plain);
    assert.ok(wrapped instanceof InternalError);
    assert.equal(wrapped.cause, plain);
  });

  test('errorMessage reads Error messages and stringifies the rest', () => {
    assert.equal(errorMessage(new Error('m')), 'm');
    assert.equal(errorMessage('s'), 's');
    assert.equal(errorMessage(7), '7');
  });
});

describe('isRetryable', () => {
  test('is true for UnavailableError', () => {
    assert.equal(isRetryable(new UnavailableError('etcd is down')), true);
  });

  test('is false for the other classes and for non-objects', () => {
    for (const e of [
      new BadRequestError('x'),
      new NotFoundError('x'),
      new ConflictError('x'),
      new InternalError('x'),
      new Error('x'),
      'x',
      null,
      undefined,
      3,
    ]) {
      assert.equal(isRetryable(e), false);
    }
  });

  test('markRetryable makes any error retryable without changing its class', () => {
    const e = markRetryable(new Error('ECONNRESET'));
    assert.equal(isRetryable(e), true);
    assert.equal(toPluginReply(e).status, 500);
  });
});
