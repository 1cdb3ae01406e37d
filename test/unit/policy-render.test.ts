/** The firewall renderer (policy/render.ts): chain layout, dispatch, ordering, profiles and sets. */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import type { EndpointRecord, NetworkRecord } from '../../lib/datastore/records';
import type { PolicyRecord } from '../../policy/model';
import { defaultProfile } from '../../policy/profiles';
import { type PolicyView, type Rendered, renderPolicy } from '../../policy/render';

const ep = (
  id: string,
  host: string,
  network: string,
  v4: string[],
  v6: string[] = [],
  labels: Record<string, string> = {},
  sandbox?: string,
): EndpointRecord => ({
  id,
  host,
  network,
  ifName: `cali${id}`,
  mac: '02:42:ac:1f:00:01',
  ipv4: v4.map((a) => `${a}/32`),
  ipv6: v6.map((a) => `${a}/128`),
  labels,
  createdAt: '2024-01-01T00:00:00.000Z',
  ...(sandbox ? { sandbox } : {}),
});
const net = (host: string, id: string, name?: string, internal = false): NetworkRecord => ({
  id,
  host,
  ...(name ? { name } : {}),
  ipv4Pools: [],
  ipv6Pools: [],
  ipv6: true,
  options: {},
  internal,
  createdAt: '2024-01-01T00:00:00.000Z',
});
const pol = (name: string, order: number, selector: string, extra: Partial<PolicyRecord> = {}): PolicyRecord => ({
  name,
  order,
  selector,
  types: ['ingress'],
  ingress: [{ action: 'allow' }],
  egress: [],
  ...extra,
});
const hash = (s: string, n: number) => createHash('sha256').update(s).digest('hex').slice(0, n);
const pchain = (name: string, dir: 'i' | 'o') => `cal-p${dir}-${hash(name, 16)}`;
const prchain = (name: string, dir: 'i' | 'o') => `cal-pr${dir}-${hash(name, 15)}`;

/** The rules of one chain, without the `-A <chain> ` head. */
const rules = (r: Rendered, f: 4 | 6, chain: string) =>
  r.tables[f]
    .split('\n')
    .filter((l) => l.startsWith(`-A ${chain} `))
    .map((l) => l.slice(`-A ${chain} `.length));
/** The members of the set a rule of `chain` matches (the first rule naming a set). */
const setOf = (r: Rendered, f: 4 | 6, chain: string, n = 0) => {
  const name = rules(r, f, chain).flatMap((l) => [...l.matchAll(/--match-set (\S+)/g)].map((m) => m[1]))[n];
  const s = r.ipsets.find((x) => x.name === name);
  assert.ok(s, `no set ${name} in ${chain}`);
  return s.members;
};

const ACCEPTED = '-m mark --mark 0x10000/0x10000 -j RETURN';
const DEFAULT_DENY = '-m mark --mark 0x0/0x20000 -j DROP';

/** h1 runs a (db) and b (web) on "front" and c on internal "back"; h2 runs d on "front" under another ID. */
const view = (extra: Partial<PolicyView> = {}): PolicyView => ({
  host: 'h1',
  endpoints: [
    ep('aaa', 'h1', 'n1', ['10.65.0.1'], ['fd65::1'], { role: 'db' }),
    ep('bbb', 'h1', 'n1', ['10.65.0.2'], [], { role: 'web' }),
    ep('ccc', 'h1', 'n2', ['10.65.0.3'], [], { role: 'db' }),
    ep('ddd', 'h2', 'n9', ['10.65.1.1'], ['fd65::11'], { role: 'web' }),
  ],
  networks: [net('h1', 'n1', 'front'), net('h1', 'n2', 'back', true), net('h2', 'n9', 'front')],
  policies: [],
  profiles: [],
  endpointToHost: 'drop',
  ...extra,
});

describe('renderPolicy layout', () => {
  test('declares every chain it fills, all with the cal- prefix, in a *filter table ending in COMMIT', () => {
    const r = renderPolicy(view({ policies: [pol('p', 1, 'all()')] }));
    for (const f of [4, 6] as const) {
      const lines = r.tables[f].split('\n');
      assert.equal(lines[0], '*filter');
      assert.deepEqual(lines.slice(-2), ['COMMIT', '']);
      const declared = lines.filter((l) => l.startsWith(':')).map((l) => l.slice(1).split(' ')[0]);
      assert.deepEqual(declared, r.chains[f]);
      for (const c of declared) assert.match(c, /^cal-/);
      assert.ok(
        declared.every((c) => c.length <= 28),
        'chain names fit iptables',
      );
      const filled = new Set(lines.filter((l) => l.startsWith('-A ')).map((l) => l.split(' ')[1]));
      for (const c of filled) assert.ok(declared.includes(c), `${c} is filled but not declared`);
      assert.ok(r.chains[f].includes(pchain('p', 'i')) && r.chains[f].includes(prchain('front', 'i')) && r.chains[f].includes(prchain('back', 'o')));
    }
  });

  test('cal-FORWARD clears the marks, dispatches workload traffic and accepts what was allowed', () => {
    const r = renderPolicy(view());
    for (const f of [4, 6] as const)
      assert.deepEqual(rules(r, f, 'cal-FORWARD'), [
        '-j MARK --set-xmark 0x0/0x30000',
        '-i cali+ -j cal-from-wl',
        '-o cali+ -j cal-to-wl',
        '-m mark --mark 0x10000/0x10000 -j ACCEPT',
      ]);
  });

  test('gives per-endpoint chains only to the endpoints of this host, in interface order', () => {
    const r = renderPolicy(view());
    for (const f of [4, 6] as const) {
      assert.deepEqual(rules(r, f, 'cal-from-wl'), ['-i caliaaa -g cal-fw-caliaaa', '-i calibbb -g cal-fw-calibbb', '-i caliccc -g cal-fw-caliccc', '-j DROP']);
      assert.deepEqual(rules(r, f, 'cal-to-wl'), ['-o caliaaa -g cal-tw-caliaaa', '-o calibbb -g cal-tw-calibbb', '-o caliccc -g cal-tw-caliccc', '-j DROP']);
      assert.doesNotMatch(r.tables[f], /calddd/);
    }
    // The remote endpoint is still a member of its network's set.
    assert.ok(r.ipsets.some((s) => s.members.includes('10.65.1.1')));
    assert.ok(r.ipsets.some((s) => s.members.includes('fd65::11')));
  });

  test('accepts established and drops invalid first, then checks the source address', () => {
    const r = renderPolicy(view());
    for (const c of ['cal-fw-caliaaa', 'cal-tw-caliaaa'])
      assert.deepEqual(rules(r, 4, c).slice(0, 2), ['-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT', '-m conntrack --ctstate INVALID -j DROP']);
    assert.equal(rules(r, 4, 'cal-fw-caliaaa')[2], '! -s 10.65.0.1 -j DROP');
    assert.equal(rules(r, 6, 'cal-fw-caliaaa')[2], '! -s fd65::1 -j DROP');
    assert.ok(!rules(r, 4, 'cal-tw-caliaaa').some((l) => l.includes(' -s ')), 'no anti-spoof rule on the way in');
    // No IPv6 address: nothing it sends over IPv6 is genuine.
    assert.equal(rules(r, 6, 'cal-fw-calibbb')[2], '-j DROP');
  });

  test('lets a container with several endpoints send from any of its addresses', () => {
    const eps = [ep('aaa', 'h1', 'n1', ['10.65.0.1'], [], {}, '/run/netns/x'), ep('bbb', 'h1', 'n2', ['10.65.0.2'], [], {}, '/run/netns/x')];
    const r = renderPolicy(view({ endpoints: eps }));
    for (const c of ['cal-fw-caliaaa', 'cal-fw-calibbb']) {
      assert.match(rules(r, 4, c)[2], /^-m set ! --match-set cal4n-[0-9a-f]{12} src -j DROP$/);
      assert.deepEqual(setOf(r, 4, c), ['10.65.0.1/32', '10.65.0.2/32']);
    }
  });

  test('jumps to the policies selecting an endpoint in order, then name, before its profile', () => {
    const policies = [
      pol('zeta', 5, 'all()'),
      pol('beta', 10, "role == 'db'"),
      pol('alpha', 10, 'all()'),
      pol('first', -1, "role == 'db'"),
      pol('web', 1, "role == 'web'"),
    ];
    const r = renderPolicy(view({ policies }));
    const jumps = (c: string) =>
      rules(r, 4, c)
        .filter((l) => / -j cal-p[io]-/.test(l))
        .map((l) => l.split(' -j ')[1]);
    assert.deepEqual(
      jumps('cal-tw-caliaaa'),
      ['first', 'zeta', 'alpha', 'beta'].map((n) => pchain(n, 'i')),
    );
    assert.deepEqual(
      jumps('cal-tw-calibbb'),
      ['web', 'zeta', 'alpha'].map((n) => pchain(n, 'i')),
    );
    const tw = rules(r, 4, 'cal-tw-caliaaa');
    assert.deepEqual(tw.slice(2), [
      '-j MARK --set-xmark 0x0/0x30000',
      ...['first', 'zeta', 'alpha', 'beta'].flatMap((n) => [`-m mark --mark 0x0/0x20000 -j ${pchain(n, 'i')}`, ACCEPTED]),
      DEFAULT_DENY,
      `-j ${prchain('front', 'i')}`,
      ACCEPTED,
      '-j DROP',
    ]);
  });

  test('sends an endpoint no policy selects straight to its profile', () => {
    const r = renderPolicy(view({ policies: [pol('db-only', 1, "role == 'db'")] }));
    assert.deepEqual(rules(r, 4, 'cal-tw-calibbb').slice(2), ['-j MARK --set-xmark 0x0/0x30000', `-j ${prchain('front', 'i')}`, ACCEPTED, '-j DROP']);
    assert.ok(!rules(r, 4, 'cal-tw-calibbb').includes(DEFAULT_DENY));
    assert.ok(rules(r, 4, 'cal-tw-caliaaa').includes(DEFAULT_DENY));
  });

  test('applies a policy only in the directions of its types', () => {
    const r = renderPolicy(view({ policies: [pol('out', 1, "role == 'db'", { types: ['egress'], ingress: [], egress: [{ action: 'deny' }] })] }));
    assert.ok(rules(r, 4, 'cal-fw-caliaaa').includes(`-m mark --mark 0x0/0x20000 -j ${pchain('out', 'o')}`));
    assert.ok(rules(r, 4, 'cal-fw-caliaaa').includes(DEFAULT_DENY));
    assert.ok(!rules(r, 4, 'cal-tw-caliaaa').includes(DEFAULT_DENY));
    assert.deepEqual(rules(r, 4, pchain('out', 'o')), ['-j DROP']);
    assert.ok(!r.chains[4].includes(pchain('out', 'i')));
  });

  test('selects endpoints by their network name through the calico/network label', () => {
    const r = renderPolicy(view({ policies: [pol('front-only', 1, "calico/network == 'front'")] }));
    assert.ok(rules(r, 4, 'cal-tw-calibbb').includes(DEFAULT_DENY));
    assert.ok(!rules(r, 4, 'cal-tw-caliccc').includes(DEFAULT_DENY));
  });
});

describe('renderPolicy profiles', () => {
  test("lets in every endpoint of the network's name, on every host, using the learned name", () => {
    const r = renderPolicy(view());
    assert.match(rules(r, 4, prchain('front', 'i'))[0], /^-m set --match-set cal4s-[0-9a-f]{12} src -j MARK --set-xmark 0x10000\/0x10000$/);
    assert.equal(rules(r, 4, prchain('front', 'i'))[1], ACCEPTED);
    assert.deepEqual(setOf(r, 4, prchain('front', 'i')), ['10.65.0.1', '10.65.0.2', '10.65.1.1']);
    assert.deepEqual(setOf(r, 6, prchain('front', 'i')), ['fd65::1', 'fd65::11']);
    assert.deepEqual(setOf(r, 4, prchain('back', 'i')), ['10.65.0.3']);
    assert.equal(rules(r, 4, 'cal-fw-caliccc').at(-3), `-j ${prchain('back', 'o')}`);
  });

  test('names the profile after the network ID while its name is not learned', () => {
    const v = view();
    const r = renderPolicy({ ...v, networks: v.networks.filter((n) => n.host !== 'h2').map((n) => (n.id === 'n1' ? { ...n, name: undefined } : n)) });
    assert.ok(r.chains[4].includes(prchain('n1', 'i')));
    assert.ok(!r.chains[4].includes(prchain('front', 'i')));
    // The remote endpoint's network record is missing: it is in no local profile's set.
    assert.deepEqual(setOf(r, 4, prchain('n1', 'i')), ['10.65.0.1', '10.65.0.2']);
  });

  test('lets an internal network out only to itself, and any other anywhere', () => {
    const r = renderPolicy(view());
    assert.deepEqual(rules(r, 4, prchain('front', 'o')), ['-j MARK --set-xmark 0x10000/0x10000', ACCEPTED]);
    assert.match(rules(r, 4, prchain('back', 'o'))[0], /^-m set --match-set cal4s-\S+ dst -j MARK --set-xmark 0x10000\/0x10000$/);
    assert.deepEqual(setOf(r, 4, prchain('back', 'o')), ['10.65.0.3']);
  });

  test('uses a stored profile, but holds a network made internal here in at once', () => {
    const open = { ...defaultProfile('front', false), ingress: [{ action: 'allow' as const }] };
    let r = renderPolicy(view({ profiles: [open, defaultProfile('back', false)] }));
    assert.deepEqual(rules(r, 4, prchain('front', 'i')), ['-j MARK --set-xmark 0x10000/0x10000', ACCEPTED]);
    assert.match(rules(r, 4, prchain('back', 'o'))[0], /--match-set \S+ dst/);
    r = renderPolicy(view({ profiles: [defaultProfile('back', true)] }));
    assert.match(rules(r, 4, prchain('back', 'o'))[0], /--match-set \S+ dst/);
  });

  test('renders a network whose name holds a quote', () => {
    const v = view();
    const r = renderPolicy({
      ...v,
      networks: v.networks.map((n) => (n.name === 'front' ? { ...n, name: "bob's" } : n)),
      policies: [pol('p', 1, 'all()', { ingress: [{ action: 'allow', source: { network: "bob's" } }] })],
    });
    assert.deepEqual(setOf(r, 4, prchain("bob's", 'i')), ['10.65.0.1', '10.65.0.2', '10.65.1.1']);
    assert.deepEqual(setOf(r, 4, pchain('p', 'i')), ['10.65.0.1', '10.65.0.2', '10.65.1.1']);
  });

  test('cal-INPUT drops or accepts what containers send to the host beyond replies', () => {
    for (const [mode, verdict] of [
      ['drop', 'DROP'],
      ['accept', 'ACCEPT'],
    ] as const) {
      const r = renderPolicy(view({ endpointToHost: mode }));
      assert.deepEqual(rules(r, 4, 'cal-INPUT'), ['-i cali+ -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT', `-i cali+ -j ${verdict}`]);
      assert.deepEqual(rules(r, 6, 'cal-INPUT'), [
        '-i cali+ -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
        ...[133, 135, 136].map((t) => `-i cali+ -p ipv6-icmp --icmpv6-type ${t} -j ACCEPT`),
        `-i cali+ -j ${verdict}`,
      ]);
    }
  });

  test('is deterministic: the same output twice and whatever the order of its inputs', () => {
    const policies = [pol('a', 1, "role == 'db'"), pol('b', 1, 'has(role)', { ingress: [{ action: 'allow', source: { nets: ['10.0.0.0/8', 'fd00::/8'] } }] })];
    const v = view({ policies });
    const r = renderPolicy(v);
    assert.deepEqual(renderPolicy(v), r);
    assert.deepEqual(renderPolicy({ ...v, endpoints: [...v.endpoints].reverse(), networks: [...v.networks].reverse(), policies: [...policies].reverse() }), r);
    assert.deepEqual(
      r.ipsets.map((s) => s.name),
      [...r.ipsets.map((s) => s.name)].sort(),
    );
  });

  test('renders no endpoint chains for a host without endpoints', () => {
    const r = renderPolicy(view({ host: 'h3', policies: [pol('p', 1, 'all()')] }));
    assert.deepEqual(rules(r, 4, 'cal-from-wl'), ['-j DROP']);
    assert.deepEqual(r.chains[4], ['cal-FORWARD', 'cal-INPUT', 'cal-from-wl', 'cal-to-wl', pchain('p', 'i')]);
  });
});
