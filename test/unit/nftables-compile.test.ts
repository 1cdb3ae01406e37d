import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { PolicySpec, RuleSpec } from '../../firewall/desired';
import * as C from '../../firewall/nftables/compile';

const none = { sets: [], notSets: [] };
const R = (r: Partial<RuleSpec>): RuleSpec => ({ action: 'allow', src: none, dst: none, logPrefix: 'calico p', ...r });
const allowPort = (set: string, lo: number, hi = lo) => R({ protocol: 6, src: { ...none, sets: [set] }, dst: { ...none, ports: [[lo, hi]] } });

describe('nftables compile: rules', () => {
  test('every part of a rule becomes a match, in the family of the list', () => {
    const r = R({
      action: 'deny',
      protocol: 17,
      src: { sets: ['cal6s-a', 'cal6s-b'], notSets: ['cal6s-c'], nets: 'cal6n-d', notNets: 'cal6n-e', ports: [[53, 53]] },
      dst: { ...none, ports: [[1000, 2000]], notPorts: [[1500, 1500]] },
    });
    assert.equal(
      C.ruleText(r, 6),
      'meta l4proto 17 ip6 saddr @cal6s-a ip6 saddr @cal6s-b ip6 saddr != @cal6s-c ip6 saddr @cal6n-d ip6 saddr != @cal6n-e th sport 53 th dport 1000-2000 th dport != 1500 drop',
    );
  });

  test('ICMP type and code compare the transport header after the protocol, notICMP as one negated comparison; notProtocol negates the protocol', () => {
    assert.equal(C.ruleText(R({ protocol: 1, icmp: { type: 8 } }), 4), 'meta l4proto 1 @th,0,8 8 accept');
    assert.equal(C.ruleText(R({ protocol: 1, icmp: { type: 3, code: 1 } }), 4), `meta l4proto 1 @th,0,16 ${3 * 256 + 1} accept`);
    assert.equal(C.ruleText(R({ protocol: 58, notICMP: { type: 128, code: 0 } }), 6), `meta l4proto 58 @th,0,16 != ${128 * 256} accept`);
    assert.equal(C.ruleText(R({ protocol: 58, icmp: { type: 128 }, notICMP: { type: 129 } }), 6), 'meta l4proto 58 @th,0,8 128 @th,0,8 != 129 accept');
    assert.equal(C.ruleText(R({ action: 'deny', notProtocol: 6 }), 4), 'meta l4proto != 6 drop');
  });

  test('allow accepts, pass returns to the tier, log logs with a prefix stripped of quotes and goes on', () => {
    assert.equal(C.ruleText(R({}), 4), 'accept');
    assert.equal(C.ruleText(R({ action: 'pass' }), 4), 'return');
    assert.equal(C.ruleText(R({ action: 'log', logPrefix: 'calico "x"; flush ruleset' }), 4), 'log prefix "calico _x__ flush ruleset "');
  });

  test('names and addresses that are not plain are refused rather than written into nft text', () => {
    assert.throws(() => C.ruleText(R({ src: { ...none, sets: ['x }; flush ruleset; {'] } }), 4), /not a plain name/);
    assert.throws(() => C.element('10.0.0.1 }', 4), /not an IPv4/);
    assert.throws(() => C.element('fd00::1', 4), /not an IPv4/);
    assert.equal(C.element('fd00::/8', 6), 'fd00::/8');
    assert.throws(() => C.endpointElements({ ifName: 'eth0', addrs: { 4: [], 6: [] }, ingress: { profile: 'p' }, egress: { profile: 'p' } }), /not a cali/);
  });
});

describe('nftables compile: runs of allow rules', () => {
  test('a run of allow rules with ports becomes one port lookup into chains holding only the rules of each piece', () => {
    const rules = [allowPort('cal4s-a', 80), allowPort('cal4s-b', 81), allowPort('cal4s-c', 80, 90), allowPort('cal4s-d', 100)];
    const chains = C.compileRules('g4-x', rules, 4, ['drop']);
    const main = chains.get('g4-x')!;
    assert.equal(main.length, 2);
    assert.equal(main[1], 'drop');
    const m = /^meta l4proto 6 th dport vmap \{ (.*) \}$/.exec(main[0]);
    assert.ok(m, main[0]);
    const entries = m[1].split(', ').map((e) => e.split(' : jump '));
    const pieces = Object.fromEntries(entries);
    assert.deepEqual(
      entries.map(([k]) => k),
      ['80', '81', '82-90', '100'],
    );
    assert.deepEqual(chains.get(pieces['80']), ['ip saddr @cal4s-a accept', 'ip saddr @cal4s-c accept']);
    assert.deepEqual(chains.get(pieces['81']), ['ip saddr @cal4s-b accept', 'ip saddr @cal4s-c accept']);
    assert.deepEqual(chains.get(pieces['82-90']), ['ip saddr @cal4s-c accept']);
    assert.deepEqual(chains.get(pieces['100']), ['ip saddr @cal4s-d accept']);
  });

  test('1,001 rules with a port each are one lookup and one rule on the packet path', () => {
    const rules = Array.from({ length: 1001 }, (_, k) => allowPort(`cal4s-r${k}`, 1000 + k));
    const chains = C.compileRules('g4-big', rules, 4, ['drop']);
    assert.equal(chains.get('g4-big')!.length, 2);
    assert.equal(chains.size, 1002);
    for (const [name, rs] of chains) if (name !== 'g4-big') assert.equal(rs.length, 1);
  });

  test('a run mixing protocols and allow, deny and log is looked up by protocol, then port, each piece keeping the rules in order', () => {
    const rules = [
      R({ action: 'deny', protocol: 6, src: { ...none, sets: ['cal4s-a'] }, dst: { ...none, ports: [[80, 80]] } }),
      allowPort('cal4s-b', 80, 90),
      R({ action: 'deny', protocol: 17, dst: { ...none, ports: [[80, 80]] } }),
      R({ action: 'log', protocol: 6, dst: { ...none, ports: [[85, 85]] } }),
      allowPort('cal4s-c', 85),
    ];
    const chains = C.compileRules('g4-m', rules, 4, ['drop']);
    const main = chains.get('g4-m')!;
    assert.equal(main.length, 2);
    const m = /^meta l4proto vmap \{ 6 : jump (\S+), 17 : jump (\S+) \}$/.exec(main[0]);
    assert.ok(m, main[0]);
    const piece = (chain: string, port: string) => {
      const e = /vmap \{ (.*) \}$/
        .exec(chains.get(chain)![0])![1]
        .split(', ')
        .map((x) => x.split(' : jump '));
      return chains.get(Object.fromEntries(e)[port])!;
    };
    assert.deepEqual(piece(m[1], '80'), ['ip saddr @cal4s-a drop', 'ip saddr @cal4s-b accept']);
    assert.deepEqual(piece(m[1], '85'), ['ip saddr @cal4s-b accept', 'log prefix "calico p "', 'ip saddr @cal4s-c accept']);
    assert.deepEqual(piece(m[2], '80'), ['drop']);
  });

  test('a pass rule ends a run (its return must leave the group chain, not a lookup chain)', () => {
    const rules = [1, 2, 3, 4, 5].map((k) => allowPort('cal4s-a', k));
    rules.splice(2, 0, R({ action: 'pass', protocol: 6, dst: { ...none, ports: [[9, 9]] } }));
    const main = C.compileRules('g4-p', rules, 4).get('g4-p')!;
    assert.ok(main.includes('meta l4proto 6 th dport 9 return'), main.join('\n'));
  });

  test('short runs, other actions and rules without ports stay in order, one rule each', () => {
    const rules = [
      allowPort('cal4s-a', 80),
      allowPort('cal4s-b', 81),
      R({ action: 'deny', protocol: 6 }),
      ...[1, 2, 3, 4].map((k) => allowPort('cal4s-c', k)),
      R({ action: 'log' }),
      R({ protocol: 6, src: { ...none, sets: ['cal4s-d'] } }),
      ...[1, 2, 3, 4].map((k) => R({ protocol: 17, dst: { ...none, ports: [[k, k]] } })),
    ];
    const main = C.compileRules('pr4-i-x', rules, 4).get('pr4-i-x')!;
    assert.deepEqual(main.slice(0, 3), [
      'meta l4proto 6 ip saddr @cal4s-a th dport 80 accept',
      'meta l4proto 6 ip saddr @cal4s-b th dport 81 accept',
      'meta l4proto 6 drop',
    ]);
    assert.match(main[3], /^meta l4proto 6 th dport vmap \{ 1-4 : jump pr4-i-x-b0 \}$/);
    assert.deepEqual(main.slice(4, 6), ['log prefix "calico p "', 'meta l4proto 6 ip saddr @cal4s-d accept']);
    assert.match(main[6], /^meta l4proto 17 th dport vmap \{ 1-4 : jump pr4-i-x-b1 \}$/);
    assert.equal(main.length, 7);
  });
});

describe('nftables compile: groups, tiers and endpoints', () => {
  const p = (name: string, rules: RuleSpec[]): PolicySpec => ({ name, ingress: { 4: rules, 6: [] }, egress: { 4: [], 6: [] } });

  test('a group holds its policies rules in order per family and ends in the default deny', () => {
    const policies = new Map([
      ['one', p('one', [R({ action: 'pass', src: { ...none, sets: ['cal4s-a'] } })])],
      ['two', p('two', [R({ action: 'deny' })])],
    ]);
    const g = { id: 'i-0123456789abcdef', dir: 'ingress' as const, policies: ['one', 'two'] };
    assert.deepEqual(C.compileGroup(g, policies, 4).get('g4-i-0123456789abcdef'), ['ip saddr @cal4s-a return', 'drop', 'drop']);
    assert.deepEqual(C.compileGroup(g, policies, 6).get('g6-i-0123456789abcdef'), ['drop']);
    assert.throws(() => C.compileGroup({ ...g, policies: ['three'] }, policies, 4), /names policy three/);
  });

  test('a tier jumps to its group, then (ingress) admits published-port connections, then its profile, per family, then drops; endpoints with the same tier share it', () => {
    const key = C.tierKey('ingress', { group: 'i-1', profile: 'net' });
    assert.deepEqual(C.compileTier(key), [
      'meta nfproto vmap { ipv4 : jump g4-i-1, ipv6 : jump g6-i-1 }',
      'ct status dnat accept',
      `meta nfproto vmap { ipv4 : jump ${C.profileChain('net', 'ingress', 4)}, ipv6 : jump ${C.profileChain('net', 'ingress', 6)} }`,
      'drop',
    ]);
    assert.deepEqual(C.compileTier(C.tierKey('egress', { profile: 'net' })), [
      `meta nfproto vmap { ipv4 : jump ${C.profileChain('net', 'egress', 4)}, ipv6 : jump ${C.profileChain('net', 'egress', 6)} }`,
      'drop',
    ]);
    const e = (ifName: string) => ({
      ifName,
      addrs: { 4: ['10.0.0.1'], 6: ['fd00::1', 'fd00::2'] },
      ingress: { group: 'i-1', profile: 'net' },
      egress: { profile: 'net' },
    });
    const x = C.endpointElements(e('cali1'));
    assert.equal(x.to.split(' : ')[1], C.endpointElements(e('cali2')).to.split(' : ')[1]);
    assert.deepEqual(x.own, { 4: ['"cali1" . 10.0.0.1'], 6: ['"cali1" . fd00::1', '"cali1" . fd00::2'] });
    assert.equal(x.from, `"cali1" : goto ${C.tierChain(C.tierKey('egress', { profile: 'net' }))}`);
  });

  test('the base drops unknown cali interfaces and spoofed sources, and to the host follows endpointToHost', () => {
    const { chains } = C.compileBase('accept');
    assert.deepEqual(chains.get(C.FROM_WL)!.slice(-2), [`iifname vmap @${C.FROM_MAP}`, 'drop']);
    assert.deepEqual(chains.get(C.TO_WL), [`oifname vmap @${C.TO_MAP}`, 'drop']);
    assert.equal(chains.get(C.TO_HOST)!.at(-1), 'accept');
    assert.equal(C.compileBase('drop').chains.get(C.TO_HOST)!.at(-1), 'drop');
    assert.ok(chains.get(C.TO_HOST)!.includes(`iifname . ip saddr != @${C.OWN[4]} drop`));
  });
});
