/** Outgoing NAT rules from pools (nat/rules.ts): what is translated, what never is, per backend. */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { iptablesRules, natNeeded, natPlan, renderIptables, renderNft } from '../../nat/rules';

const pools = [
  { cidr: '10.65.0.0/16', natOutgoing: true },
  { cidr: '10.70.0.0/16' },
  { cidr: 'fd65::/64', natOutgoing: false },
  { cidr: 'fd66::/64', natOutgoing: true },
];

describe('outgoing NAT rules', () => {
  test('sources are the natOutgoing pools and excluded destinations are every pool of the family', () => {
    const plan = natPlan(pools);
    assert.deepEqual(plan.nat, { 4: ['10.65.0.0/16'], 6: ['fd66::/64'] });
    assert.deepEqual(plan.all, { 4: ['10.65.0.0/16', '10.70.0.0/16'], 6: ['fd65::/64', 'fd66::/64'] });
  });

  test('the plan is the same whatever order the pools are listed in', () => {
    assert.deepEqual(natPlan([...pools].reverse()), natPlan(pools));
    assert.equal(renderNft(natPlan([...pools].reverse())), renderNft(natPlan(pools)));
  });

  test('nftables masquerades pool sources to non-pool destinations in a table replaced whole', () => {
    const text = renderNft(natPlan(pools));
    assert.match(text, /^add table inet calico-nat\ndelete table inet calico-nat\ntable inet calico-nat \{/);
    assert.match(text, /set nat4 \{ type ipv4_addr; flags interval; elements = \{ 10\.65\.0\.0\/16 \}; \}/);
    assert.match(text, /set all6 \{ type ipv6_addr; flags interval; elements = \{ fd65::\/64, fd66::\/64 \}; \}/);
    assert.match(text, /type nat hook postrouting priority srcnat; policy accept;/);
    assert.match(text, /ip saddr @nat4 ip daddr != @all4 masquerade/);
    assert.match(text, /ip6 saddr @nat6 ip6 daddr != @all6 masquerade/);
  });

  test('with no natOutgoing pool nothing is rendered but the removal of our table', () => {
    const plan = natPlan([{ cidr: '10.70.0.0/16' }]);
    assert.equal(natNeeded(plan), false);
    assert.equal(renderNft(plan), 'add table inet calico-nat\ndelete table inet calico-nat\n');
    assert.deepEqual(iptablesRules(plan, 4), []);
  });

  test('a family without natOutgoing pools gets an empty set, never a missing one', () => {
    const text = renderNft(natPlan([{ cidr: '10.65.0.0/16', natOutgoing: true }]));
    assert.match(text, /set nat6 \{ type ipv6_addr; flags interval; \}/);
  });

  test('iptables returns early for every pool destination before masquerading the natOutgoing sources', () => {
    const plan = natPlan(pools);
    assert.deepEqual(iptablesRules(plan, 4), [
      '-A cali-nat-outgoing -d 10.65.0.0/16 -j RETURN',
      '-A cali-nat-outgoing -d 10.70.0.0/16 -j RETURN',
      '-A cali-nat-outgoing -s 10.65.0.0/16 -j MASQUERADE',
    ]);
    assert.equal(renderIptables(plan, 6).split('\n')[1], ':cali-nat-outgoing - [0:0]');
    assert.match(renderIptables(plan, 6), /-A cali-nat-outgoing -s fd66::\/64 -j MASQUERADE\nCOMMIT\n$/);
  });
});
