/**
 * Outgoing NAT in a real `calico node` on the real kernel: a host namespace with an uplink to an
 * outside router that has no route to any pool, and two containers. The router only answers
 * pings whose source is the host's address, and the second container only ones from a pool
 * address, so each reply proves what was (and was not) translated. Both firewall backends, live
 * pool changes, a flushed table repaired, and CALICO_POLICY=off leaving NAT on.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { netnsScope, type Netns } from '../harness/netns';
import { startEtcd, type TestEtcd } from '../harness/etcd';
import { startCalico, type CalicoProcess } from '../harness/calico';
import { giveUplink, plugIntoSandbox } from '../harness/sandbox';

const hex = () => randomBytes(32).toString('hex');
const scope = netnsScope();
let host: Netns;
let router: Netns;
let etcd: TestEtcd;
let node: CalicoProcess;
const c: Array<{ ns: Netns; ip4: string; ip6: string }> = [];

const pings = (from: Netns, to: string) =>
  from.exec('ping', ['-c', '1', '-W', '1', to]).then(
    () => true,
    () => false,
  );
const nftNat = async () => (await host.exec('nft', ['list', 'table', 'inet', 'calico-nat']).catch(() => ({ stdout: '' }))).stdout;
const iptNat = async () =>
  (await host.exec('iptables-save', ['-t', 'nat'])).stdout
    .split('\n')
    .filter((l) => l.includes('cali-nat-outgoing'))
    .join('\n');

async function until(fn: () => Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const t0 = Date.now();
  while (!(await fn())) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`${what}: not within ${timeoutMs} ms\n${node.logs().slice(-3000)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function restartWith(env: Record<string, string | undefined>): Promise<void> {
  await node.stop('SIGTERM');
  for (const [k, v] of Object.entries(env))
    if (v === undefined) delete node.env[k];
    else node.env[k] = v;
  await node.restart();
  await node.ready();
}

/** Drops echo requests to `ns` unless their source matches, so a reply proves the source. */
async function onlyAnswer(ns: Netns, v4: string, v6: string): Promise<void> {
  const rules = [
    'add table inet probe',
    'add chain inet probe in { type filter hook input priority 0; policy accept; }',
    `add rule inet probe in icmp type echo-request ip saddr != ${v4} drop`,
    `add rule inet probe in icmpv6 type echo-request ip6 saddr != ${v6} drop`,
  ];
  for (const r of rules) await ns.exec('nft', r.split(' '));
}

before(async () => {
  host = await scope.create('nath');
  router = await scope.create('natr');
  await giveUplink(host, router);
  await host.ip(['-6', 'addr', 'add', 'fd31::1/64', 'dev', 'uplink', 'nodad']);
  await router.ip(['-6', 'addr', 'add', 'fd31::fe/64', 'dev', 'down0', 'nodad']);
  await host.ip(['-6', 'route', 'add', 'default', 'via', 'fd31::fe']);
  await onlyAnswer(router, '172.31.0.1', 'fd31::1');
  etcd = await startEtcd(host);
  node = await startCalico(host, { name: 'nat', etcd: etcd.endpoint, env: { CALICO_BIRD: 'off', CALICO_LOG_LEVEL: 'info', CALICO_RECONCILE_INTERVAL: '1' } });
  await node.ready();
  const d = node.docker;
  const v4 = await d.ok('ipam', 'RequestPool', { AddressSpace: 'CalicoLocalAddressSpace', Pool: '', SubPool: '', Options: null, V6: false });
  const v6 = await d.ok('ipam', 'RequestPool', { AddressSpace: 'CalicoLocalAddressSpace', Pool: '', SubPool: '', Options: null, V6: true });
  const nid = hex();
  await d.ok('net', 'CreateNetwork', {
    NetworkID: nid,
    Options: { 'com.docker.network.enable_ipv6': true, 'com.docker.network.generic': {} },
    IPv4Data: [{ AddressSpace: 'CalicoLocalAddressSpace', Pool: v4.Pool, Gateway: v4.Data['com.docker.network.gateway'] }],
    IPv6Data: [{ AddressSpace: 'CalicoLocalAddressSpace', Pool: v6.Pool, Gateway: v6.Data['com.docker.network.gateway'] }],
  });
  for (const name of ['natc1', 'natc2']) {
    const ns = await scope.create(name);
    const eid = hex();
    const a4 = (await d.ok('ipam', 'RequestAddress', { PoolID: v4.PoolID, Address: '', Options: null })).Address as string;
    const a6 = (await d.ok('ipam', 'RequestAddress', { PoolID: v6.PoolID, Address: '', Options: null })).Address as string;
    await d.ok('net', 'CreateEndpoint', { NetworkID: nid, EndpointID: eid, Interface: { Address: a4, AddressIPv6: a6, MacAddress: '' }, Options: {} });
    const join = await d.ok('net', 'Join', { NetworkID: nid, EndpointID: eid, SandboxKey: '', Options: {} });
    await plugIntoSandbox(host, ns, join, { v4: a4, v6: a6 });
    c.push({ ns, ip4: a4.split('/')[0], ip6: a6.split('/')[0] });
  }
  await onlyAnswer(c[1].ns, '10.65.0.0/16', 'fd65::/64');
});

after(async () => {
  await node?.destroy();
  await etcd?.destroy();
  await scope.destroyAll();
});

test("a container on the default IPv4 pool reaches the outside with the host's address, and its neighbour sees its own", async () => {
  assert.match(await nftNat(), /ip saddr @nat4 ip daddr != @all4 masquerade/);
  await until(() => pings(c[0].ns, '172.31.0.254'), 'the router answering a translated ping');
  assert.ok(await pings(c[0].ns, c[1].ip4), 'pool to pool is not translated');
  assert.ok(await pings(c[0].ns, c[1].ip6), 'nor over IPv6');
  assert.equal(await pings(c[0].ns, 'fd31::fe'), false, 'the default IPv6 pool has no outgoing NAT, as in Calico');
});

test('calico pool set turns outgoing NAT on and off on a running host', async () => {
  await node.cli(['pool', 'set', 'fd65::/64', '--nat-outgoing']);
  await until(() => pings(c[0].ns, 'fd31::fe'), 'IPv6 translated once the pool says so');
  await node.cli(['pool', 'set', '10.65.0.0/16', '--nat-outgoing=false']);
  await until(async () => !(await pings(c[0].ns, '172.31.0.254')), 'IPv4 no longer translated');
  assert.ok(await pings(c[0].ns, 'fd31::fe'), 'the other pool keeps its NAT');
  await node.cli(['pool', 'set', '10.65.0.0/16', '--nat-outgoing']);
  await until(() => pings(c[0].ns, '172.31.0.254'), 'IPv4 translated again');
});

test('a table someone flushed is rewritten by the periodic check', async () => {
  await host.exec('nft', ['flush', 'table', 'inet', 'calico-nat']);
  await until(async () => /masquerade/.test(await nftNat()), 'the rules back');
  assert.ok(await pings(c[0].ns, '172.31.0.254'));
});

test('on the iptables backend NAT moves to a cali-nat-outgoing chain and our nftables table goes; and back', async () => {
  await restartWith({ CALICO_FIREWALL: 'iptables' });
  await until(async () => (await nftNat()) === '', 'our nftables NAT table removed');
  // The agent removes the other backend's rules first and applies its own after: wait for both.
  await until(async () => /MASQUERADE/.test(await iptNat()), 'the iptables chain');
  const rules = await iptNat();
  assert.match(rules, /-A POSTROUTING -j cali-nat-outgoing/);
  assert.match(rules, /-A cali-nat-outgoing -d 10\.65\.0\.0\/16 -j RETURN/);
  assert.match(rules, /-A cali-nat-outgoing -s 10\.65\.0\.0\/16 -j MASQUERADE/);
  assert.ok(await pings(c[0].ns, '172.31.0.254'), 'IPv4 translated by iptables');
  assert.ok(await pings(c[0].ns, 'fd31::fe'), 'IPv6 by ip6tables');
  assert.ok(await pings(c[0].ns, c[1].ip4), 'pool to pool still not translated');
  await host.exec('iptables', ['-w', '-t', 'nat', '-F', 'cali-nat-outgoing']);
  await until(async () => /MASQUERADE/.test(await iptNat()), 'a flushed chain repaired');

  await restartWith({ CALICO_FIREWALL: undefined });
  await until(async () => (await iptNat()) === '', 'the iptables chain and its jump removed');
  await until(async () => /masquerade/.test(await nftNat()), 'our nftables table back');
  assert.ok(await pings(c[0].ns, '172.31.0.254'));
});

test('with CALICO_POLICY=off containers still leave with the host address', async () => {
  await restartWith({ CALICO_POLICY: 'off' });
  assert.match(await nftNat(), /masquerade/);
  assert.ok(await pings(c[0].ns, '172.31.0.254'));
  await restartWith({ CALICO_POLICY: undefined });
});
