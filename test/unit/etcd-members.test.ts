import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemberSet, classifyFault } from '../../lib/datastore/etcd-members';
import { silentLogger } from '../../lib/log';

const urls = ['http://127.0.0.1:1', 'http://127.0.0.1:2', 'http://127.0.0.1:3'];
const set = () => new MemberSet(urls, (hosts) => ({ hosts }), silentLogger());

test('an election in progress is waited out, a member that cannot serve is left, a refused request is final, a refused user is a setting to fix', () => {
  assert.equal(classifyFault(new Error('14 UNAVAILABLE: etcdserver: leader changed')), 'cluster');
  assert.equal(classifyFault(new Error('etcdserver: request timed out')), 'cluster');
  assert.equal(classifyFault(new Error('14 UNAVAILABLE: No connection established')), 'member');
  assert.equal(classifyFault(new Error('14 UNAVAILABLE: etcdserver: no leader')), 'leaderless');
  assert.equal(classifyFault(new Error('4 DEADLINE_EXCEEDED: Deadline exceeded after 1.000s')), 'member');
  assert.equal(classifyFault(new Error('etcdserver: mvcc: required revision has been compacted')), 'final');
  assert.equal(classifyFault(new Error('etcdserver: permission denied')), 'config');
});

test('requests stay on the pinned member until it fails, then move to one not marked down and stay there', () => {
  const s = set();
  try {
    const first = s.current();
    assert.equal(s.pick(new Set()), first);
    let moved = 0;
    s.onSwitch((from) => {
      assert.equal(from, first);
      moved++;
    });
    s.failed(first, new Error('No connection established'));
    const second = s.current();
    assert.notEqual(second, first);
    assert.equal(moved, 1);
    // The failed member is not probed while another answers, even once its mark expires.
    first.downUntil = 0;
    assert.equal(s.pick(new Set()), second);
    s.ok(second);
    assert.equal(s.current(), second);
  } finally {
    s.close();
  }
});

test('with every member marked down a request still tries the one marked down least recently, and never one it already tried while others remain', () => {
  const s = set();
  try {
    const [a, b, c] = s.members;
    const now = Date.now();
    a.downUntil = now + 3000;
    b.downUntil = now + 1000;
    c.downUntil = now + 2000;
    assert.equal(s.pick(new Set()), b);
    assert.equal(s.pick(new Set([b])), c);
    assert.equal(s.pick(new Set([a, b, c])), b);
  } finally {
    s.close();
  }
});

test('during an election the members that answer "no leader" are tried again before one that cannot be reached', () => {
  const s = set();
  try {
    const [a, b, c] = s.members;
    s.failed(a, new Error('4 DEADLINE_EXCEEDED: Deadline exceeded after 1.000s'));
    for (let i = 0; i < 10; i++) {
      s.failed(b, new Error('14 UNAVAILABLE: etcdserver: no leader'));
      s.failed(c, new Error('14 UNAVAILABLE: etcdserver: no leader'));
    }
    assert.notEqual(s.pick(new Set([b, c])), undefined);
    assert.notEqual(s.pick(new Set()), a);
    assert.ok(b.downUntil - Date.now() < 1000 && c.downUntil - Date.now() < 1000, 'a "no leader" answer marked a member down for long');
  } finally {
    s.close();
  }
});
