/** The iptables backend's rule text (firewall/iptables/compile.ts): the parts the kernel tests do not spell out. */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { RuleSpec } from '../../firewall/desired';
import * as C from '../../firewall/iptables/compile';

const none = { sets: [], notSets: [] };
const R = (r: Partial<RuleSpec>): RuleSpec => ({ action: 'deny', src: none, dst: none, logPrefix: 'calico p', ...r });

describe('iptables compile: rules', () => {
  test('ICMP type and code use the icmp or icmp6 match of the rule’s protocol, once per test; notProtocol is a negated -p', () => {
    assert.deepEqual(C.ruleLines(R({ protocol: 1, icmp: { type: 8 } })), ['-p icmp -m icmp --icmp-type 8 -j DROP']);
    assert.deepEqual(C.ruleLines(R({ protocol: 1, icmp: { type: 3 }, notICMP: { type: 3, code: 1 } })), [
      '-p icmp -m icmp --icmp-type 3 -m icmp ! --icmp-type 3/1 -j DROP',
    ]);
    assert.deepEqual(C.ruleLines(R({ protocol: 58, notICMP: { type: 128, code: 0 } })), ['-p ipv6-icmp -m icmp6 ! --icmpv6-type 128/0 -j DROP']);
    assert.deepEqual(C.ruleLines(R({ notProtocol: 17, src: { ...none, sets: ['cal4s-x'] } })), ['! -p udp -m set --match-set cal4s-x src -j DROP']);
    assert.deepEqual(C.ruleLines(R({ notProtocol: 47 })), ['! -p 47 -j DROP']);
  });

  test('selector and net sets are hash:net, where a /0 is its two halves (whole sets and element changes alike)', () => {
    assert.equal(C.setType({ kind: 'net' }), 'hash:net');
    assert.deepEqual(C.setMembers({ name: 'cal4s-x', family: 4, kind: 'net', members: new Set(['10.0.0.1', '0.0.0.0/0']) }), [
      '0.0.0.0/1',
      '10.0.0.1',
      '128.0.0.0/1',
    ]);
    assert.deepEqual(C.memberEntries({ kind: 'net', family: 6 }, ['::/0']), ['::/1', '8000::/1']);
    assert.deepEqual(C.memberEntries({ kind: 'addr', family: 4 }, ['10.0.0.1']), ['10.0.0.1']);
  });
});
