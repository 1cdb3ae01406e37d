/**
 * Policy end to end: two hosts with real dockerd (its own iptables on, FORWARD policy DROP, as
 * on real hosts), `calico node` and BIRD on one fabric, busybox containers that serve TCP with
 * `nc`. Profiles (same network in, everything out), a label policy, anti-spoofing, bad files,
 * --internal networks, endpoint-to-host traffic, and node restarts without a window. Runs once
 * per firewall backend: CALICO_TEST_FIREWALL picks it (default: the product's `auto`, which is
 * nftables here); policy-iptables.test.ts runs it again with iptables.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { netnsScope } from '../harness/netns';
import { type Fabric, startFabric } from '../harness/fabric';
import { type DockerHost, startDockerHost } from '../harness/docker';

const scope = netnsScope();
let fabric: Fabric;
let h1: DockerHost;
let h2: DockerHost;
const hostIp: Record<string, string> = {};
const ip: Record<string, string> = {};
const where: Record<string, DockerHost> = {};
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'calico-policy-'));
const CALICO = ['-d', 'calico', '--ipam-driver', 'calico-ipam'];
const LABEL = 'org.projectcalico.label.';
const FIREWALL = process.env.CALICO_TEST_FIREWALL ?? 'auto';
const NFT = FIREWALL !== 'iptables';

async function host(i: number): Promise<DockerHost> {
  const { ns, ip: addr } = await fabric.addHost(`po${i}`, 20 + i);
  const h = await startDockerHost(scope, {
    name: `po${i}`,
    etcd: fabric.etcd.endpoint,
    env: { CALICO_IP: addr, CALICO_FIREWALL: FIREWALL },
    onFabric: { ns, ip: addr },
    dockerIptables: true,
  });
  hostIp[h.name] = addr;
  return h;
}

/** A container serving "ok" on TCP 80 and 81, labelled for policy. */
async function run(h: DockerHost, name: string, net: string, labels: Record<string, string> = {}, extra: string[] = []): Promise<string> {
  const l = Object.entries(labels).flatMap(([k, v]) => ['-l', `${LABEL}${k}=${v}`]);
  const serve = 'nc -ll -p 80 -e echo ok & nc -ll -p 81 -e echo ok & exec sleep 3600';
  await h.dockerOk(['run', '-d', '--name', name, '--network', net, ...l, ...extra, 'busybox', 'sh', '-c', serve]);
  ip[name] = await h.dockerOk(['inspect', '-f', `{{(index .NetworkSettings.Networks "${net}").IPAddress}}`, name]);
  where[name] = h;
  // Policy matches labels the node learns from Docker; wait until they are on the endpoint.
  await until(async () => {
    const eps = JSON.parse((await h.calico(['endpoint', 'ls', '--json'])).stdout) as Array<{ containerName?: string; labels: Record<string, string> }>;
    return eps.some((e) => e.containerName === name && JSON.stringify(e.labels) === JSON.stringify(labels));
  }, `labels of ${name} learned`);
  return ip[name];
}

async function recreate(name: string, net: string, labels: Record<string, string>): Promise<void> {
  const h = where[name];
  await h.dockerOk(['rm', '-f', name]);
  await run(h, name, net, labels);
}

async function until(fn: () => Promise<boolean>, what: string, timeoutMs = 20_000): Promise<number> {
  const t0 = Date.now();
  while (!(await fn().catch(() => false))) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return Date.now() - t0;
}

const pings = (from: string, to: string) => where[from].docker(['exec', from, 'ping', '-c', '1', '-W', '1', ip[to] ?? to]).then((r) => r.code === 0);
const tcp = (from: string, to: string, port = 80) =>
  where[from].docker(['exec', from, 'nc', '-w', '1', ip[to] ?? to, String(port)]).then((r) => r.code === 0 && r.stdout.trim() === 'ok');
const talks = async (from: string, to: string, port = 80) => (await pings(from, to)) && (await tcp(from, to, port));

async function denied(from: string, to: string, port = 80): Promise<void> {
  assert.equal(await pings(from, to), false, `${from} pinged ${to}`);
  assert.equal(await tcp(from, to, port), false, `${from} connected to ${to}:${port}`);
}

function policyFile(name: string, text: string): string {
  const f = path.join(tmp, name);
  fs.writeFileSync(f, text);
  return f;
}

const FRONTEND_TO_DB = policyFile(
  'frontend-to-db.yaml',
  `kind: Policy
name: frontend-to-db
order: 100
selector: role == 'db'
types: [ingress, egress]
ingress:
  - action: allow
    protocol: tcp
    source:
      selector: role == 'frontend'
    destination:
      ports: [80]
`,
);

/** Every rule and set of ours in the host's kernel, whichever backend made them. */
const ourRules = async (h: DockerHost) => {
  const ipt = (await h.ns.exec('iptables-save', ['-t', 'filter'])).stdout.split('\n').filter((l) => /cal-/.test(l));
  const sets = (await h.ns.exec('ipset', ['list', '-n'])).stdout.split('\n').filter((l) => /^cal/.test(l));
  // Only the firewall's own table: outgoing NAT (calico-nat) is a pool setting and stays with policy off.
  const nft = (await h.ns.exec('nft', ['list', 'tables'])).stdout.split('\n').filter((l) => /^table \w+ calico$/.test(l.trim()));
  return [...ipt, ...sets, ...nft].join('\n');
};
/** Whether our rules name this host interface (its chains, or its entries in our maps and sets). */
const programmedFor = async (h: DockerHost, ifName: string) =>
  NFT
    ? (await h.ns.exec('nft', ['list', 'table', 'inet', 'calico'])).stdout.includes(`"${ifName}"`)
    : (await h.ns.exec('iptables-save', ['-t', 'filter'])).stdout.includes(`:cal-fw-${ifName} `);
/** Removes our hook into the forward path by hand (as a careless admin's flush would). */
const dropOurHook = (h: DockerHost) =>
  NFT ? h.ns.exec('nft', ['delete', 'table', 'inet', 'calico']) : h.ns.exec('iptables', ['-w', '-D', 'FORWARD', '-j', 'cal-FORWARD']);
const hasOurHook = async (h: DockerHost) =>
  NFT
    ? (await h.ns.exec('nft', ['list', 'table', 'inet', 'calico'])).stdout.includes('hook forward')
    : (await h.ns.exec('iptables-save', ['-t', 'filter'])).stdout.includes('-A FORWARD -j cal-FORWARD');
/** Packets the host has sent into a container's veth (kernel counters, whichever backend filters). */
async function txPackets(h: DockerHost, container: string, net: string): Promise<number> {
  const eid = await h.dockerOk(['inspect', '-f', `{{(index .NetworkSettings.Networks "${net}").EndpointID}}`, container]);
  const link = JSON.parse((await h.ns.exec('ip', ['-s', '-j', 'link', 'show', `cali${eid.slice(0, 11)}`])).stdout) as Array<{
    stats64: { tx: { packets: number } };
  }>;
  return link[0].stats64.tx.packets;
}

before(async () => {
  fabric = await startFabric(scope);
  h1 = await host(1);
  h2 = await host(2);
  for (const h of [h1, h2]) {
    for (const n of ['blue', 'red']) await h.dockerOk(['network', 'create', ...CALICO, n]);
    await h.dockerOk(['network', 'create', ...CALICO, '--internal', 'inner']);
  }
});

after(async () => {
  for (const h of [h1, h2]) await h?.destroy();
  await fabric?.etcd.destroy();
  await scope.destroyAll();
  fs.rmSync(tmp, { recursive: true, force: true });
});

test('containers on the same network talk; on different networks they cannot, on one host and across hosts (ping and TCP)', async () => {
  await run(h1, 'b1', 'blue');
  await run(h1, 'b3', 'blue');
  await run(h1, 'r1', 'red');
  await run(h2, 'b2', 'blue');
  await run(h2, 'r2', 'red');
  for (const [a, b] of [
    ['b1', 'b3'],
    ['b3', 'b1'],
    ['b1', 'b2'],
    ['b2', 'b1'],
    ['r1', 'r2'],
    ['r2', 'r1'],
  ])
    await until(() => talks(a, b), `${a} -> ${b}`);
  for (const [a, b] of [
    ['b1', 'r1'],
    ['r1', 'b1'],
    ['b1', 'r2'],
    ['r2', 'b1'],
    ['b2', 'r1'],
  ])
    await denied(a, b);
  // One profile per network name, shared by both hosts.
  const profiles = async () => JSON.parse((await h2.calico(['profile', 'ls', '--json'])).stdout) as Array<{ name: string; internal: boolean }>;
  await until(
    async () =>
      JSON.stringify((await profiles()).map((p) => [p.name, p.internal])) ===
      JSON.stringify([
        ['blue', false],
        ['inner', true],
        ['red', false],
      ]),
    'profiles blue, inner (internal) and red',
  );
  assert.match((await h1.calico(['profile', 'get', 'blue'])).stdout, /selector: "?calico\/network == 'blue'"?/);
});

test('a policy allowing TCP 80 from role == frontend to role == db lets exactly that through', async () => {
  await run(h1, 'fe', 'blue', { role: 'frontend' });
  await run(h1, 'other', 'blue', { role: 'other' });
  await run(h2, 'db', 'blue', { role: 'db' });
  // The profile alone: the same network talks on any port.
  for (const [a, b, p] of [
    ['fe', 'db', 81],
    ['other', 'db', 80],
    ['db', 'fe', 80],
  ] as const)
    await until(() => talks(a, b, p), `${a} -> ${b}:${p} before the policy`);
  const applied = await h1.calico(['policy', 'apply', '-f', FRONTEND_TO_DB]);
  assert.equal(applied.code, 0, applied.stderr);
  assert.equal(applied.stdout.trim(), 'applied policy frontend-to-db');
  await until(() => tcp('fe', 'db', 80), 'fe -> db:80 allowed');
  await until(async () => !(await tcp('other', 'db', 80)), 'other -> db:80 denied');
  assert.equal(await tcp('fe', 'db', 81), false, 'another port');
  assert.equal(await pings('fe', 'db'), false, 'another protocol');
  assert.equal(await tcp('b1', 'db', 80), false, 'an unlabelled container');
  assert.equal(await tcp('db', 'fe', 80), false, 'the reverse direction (db is selected for egress with no rule)');
  assert.equal(await tcp('fe', 'db', 80), true, 'still allowed after the denials');
  const ls = JSON.parse((await h2.calico(['policy', 'ls', '--json'])).stdout) as Array<{ name: string; order: number }>;
  assert.deepEqual(
    ls.map((p) => [p.name, p.order]),
    [['frontend-to-db', 100]],
  );
  // get prints what apply takes: applying it again is a no-op round trip.
  const got = await h2.calico(['policy', 'get', 'frontend-to-db']);
  const again = await h2.calico(['policy', 'apply', '-f', policyFile('roundtrip.yaml', got.stdout)]);
  assert.equal(again.code, 0, again.stderr);
  assert.equal((await h2.calico(['policy', 'get', 'frontend-to-db'])).stdout, got.stdout);
});

test('removing the policy restores the profile behaviour', async () => {
  const rm = await h2.calico(['policy', 'rm', 'frontend-to-db']);
  assert.equal(rm.code, 0, rm.stderr);
  for (const [a, b, p] of [
    ['other', 'db', 80],
    ['fe', 'db', 81],
    ['db', 'fe', 80],
  ] as const)
    await until(() => talks(a, b, p), `${a} -> ${b}:${p} after rm`);
  const missing = await h2.calico(['policy', 'rm', 'frontend-to-db']);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /no policy frontend-to-db; see "calico policy ls"/);
});

test('labels follow containers recreated with other labels', async () => {
  assert.equal((await h1.calico(['policy', 'apply', '-f', FRONTEND_TO_DB])).code, 0);
  await until(async () => !(await tcp('other', 'db', 80)), 'other denied again');
  const oldIf = `cali${(await h1.dockerOk(['inspect', '-f', '{{.NetworkSettings.Networks.blue.EndpointID}}', 'other'])).slice(0, 11)}`;
  assert.ok(await programmedFor(h1, oldIf), `rules for ${oldIf}`);
  await recreate('other', 'blue', { role: 'frontend' });
  // The removed container's rules went with it.
  await until(async () => !(await programmedFor(h1, oldIf)), `rules for ${oldIf} removed`);
  await recreate('fe', 'blue', { role: 'other' });
  await until(() => tcp('other', 'db', 80), 'other, now a frontend, allowed');
  await until(async () => !(await tcp('fe', 'db', 80)), 'fe, now other, denied');
});

test('a container cannot send from an address that is not its own', async () => {
  await run(h1, 'spoofer', 'blue', {}, ['--cap-add', 'NET_ADMIN']);
  const spoofed = ip.b3; // another container's address on the same host
  await until(() => pings('spoofer', 'b2'), 'spoofer reaches b2 from its own address');
  await where.spoofer.dockerOk(['exec', 'spoofer', 'ip', 'addr', 'add', `${spoofed}/32`, 'dev', 'eth0']);
  // Counted where b2's traffic leaves the host: a spoofed ping that got through would be there.
  const before = await txPackets(where.b2, 'b2', 'blue');
  const r = await where.spoofer.docker(['exec', 'spoofer', 'ping', '-c', '3', '-W', '1', '-I', spoofed, ip.b2]);
  assert.notEqual(r.code, 0, 'a ping from a spoofed source got an answer');
  assert.ok((await txPackets(where.b2, 'b2', 'blue')) - before < 3, 'spoofed packets reached b2');
  const own = await txPackets(where.b2, 'b2', 'blue');
  await where.spoofer.docker(['exec', 'spoofer', 'ping', '-c', '3', '-W', '1', ip.b2]);
  assert.ok((await txPackets(where.b2, 'b2', 'blue')) - own >= 3, 'pings from its own address reach b2 (the counter works)');
  assert.equal(await pings('spoofer', 'b2'), true, 'its own address still works');
});

test('bad policy files are refused with an error naming the field, and change nothing', async () => {
  const rulesBefore = await ourRules(h1);
  const lsBefore = (await h1.calico(['policy', 'ls', '--json'])).stdout;
  const cases: Array<[string, RegExp]> = [
    ['kind: Policy\nname: x\ningress: [ {action: maybe} ]\n', /ingress\.0\.action/],
    ["kind: Policy\nname: x\nselector: role = 'db'\n", /selector.*is not a valid selector/],
    ['kind: Policy\nname: x\ningress:\n  - action: allow\n    destination: {ports: [80]}\n', /ports need protocol tcp, udp or sctp/],
    ['kind: Policy\nname: Bad_Name\n', /name.*DNS label/],
    [
      '- kind: Policy\n  name: good-one\n- kind: Policy\n  name: bad\n  ingress: [ {action: allow, source: {nets: [10.0.0.0/33]}} ]\n',
      /item 2 \(bad\), field ingress\.0\.source\.nets\.0/,
    ],
    ['kind: Policy\nname: [unclosed\n', /neither valid YAML nor JSON/],
  ];
  for (const [i, [text, re]] of cases.entries()) {
    const r = await h1.calico(['policy', 'apply', '-f', policyFile(`bad${i}.yaml`, text)]);
    assert.equal(r.code, 1, `case ${i}: ${r.stdout}`);
    assert.match(r.stderr, re);
  }
  const nofile = await h1.calico(['policy', 'apply', '-f', path.join(tmp, 'absent.yaml')]);
  assert.match(nofile.stderr, /cannot read .*absent\.yaml/);
  assert.equal((await h1.calico(['policy', 'ls', '--json'])).stdout, lsBefore, 'no policy written, not even the good one of a bad list');
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(await ourRules(h1), rulesBefore);
});

test('--internal networks: containers reach each other on the network and nothing outside it', async () => {
  await run(h1, 'i1', 'inner');
  await run(h2, 'i2', 'inner');
  await until(() => talks('i1', 'i2'), 'i1 -> i2');
  await until(() => talks('i2', 'i1'), 'i2 -> i1');
  // An ordinary network reaches the other host's address; the internal one does not.
  await until(() => pings('b1', hostIp.po2), 'b1 reaches the other host');
  assert.equal(await pings('i1', hostIp.po2), false, 'i1 reached the other host');
  await denied('i1', 'b1');
  await denied('b1', 'i1');
  await denied('i2', 'b2');
});

test('containers reach their own host only with replies unless CALICO_ENDPOINT_TO_HOST=accept', async () => {
  assert.equal(await pings('b1', hostIp.po1), false, 'a container pinged its own host');
  // The host still reaches its containers (and gets the replies).
  await h1.ns.exec('ping', ['-c', '1', '-W', '1', ip.b1]);
  await h1.node.stop('SIGTERM');
  h1.node.env.CALICO_ENDPOINT_TO_HOST = 'accept';
  try {
    await h1.node.restart();
    await h1.node.ready();
    await until(() => pings('b1', hostIp.po1), 'b1 -> its host with accept');
  } finally {
    await h1.node.stop('SIGTERM');
    delete h1.node.env.CALICO_ENDPOINT_TO_HOST;
    await h1.node.restart();
    await h1.node.ready();
  }
  assert.equal(await pings('b1', hostIp.po1), false, 'drop again after the restart');
});

test('calico node killed and restarted: rules stay while it is down and are rebuilt at start, so nothing denied passes', async () => {
  // A flow that must stay denied (other network, same host) and one that must keep flowing.
  const deniedFlow = where.b1.docker(['exec', 'b1', 'ping', '-c', '24', '-i', '0.25', '-W', '1', ip.r1], { timeoutMs: 60_000 });
  const allowedFlow = where.b1.docker(['exec', 'b1', 'ping', '-c', '24', '-i', '0.25', '-W', '1', ip.b3], { timeoutMs: 60_000 });
  await new Promise((r) => setTimeout(r, 1000));
  await h1.node.stop('SIGKILL');
  // While it is down a policy changes in etcd: TCP between unlabelled blue containers is locked.
  const lock = policyFile(
    'lock-blue.yaml',
    `kind: Policy\nname: lock-blue\nselector: calico/network == 'blue' && !has(role)\ningress:\n  - action: allow\n    protocol: icmp\n    source: {selector: "calico/network == 'blue'"}\n`,
  );
  assert.equal((await h2.calico(['policy', 'apply', '-f', lock])).code, 0);
  await new Promise((r) => setTimeout(r, 1000));
  await h1.node.restart();
  await h1.node.ready();
  // Start-up is complete only with the rules in place: the policy applied meanwhile is in.
  assert.equal(await tcp('b1', 'b3', 80), false, 'TCP to b3 is denied by the policy applied while the node was down');
  const d = (await deniedFlow).stdout;
  assert.match(d, / 100% packet loss/, d);
  const a = (await allowedFlow).stdout;
  assert.match(a, / 0% packet loss/, a);

  // Rules lost while it is down (here: our jump removed by hand) are rebuilt at start.
  await h1.node.stop('SIGKILL');
  await dropOurHook(h1);
  await h1.node.restart();
  await h1.node.ready();
  assert.ok(await hasOurHook(h1), 'our hook is back');
  assert.equal(await pings('b1', 'r1'), false);
  assert.equal((await h2.calico(['policy', 'rm', 'lock-blue'])).code, 0);
  await until(() => tcp('b1', 'b3', 80), 'b1 -> b3:80 after the lock is removed');
});

test('with CALICO_POLICY=off the node removes its rules and different networks talk; on again, they are apart', async () => {
  await h1.node.stop('SIGTERM');
  h1.node.env.CALICO_POLICY = 'off';
  try {
    await h1.node.restart();
    await h1.node.ready();
    assert.equal(await ourRules(h1), '', 'no calico rule, set or table left');
    await until(() => talks('b1', 'r1'), 'b1 -> r1 without policy');
  } finally {
    await h1.node.stop('SIGTERM');
    delete h1.node.env.CALICO_POLICY;
    await h1.node.restart();
    await h1.node.ready();
  }
  await denied('b1', 'r1');
});
