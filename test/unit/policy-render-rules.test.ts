/** How renderPolicy (policy/render.ts) turns one rule into iptables matches, per family. */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import type { EndpointRecord } from '../../lib/datastore/records';
import type { Rule } from '../../policy/model';
import { type Rendered, renderPolicy } from '../../policy/render';

const ep = (id: string, host: string, v4: string, v6: string, labels: Record<string, string>): EndpointRecord => ({
  id,
  host,
  network: 'n1',
  ifName: `cali${id}`,
  mac: '02:42:ac:1f:00:01',
  ipv4: [`${v4}/32`],
  ipv6: [`${v6}/128`],
  labels,
  createdAt: '2024-01-01T00:00:00.000Z',
});
const endpoints = [
  ep('aaa', 'h1', '10.65.0.1', 'fd65::1', { role: 'db' }),
  ep('bbb', 'h1', '10.65.0.2', 'fd65::2', { role: 'web' }),
  ep('ccc', 'h2', '10.65.1.1', 'fd65::11', { role: 'web', env: 'prod' }),
];
const chainOf = (dir: 'i' | 'o') => `cal-p${dir}-${createHash('sha256').update('p').digest('hex').slice(0, 16)}`;

/** Renders one policy holding `rule` (ingress unless told) and returns its chain's rules per family. */
function render(rule: Rule, dir: 'ingress' | 'egress' = 'ingress'): { r: Rendered; 4: string[]; 6: string[] } {
  const r = renderPolicy({
    host: 'h1',
    endpoints,
    networks: [{ id: 'n1', host: 'h1', name: 'front', ipv4Pools: [], ipv6Pools: [], ipv6: true, options: {}, createdAt: '2024-01-01T00:00:00.000Z' }],
    policies: [{ name: 'p', order: 1, selector: 'all()', types: [dir], ingress: dir === 'ingress' ? [rule] : [], egress: dir === 'egress' ? [rule] : [] }],
    profiles: [],
    endpointToHost: 'drop',
  });
  const c = chainOf(dir === 'ingress' ? 'i' : 'o');
  const get = (f: 4 | 6) =>
    r.tables[f]
      .split('\n')
      .filter((l) => l.startsWith(`-A ${c} `))
      .map((l) => l.slice(c.length + 4));
  return { r, 4: get(4), 6: get(6) };
}
const members = (r: Rendered, name: string) => r.ipsets.find((s) => s.name === name)?.members;
const setNames = (line: string) => [...line.matchAll(/--match-set (\S+)/g)].map((m) => m[1]);
const ALLOW = ['-j MARK --set-xmark 0x10000/0x10000', '-m mark --mark 0x10000/0x10000 -j RETURN'];

describe('renderPolicy rules', () => {
  test('allow marks and returns, pass marks pass and returns, deny drops, log logs and goes on', () => {
    assert.deepEqual(render({ action: 'allow' })[4], ALLOW);
    assert.deepEqual(render({ action: 'pass' })[4], ['-j MARK --set-xmark 0x20000/0x20000', '-m mark --mark 0x20000/0x20000 -j RETURN']);
    assert.deepEqual(render({ action: 'deny' })[6], ['-j DROP']);
    assert.deepEqual(render({ action: 'log' })[4], ['-j LOG --log-prefix "calico p "']);
  });

  test('renders protocols by name, icmpv6 as ipv6-icmp, and numbers as they are', () => {
    for (const p of ['tcp', 'udp', 'sctp'] as const)
      for (const f of [4, 6] as const) assert.deepEqual(render({ action: 'deny', protocol: p })[f], [`-p ${p} -j DROP`]);
    assert.deepEqual(render({ action: 'deny', protocol: 47 })[4], ['-p 47 -j DROP']);
    assert.deepEqual(render({ action: 'deny', protocol: 47 })[6], ['-p 47 -j DROP']);
  });

  test('skips icmp rules for IPv6 and icmpv6 rules for IPv4', () => {
    const icmp = render({ action: 'allow', protocol: 'icmp' });
    assert.deepEqual(icmp[4], ['-p icmp -j MARK --set-xmark 0x10000/0x10000', ALLOW[1]]);
    assert.deepEqual(icmp[6], []);
    const icmp6 = render({ action: 'allow', protocol: 'icmpv6' });
    assert.deepEqual(icmp6[4], []);
    assert.deepEqual(icmp6[6], ['-p ipv6-icmp -j MARK --set-xmark 0x10000/0x10000', ALLOW[1]]);
  });

  test('renders ports and notPorts as multiport on the right side', () => {
    const { 4: v4, 6: v6 } = render({
      action: 'deny',
      protocol: 'tcp',
      source: { notPorts: [1024, '2000:3000'] },
      destination: { ports: [80, 443, '8000:8080'] },
    });
    assert.deepEqual(v4, ['-p tcp -m multiport ! --sports 1024,2000:3000 -m multiport --dports 80,443,8000:8080 -j DROP']);
    assert.deepEqual(v6, v4);
    assert.deepEqual(render({ action: 'deny', protocol: 'udp', source: { ports: [53] }, destination: { notPorts: [5353] } })[4], [
      '-p udp -m multiport --sports 53 -m multiport ! --dports 5353 -j DROP',
    ]);
  });

  test('matches selectors through ipsets of the addresses of every host', () => {
    const { r, 4: v4, 6: v6 } = render({ action: 'deny', source: { selector: "role == 'web'" }, destination: { notSelector: "env == 'prod'" } });
    assert.match(v4[0], /^-m set --match-set cal4s-[0-9a-f]{12} src -m set ! --match-set cal4s-[0-9a-f]{12} dst -j DROP$/);
    const [src4, dst4] = setNames(v4[0]);
    assert.deepEqual(members(r, src4), ['10.65.0.2', '10.65.1.1']);
    assert.deepEqual(members(r, dst4), ['10.65.1.1']);
    assert.deepEqual(members(r, setNames(v6[0])[0]), ['fd65::11', 'fd65::2']);
    assert.equal(r.ipsets.find((s) => s.name === src4)?.type, 'hash:ip');
  });

  test('shares one set between equal selectors however they are written', () => {
    const { r, 4: v4 } = render({ action: 'deny', source: { selector: "role=='web'" }, destination: { selector: 'role == "web"' } });
    const [a, b] = setNames(v4[0]);
    assert.equal(a, b);
    assert.equal(r.ipsets.filter((s) => s.name === a).length, 1);
  });

  test('matches a network by its name', () => {
    const { r, 4: v4 } = render({ action: 'allow', source: { network: 'front' } });
    assert.deepEqual(members(r, setNames(v4[0])[0]), ['10.65.0.1', '10.65.0.2']);
    const both = render({ action: 'allow', source: { network: 'front', selector: "role == 'db'" } });
    assert.equal(setNames(both[4][0]).length, 2);
  });

  test('matches nets of its own family through a hash:net set', () => {
    const { r, 4: v4, 6: v6 } = render({ action: 'deny', destination: { nets: ['10.0.0.0/8', 'fd00::/8', '192.168.1.0/24'] } });
    assert.match(v4[0], /^-m set --match-set cal4n-[0-9a-f]{12} dst -j DROP$/);
    assert.deepEqual(members(r, setNames(v4[0])[0]), ['10.0.0.0/8', '192.168.1.0/24']);
    assert.deepEqual(members(r, setNames(v6[0])[0]), ['fd00::/8']);
    assert.equal(r.ipsets.find((s) => s.name === setNames(v4[0])[0])?.type, 'hash:net');
  });

  test('drops a rule from the family none of its nets belongs to', () => {
    const only4 = render({ action: 'allow', source: { nets: ['10.0.0.0/8'] } });
    assert.equal(only4[4].length, 2);
    assert.deepEqual(only4[6], []);
    const only6 = render({ action: 'deny', destination: { nets: ['fd00::/8'] } });
    assert.deepEqual(only6[4], []);
    assert.equal(only6[6].length, 1);
  });

  test('leaves out notNets of the other family and keeps the rest of the rule', () => {
    const { r, 4: v4, 6: v6 } = render({ action: 'deny', protocol: 'tcp', source: { notNets: ['10.0.0.0/8'] } });
    assert.match(v4[0], /^-p tcp -m set ! --match-set cal4n-\S+ src -j DROP$/);
    assert.deepEqual(members(r, setNames(v4[0])[0]), ['10.0.0.0/8']);
    assert.deepEqual(v6, ['-p tcp -j DROP']);
  });

  test('stands the two halves of the address space in for a /0, which ipset cannot hold', () => {
    const { r, 4: v4, 6: v6 } = render({ action: 'allow', destination: { nets: ['0.0.0.0/0', '::/0'] } }, 'egress');
    assert.deepEqual(members(r, setNames(v4[0])[0]), ['0.0.0.0/1', '128.0.0.0/1']);
    assert.deepEqual(members(r, setNames(v6[0])[0]), ['8000::/1', '::/1']);
    for (const s of r.ipsets) for (const m of s.members) assert.doesNotMatch(m, /\/0$/);
  });

  test('puts the matches in one order: protocol, source, destination', () => {
    const { 4: v4 } = render({
      action: 'deny',
      protocol: 'tcp',
      source: { selector: 'has(role)', nets: ['10.0.0.0/8'], ports: [1] },
      destination: { notSelector: 'has(env)', notNets: ['10.9.0.0/16'], notPorts: [2] },
    });
    assert.match(
      v4[0],
      /^-p tcp -m set --match-set \S+ src -m set --match-set \S+ src -m multiport --sports 1 -m set ! --match-set \S+ dst -m set ! --match-set \S+ dst -m multiport ! --dports 2 -j DROP$/,
    );
  });

  test('applies an egress rule in the from-workload chain', () => {
    const { r } = render({ action: 'deny' }, 'egress');
    assert.match(r.tables[4], new RegExp(`-A cal-fw-caliaaa -m mark --mark 0x0/0x20000 -j ${chainOf('o')}\n`));
    assert.doesNotMatch(r.tables[4], new RegExp(`-A cal-tw-caliaaa .*${chainOf('o')}`));
  });

  test('keeps the log prefix within the 29 characters iptables allows', () => {
    const r = renderPolicy({
      host: 'h1',
      endpoints,
      networks: [],
      policies: [{ name: 'a-very-long-policy-name-that-goes-on', order: 1, selector: 'all()', types: ['ingress'], ingress: [{ action: 'log' }], egress: [] }],
      profiles: [],
      endpointToHost: 'drop',
    });
    const prefix = /--log-prefix "([^"]*)"/.exec(r.tables[4])![1];
    assert.equal(prefix, 'calico a-very-long-policy-n ');
    assert.ok(prefix.length <= 29);
  });
});
