/**
 * The rendered firewall against the real tools, inside a throw-away network namespace: ipset
 * and iptables-restore (both families) must accept a view that uses every rule feature, and
 * applyFirewall (policy/iptables.ts), run in a child process inside the namespace, must leave
 * exactly our chains and sets there and nothing in the machine's own namespace.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { EndpointRecord, NetworkRecord } from '../../lib/datastore/records';
import { type PolicyRecord, parsePolicyFile } from '../../policy/model';
import { defaultProfile } from '../../policy/profiles';
import { type PolicyView, type Rendered, renderPolicy } from '../../policy/render';
import { canCreateNetns, createNetns, type Netns } from '../harness/netns';

const hasTools = (() => {
  try {
    for (const t of ['ipset', 'iptables-restore', 'ip6tables-restore', 'iptables-save'])
      execFileSync('sh', ['-c', 'command -v "$1"', 'sh', t], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();
const skip = canCreateNetns() && hasTools ? false : 'needs root, iproute2, ipset and iptables';
const IPTABLES_JS = path.join(__dirname, '..', '..', 'policy', 'iptables.js');
/** Calls one export of policy/iptables.js with the JSON in a file, in the namespace the child runs in. */
const CALL = `const [mod, fn, file] = process.argv.slice(1);
const arg = file ? JSON.parse(require('fs').readFileSync(file, 'utf8')) : undefined;
require(mod)[fn](arg).then(() => process.exit(0), (e) => { console.error(e.message); process.exit(1); });`;

/** Unique per run, so what this test creates can be told apart from anything else on the machine. */
const run = randomBytes(4).toString('hex');
const T = '2024-01-01T00:00:00.000Z';
const ep = (id: string, host: string, network: string, v4: string[], v6: string[], labels: Record<string, string>, sandbox?: string): EndpointRecord => ({
  id,
  host,
  network,
  ifName: `cali${id}`,
  mac: '02:42:ac:1f:00:01',
  ipv4: v4.map((a) => `${a}/32`),
  ipv6: v6.map((a) => `${a}/128`),
  labels,
  createdAt: T,
  ...(sandbox ? { sandbox } : {}),
});
const net = (host: string, id: string, name: string, internal = false): NetworkRecord => ({
  id,
  host,
  name,
  ipv4Pools: [],
  ipv6Pools: [],
  ipv6: true,
  options: {},
  internal,
  createdAt: T,
});
const pol = (name: string, order: number, selector: string, p: Partial<PolicyRecord>): PolicyRecord => ({
  name: `${name}-${run}`,
  order,
  selector,
  types: ['ingress'],
  ingress: [],
  egress: [],
  ...p,
});

/** Every rule feature: all actions, protocols, both sides, selectors, networks, nets, ports. */
const policies: PolicyRecord[] = [
  pol('db', 10, `role == 'db' && run == '${run}'`, {
    types: ['ingress', 'egress'],
    ingress: [
      { action: 'log', protocol: 'tcp', destination: { ports: [5432] } },
      { action: 'allow', protocol: 'tcp', source: { selector: "role in {'web','api'}", ports: ['1024:65535'] }, destination: { ports: [5432, '6000:6010'] } },
      { action: 'deny', protocol: 'udp', source: { notSelector: "env != 'prod'", notPorts: [53] }, destination: { notPorts: ['1:1023'] } },
      { action: 'allow', protocol: 'sctp', source: { network: 'front', nets: ['10.65.0.0/16', 'fd65::/64'] } },
      { action: 'allow', protocol: 'icmp', source: { nets: ['10.0.0.0/8'], notNets: ['10.9.0.0/16', 'fd00::/8'] } },
      { action: 'allow', protocol: 'icmpv6', source: { nets: ['fd00::/8'] } },
      { action: 'deny', protocol: 47, destination: { notNets: ['192.168.0.0/16'] } },
      { action: 'pass', source: { selector: '!has(env) || all()' } },
    ],
    egress: [
      { action: 'allow', protocol: 'tcp', destination: { nets: ['0.0.0.0/0', '::/0'], ports: [443] } },
      { action: 'deny', destination: { nets: ['fd00::/8'] } },
      { action: 'allow', destination: { network: "bob's", selector: "role not in {'x'}" } },
    ],
  }),
  pol('web', 20, "role == 'web'", { types: ['egress'], egress: [{ action: 'deny', protocol: 'udp', destination: { ports: [53], nets: ['8.8.8.8/32'] } }] }),
  pol('all', 1000, 'all()', { ingress: [{ action: 'allow', source: { selector: "calico/network == 'back'" } }] }),
];

const view: PolicyView = {
  host: 'h1',
  endpoints: [
    ep('aaaaaaaaaaa', 'h1', 'n1', ['10.65.0.1'], ['fd65::1'], { role: 'db', env: 'prod', run }),
    ep('bbbbbbbbbbb', 'h1', 'n1', ['10.65.0.2'], [], { role: 'web' }),
    ep('ccccccccccc', 'h1', 'n1', ['10.65.0.3'], ['fd65::3'], { role: 'api' }, '/run/docker/netns/x'),
    ep('ddddddddddd', 'h1', 'n2', ['10.65.2.3'], [], { role: 'api' }, '/run/docker/netns/x'),
    ep('eeeeeeeeeee', 'h1', 'n3', [], ['fd65::5'], {}),
    ep('fffffffffff', 'h2', 'n9', ['10.65.1.1'], ['fd65::11'], { role: 'web' }),
  ],
  networks: [net('h1', 'n1', 'front'), net('h1', 'n2', 'back', true), net('h1', 'n3', "bob's"), net('h2', 'n9', 'front')],
  policies,
  profiles: [defaultProfile('front', false)],
  endpointToHost: 'drop',
};

let ns: Netns;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'calico-policy-render-'));
const file = (name: string, text: string) => {
  const f = path.join(tmp, name);
  fs.writeFileSync(f, text);
  return f;
};
const call = async (fn: 'applyFirewall' | 'removeFirewall', r?: Rendered) => {
  const args = [IPTABLES_JS, fn, ...(r ? [file(`${fn}-${Date.now()}.json`, JSON.stringify(r))] : [])];
  await ns.exec(process.execPath, ['-e', CALL, ...args]);
};
const save = async (f: 4 | 6) => (await ns.exec(f === 4 ? 'iptables-save' : 'ip6tables-save', ['-t', 'filter'])).stdout;
const chainsIn = (text: string) =>
  text
    .split('\n')
    .filter((l) => l.startsWith(':cal-'))
    .map((l) => l.slice(1).split(' ')[0])
    .sort();
const setsIn = (text: string) =>
  text
    .split('\n')
    .map((s) => s.trim())
    .filter((s) => /^cal[46][sn]-/.test(s))
    .sort();
const rootSets = () => execFileSync('ipset', ['list', '-n'], { encoding: 'utf8' });
const rootSave = () => ['iptables-save', 'ip6tables-save'].map((t) => execFileSync(t, ['-t', 'filter'], { encoding: 'utf8' })).join('\n');

describe('rendered firewall against the kernel', { skip }, () => {
  let rootSetsBefore: Set<string>;

  before(async () => {
    rootSetsBefore = new Set(setsIn(rootSets()));
    ns = await createNetns('polrender');
  });

  after(async () => {
    await ns?.destroy();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  test('the view covers what it should: local and remote endpoints, every set type, both families', () => {
    const r = renderPolicy(view);
    assert.ok(r.ipsets.some((s) => s.type === 'hash:net' && s.family === 6) && r.ipsets.some((s) => s.type === 'hash:ip' && s.family === 4));
    for (const f of [4, 6] as const)
      for (const w of ['--dports 5432,6000:6010', '! --sports 53', '-j LOG', '0x20000/0x20000', '-g cal-fw-calieeeeeeeeeee'])
        assert.ok(r.tables[f].includes(w), `${w} in IPv${f}`);
    assert.match(r.tables[4], /-p icmp /);
    assert.match(r.tables[6], /-p ipv6-icmp /);
    assert.doesNotMatch(r.tables[4], /calffff/);
  });

  /** Creates the sets (iptables needs them to resolve names), tests both tables, removes the sets. */
  const kernelAccepts = async (r: Rendered, tag: string) => {
    const sets = r.ipsets.flatMap((s) => [
      `create ${s.name} ${s.type} family ${s.family === 4 ? 'inet' : 'inet6'}`,
      ...s.members.map((m) => `add ${s.name} ${m}`),
    ]);
    await ns.exec('ipset', ['-file', file(`${tag}.sets`, sets.join('\n') + '\n'), 'restore']);
    for (const f of [4, 6] as const)
      await ns.exec(f === 4 ? 'iptables-restore' : 'ip6tables-restore', ['--test', '--noflush', file(`${tag}.v${f}`, r.tables[f])]);
    // --test commits nothing.
    for (const f of [4, 6] as const) assert.deepEqual(chainsIn(await save(f)), []);
    await ns.exec('ipset', ['destroy']);
  };

  test('ipset restore and iptables-restore --test --noflush accept the rendered sets and both tables', async () => {
    await kernelAccepts(renderPolicy(view), 'full');
  });

  test('the kernel accepts whatever the policy file validation lets through at its limits', async () => {
    const ranges = Array.from({ length: 7 }, (_, i) => `${1000 + 2 * i}:${1001 + 2 * i}`);
    const text = [
      'kind: Policy',
      'name: edges',
      'ingress:',
      `  - {action: allow, protocol: tcp, source: {ports: ${JSON.stringify([0, ...ranges])}}, destination: {notPorts: ${JSON.stringify(Array.from({ length: 15 }, (_, i) => 65535 - i))}}}`,
      "  - {action: deny, protocol: udp, destination: {ports: ['0:65535'], nets: ['0.0.0.0/0', '::/0', 10.1.2.3/8]}, source: {notNets: ['::/0']}}",
      '  - {action: log, protocol: 255, source: {network: "bob\'s"}}',
      '  - {action: pass, protocol: 1}',
      '  - {action: allow, protocol: 58}',
    ].join('\n');
    const edges = parsePolicyFile(text, 'edges.yaml').map((p) => ({ ...p, name: `${p.name}-${run}` }));
    await kernelAccepts(renderPolicy({ ...view, policies: edges }), 'edges');
  });

  test('applyFirewall puts our chains, jumps and sets into the namespace, both families', async () => {
    const r = renderPolicy(view);
    await call('applyFirewall', r);
    for (const f of [4, 6] as const) {
      const text = await save(f);
      assert.deepEqual(chainsIn(text), [...r.chains[f]].sort());
      assert.match(text, /^-A FORWARD -j cal-FORWARD$/m);
      assert.match(text, /^-A INPUT -j cal-INPUT$/m);
      // As many rules in each of our chains as rendered.
      for (const c of r.chains[f]) {
        const want = r.tables[f].split('\n').filter((l) => l.startsWith(`-A ${c} `)).length;
        assert.equal(text.split('\n').filter((l) => l.startsWith(`-A ${c} `)).length, want, `rules in ${c} (IPv${f})`);
      }
    }
    const db = view.endpoints[0].ifName;
    assert.ok((await save(4)).split('\n').includes(`-A cal-fw-${db} ! -s 10.65.0.1/32 -j DROP`));
    assert.ok((await save(6)).split('\n').includes(`-A cal-fw-${db} ! -s fd65::1/128 -j DROP`));
    assert.deepEqual(setsIn((await ns.exec('ipset', ['list', '-n'])).stdout), r.ipsets.map((s) => s.name).sort());
    const halves = r.ipsets.find((s) => s.members.includes('128.0.0.0/1'))!;
    assert.match((await ns.exec('ipset', ['list', halves.name])).stdout, /128\.0\.0\.0\/1/);
  });

  test('applying again is idempotent, and a smaller view removes the stale chains and sets', async () => {
    const r = renderPolicy(view);
    await call('applyFirewall', r);
    const text = await save(4);
    assert.equal(text.split('\n').filter((l) => l === '-A FORWARD -j cal-FORWARD').length, 1);
    const smaller = renderPolicy({ ...view, policies: policies.filter((p) => !p.name.startsWith('db-')) });
    await call('applyFirewall', smaller);
    for (const f of [4, 6] as const) assert.deepEqual(chainsIn(await save(f)), [...smaller.chains[f]].sort());
    assert.deepEqual(setsIn((await ns.exec('ipset', ['list', '-n'])).stdout), smaller.ipsets.map((s) => s.name).sort());
  });

  test('incremental applies leave the kernel exactly as one full apply of the last view would', async () => {
    const [dbEp] = view.endpoints;
    const steps = [
      renderPolicy(view),
      renderPolicy({ ...view, policies: policies.filter((p) => !p.name.startsWith('db-')) }),
      renderPolicy({
        ...view,
        endpoints: [...view.endpoints, { ...dbEp, id: 'dddddddddd1', ifName: 'calidddddddddd1', ipv4: ['10.65.0.99/32'], ipv6: [], sandbox: undefined }],
      }),
      renderPolicy({ ...view, policies: policies.map((p, i) => ({ ...p, order: 1000 - i })) }),
    ];
    const seq = `const [mod, file] = process.argv.slice(1);
const fw = new (require(mod).Firewall)();
(async () => { for (const r of JSON.parse(require('fs').readFileSync(file, 'utf8'))) await fw.apply(r); })().then(() => process.exit(0), (e) => { console.error(e.message); process.exit(1); });`;
    await ns.exec(process.execPath, ['-e', seq, IPTABLES_JS, file('steps.json', JSON.stringify(steps))]);
    const state = async () => {
      const lines = [...(await save(4)).split('\n'), ...(await save(6)).split('\n')].filter((l) => /cal-/.test(l));
      const sets = (await ns.exec('ipset', ['save'])).stdout.split('\n').filter((l) => / cal[46][sn]-/.test(l));
      return [...lines, ...sets].map((l) => l.replace(/ \[\d+:\d+\]$/, '').replace(/ initval 0x[0-9a-f]+/, '')).sort();
    };
    const incremental = await state();
    await call('removeFirewall');
    await call('applyFirewall', steps[steps.length - 1]);
    assert.deepEqual(incremental, await state());
  });

  test("nothing leaks into the machine's own namespace", () => {
    const r = renderPolicy(view);
    const root = rootSave();
    for (const p of policies) assert.ok(!root.includes(`${p.name}`), `${p.name} in the root namespace`);
    for (const c of r.chains[4].filter((c) => /^cal-p[io]-/.test(c))) assert.ok(!root.includes(`:${c} `), `${c} in the root namespace`);
    const now = setsIn(rootSets());
    for (const s of r.ipsets) if (!rootSetsBefore.has(s.name)) assert.ok(!now.includes(s.name), `${s.name} in the root namespace`);
  });

  test('removeFirewall takes out every chain, jump and set of ours', async () => {
    await call('removeFirewall');
    for (const f of [4, 6] as const) {
      const text = await save(f);
      assert.deepEqual(chainsIn(text), []);
      assert.doesNotMatch(text, /cal-/);
    }
    assert.deepEqual(setsIn((await ns.exec('ipset', ['list', '-n'])).stdout), []);
  });
});
