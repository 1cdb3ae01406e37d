/**
 * Published ports in a real `calico node` on the real kernel, both firewall backends: a host
 * namespace with an uplink to an outside router (the outside client), two containers on a calico
 * network, driven through the plugin sockets in Docker 20.10's order (the port map in
 * CreateEndpoint, Join and ProgramExternalConnectivity). Each server answers with its name and
 * the source address it saw, so every reply proves where it went and what was translated.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { netnsScope, type Netns } from '../harness/netns';
import { startEtcd, type TestEtcd } from '../harness/etcd';
import { startCalico, type CalicoProcess } from '../harness/calico';
import { giveUplink, plugIntoSandbox } from '../harness/sandbox';

const hex = () => randomBytes(32).toString('hex');
const ECHO = path.join(__dirname, '..', 'harness', 'port-echo.js');
const HOST4 = '172.31.0.1';
const HOST6 = 'fd31::1';
const scope = netnsScope();
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'calico-ports-'));
let host: Netns;
let router: Netns;
let etcd: TestEtcd;
let node: CalicoProcess;
let nid: string;
const c: Array<{ name: string; ns: Netns; eid: string; ip4: string; ip6: string }> = [];

const portmap = (bindings: Array<[proto: number, hostPort: number, port: number, hostIp?: string]>) =>
  bindings.map(([Proto, HostPort, Port, HostIP]) => ({ Proto, IP: '', Port, HostIP: HostIP ?? '', HostPort, HostPortEnd: HostPort }));
const WEB = portmap([
  [6, 8080, 80],
  [17, 5353, 53],
]);

/** What the server behind `addr:port` answered over TCP from `from`, or '' when nothing did. */
async function ask(from: Netns, addr: string, port = 8080): Promise<string> {
  const url = addr.includes(':') ? `http://[${addr}]:${port}/` : `http://${addr}:${port}/`;
  const r = await from.exec('curl', ['-s', '--max-time', '1', url]).catch(() => ({ stdout: '' }));
  return r.stdout.trim();
}
async function askUdp(from: Netns, addr: string, port = 5353): Promise<string> {
  const r = await from.exec(process.execPath, [ECHO, 'udp', addr, String(port)]).catch(() => ({ stdout: '' }));
  return r.stdout.trim();
}

async function until(fn: () => Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const t0 = Date.now();
  while (!(await fn())) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`${what}: not within ${timeoutMs} ms\n${node.logs().slice(-3000)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const nftPorts = async () => (await host.exec('nft', ['list', 'table', 'inet', 'calico-ports']).catch(() => ({ stdout: '' }))).stdout;
const iptPorts = async () =>
  (await host.exec('iptables-save', ['-t', 'nat'])).stdout
    .split('\n')
    .filter((l) => l.includes('cali-ports'))
    .join('\n');
const endpoints = async (): Promise<Array<{ id: string; ports?: Array<{ published?: number }> }>> =>
  JSON.parse((await node.cli(['endpoint', 'ls', '--json'])).stdout);

const program = (eid: string, Options: Record<string, unknown> = { 'com.docker.network.portmap': WEB }) =>
  node.docker.net('ProgramExternalConnectivity', { NetworkID: nid, EndpointID: eid, Options });
const revoke = (eid: string) => node.docker.ok('net', 'RevokeExternalConnectivity', { NetworkID: nid, EndpointID: eid });

async function restartWith(env: Record<string, string | undefined>): Promise<void> {
  await node.stop('SIGTERM');
  for (const [k, v] of Object.entries(env))
    if (v === undefined) delete node.env[k];
    else node.env[k] = v;
  await node.restart();
  await node.ready();
}

before(async () => {
  host = await scope.create('porth');
  router = await scope.create('portr');
  await giveUplink(host, router);
  await host.ip(['-6', 'addr', 'add', `${HOST6}/64`, 'dev', 'uplink', 'nodad']);
  await router.ip(['-6', 'addr', 'add', 'fd31::fe/64', 'dev', 'down0', 'nodad']);
  await host.ip(['-6', 'route', 'add', 'default', 'via', 'fd31::fe']);
  etcd = await startEtcd(host);
  node = await startCalico(host, { name: 'ports', etcd: etcd.endpoint, env: { CALICO_BIRD: 'off', CALICO_RECONCILE_INTERVAL: '1' } });
  await node.ready();
  const d = node.docker;
  const v4 = await d.ok('ipam', 'RequestPool', { AddressSpace: 'CalicoLocalAddressSpace', Pool: '', SubPool: '', Options: null, V6: false });
  const v6 = await d.ok('ipam', 'RequestPool', { AddressSpace: 'CalicoLocalAddressSpace', Pool: '', SubPool: '', Options: null, V6: true });
  nid = hex();
  await d.ok('net', 'CreateNetwork', {
    NetworkID: nid,
    Options: { 'com.docker.network.enable_ipv6': true, 'com.docker.network.generic': {} },
    IPv4Data: [{ AddressSpace: 'CalicoLocalAddressSpace', Pool: v4.Pool, Gateway: v4.Data['com.docker.network.gateway'] }],
    IPv6Data: [{ AddressSpace: 'CalicoLocalAddressSpace', Pool: v6.Pool, Gateway: v6.Data['com.docker.network.gateway'] }],
  });
  for (const name of ['web', 'other']) {
    const ns = await scope.create(`port${name}`);
    const eid = hex();
    const a4 = (await d.ok('ipam', 'RequestAddress', { PoolID: v4.PoolID, Address: '', Options: null })).Address as string;
    const a6 = (await d.ok('ipam', 'RequestAddress', { PoolID: v6.PoolID, Address: '', Options: null })).Address as string;
    const options = name === 'web' ? { 'com.docker.network.portmap': WEB, 'com.docker.network.endpoint.exposedports': [{ Proto: 6, Port: 80 }] } : {};
    await d.ok('net', 'CreateEndpoint', { NetworkID: nid, EndpointID: eid, Interface: { Address: a4, AddressIPv6: a6, MacAddress: '' }, Options: options });
    const join = await d.ok('net', 'Join', { NetworkID: nid, EndpointID: eid, SandboxKey: `/var/run/docker/netns/${name}`, Options: options });
    await plugIntoSandbox(host, ns, join, { v4: a4, v6: a6 });
    await ns.ip(['link', 'set', 'lo', 'up']);
    const srv = ns.spawn(process.execPath, [ECHO, 'serve', name, '80', '53', '81']);
    await new Promise((r) => srv.stdout!.once('data', r));
    c.push({ name, ns, eid, ip4: a4.split('/')[0], ip6: a6.split('/')[0] });
  }
  assert.equal((await program(c[0].eid)).status, 200);
});

after(async () => {
  await node?.destroy();
  await etcd?.destroy();
  await scope.destroyAll();
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** The reachability every backend must give once `web` publishes tcp 8080 and udp 5353. */
async function reachable(): Promise<void> {
  const [web, other] = c;
  assert.equal(await ask(router, HOST4), 'web 172.31.0.254', 'the outside client over IPv4, seen with its own address');
  assert.equal(await ask(router, HOST6), 'web fd31::fe', 'and over IPv6');
  assert.equal(await askUdp(router, HOST4), 'web 172.31.0.254', 'UDP too');
  assert.equal(await ask(other.ns, HOST4), `web ${other.ip4}`, 'another container on the host, at the host address');
  assert.equal(await ask(host, HOST4), `web ${HOST4}`, 'the host itself');
  const hairpin = await ask(web.ns, HOST4);
  assert.match(hairpin, /^web /, 'the container itself (hairpin)');
  assert.notEqual(hairpin, `web ${web.ip4}`, 'hairpin is masqueraded: the reply must come back through the host');
  assert.equal(await ask(router, HOST4, 8081), '', 'an unpublished port is not forwarded');
}

describe('nftables backend', () => {
  test('a published port is reached on the host address from outside, from a container, from the host and from itself; the profile does not stop it', async () => {
    assert.match(await nftPorts(), /tcp \. 8080 : [\d.]+ \. 80/);
    await reachable();
    const eps = await endpoints();
    assert.equal(eps.find((e) => e.id === c[0].eid)?.ports?.[0].published, 8080);
    const table = (await node.cli(['endpoint', 'ls'])).stdout;
    assert.match(table, /PORTS/);
    assert.match(table, /8080->80\/tcp,5353->53\/udp/);
  });

  test('a port another container publishes is refused naming the port and who holds it, and nothing changes', async () => {
    const before = await nftPorts();
    const r = await program(c[1].eid, { 'com.docker.network.portmap': portmap([[6, 8080, 81]]) });
    assert.equal(r.status, 400);
    assert.match(r.body.Err, new RegExp(`host port 8080->81/tcp is already published on host ports by endpoint ${c[0].eid.slice(0, 12)}`));
    assert.equal(await nftPorts(), before);
    assert.equal((await endpoints()).find((e) => e.id === c[1].eid)?.ports, undefined, 'nothing recorded for the refused endpoint');
  });

  test('a port a process on the host listens on is refused, and a range skips it', async () => {
    const proc = host.spawn(process.execPath, [ECHO, 'serve', 'hostproc', '8099']);
    await new Promise((r) => proc.stdout!.once('data', r));
    try {
      const r = await program(c[1].eid, { 'com.docker.network.portmap': portmap([[6, 8099, 80]]) });
      assert.equal(r.status, 400);
      assert.match(r.body.Err, /host port 8099->80\/tcp is in use on host ports by something else on this host/);
      const ranged = await program(c[1].eid, {
        'com.docker.network.portmap': [{ Proto: 17, IP: '', Port: 53, HostIP: '', HostPort: 8099, HostPortEnd: 8100 }],
      });
      assert.equal(ranged.status, 200, JSON.stringify(ranged.body));
      assert.equal((await endpoints()).find((e) => e.id === c[1].eid)?.ports?.[0].published, 8100);
      await revoke(c[1].eid);
    } finally {
      proc.kill();
    }
  });

  test('a host address that is not this host’s, or a port out of range, is refused at CreateEndpoint with nothing left in etcd', async () => {
    const d = node.docker;
    for (const [map, re] of [
      [portmap([[6, 8080, 80, '192.0.2.7']]), /field "HostIP": "192\.0\.2\.7" is not allowed; allowed values: .*172\.31\.0\.1/],
      [portmap([[6, 70000, 80]]), /field "HostPort": 70000 is not allowed; allowed values: 1-65535, or 0 for any free port/],
    ] as const) {
      const eid = hex();
      const r = await d.net('CreateEndpoint', {
        NetworkID: nid,
        EndpointID: eid,
        Interface: { Address: '10.65.200.1/32', AddressIPv6: '', MacAddress: '' },
        Options: { 'com.docker.network.portmap': map },
      });
      assert.equal(r.status, 400);
      assert.match(r.body.Err, re);
      assert.ok(!(await endpoints()).some((e) => e.id === eid));
    }
  });

  test('a policy selecting the container can still deny published traffic; removing it lets it in again', async () => {
    const file = path.join(tmp, 'deny.yaml');
    fs.writeFileSync(
      file,
      'kind: Policy\nname: only-9999\nselector: all()\ningress:\n  - action: allow\n    protocol: tcp\n    destination:\n      ports: [9999]\n',
    );
    await node.cli(['policy', 'apply', '-f', file]);
    await until(async () => (await ask(router, HOST4)) === '', 'the policy denying the published port');
    await node.cli(['policy', 'rm', 'only-9999']);
    await until(async () => (await ask(router, HOST4)) === 'web 172.31.0.254', 'published traffic admitted again');
  });

  test('Revoke unpublishes (the record keeps what was asked), a replayed Program publishes again, and both are idempotent', async () => {
    await revoke(c[0].eid);
    await revoke(c[0].eid);
    await until(async () => !(await nftPorts()).includes('8080'), 'the rule gone');
    assert.equal(await ask(router, HOST4), '');
    assert.equal((await endpoints()).find((e) => e.id === c[0].eid)?.ports?.[0].published, undefined);
    assert.equal((await program(c[0].eid, {})).status, 200, 'Docker 29 sends no port map here: the one from CreateEndpoint is used');
    assert.equal((await program(c[0].eid)).status, 200);
    assert.equal(await ask(router, HOST4), 'web 172.31.0.254', 'Program answers once the rule is in the kernel');
  });

  test('-P and a host port range take free ports, shown by calico endpoint ls', async () => {
    await revoke(c[0].eid);
    const r = await program(c[0].eid, {
      'com.docker.network.portmap': [
        { Proto: 6, IP: '', Port: 80, HostIP: '', HostPort: 0, HostPortEnd: 0 },
        { Proto: 6, IP: '', Port: 81, HostIP: HOST4, HostPort: 8100, HostPortEnd: 8110 },
      ],
    });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const ports = (await endpoints()).find((e) => e.id === c[0].eid)!.ports!;
    const [lo, hi] = (await host.sysctl('net/ipv4/ip_local_port_range')).split(/\s+/).map(Number);
    assert.ok(ports[0].published! >= lo && ports[0].published! <= hi, `an ephemeral port: ${ports[0].published}`);
    assert.equal(ports[1].published, 8100);
    assert.equal(await ask(router, HOST4, ports[0].published), 'web 172.31.0.254');
    assert.equal(await ask(router, HOST4, 8100), 'web 172.31.0.254');
    assert.equal(await ask(router, HOST6, 8100), '', 'a binding to an IPv4 address is not on IPv6');
    await revoke(c[0].eid);
    assert.equal((await program(c[0].eid)).status, 200);
  });

  test('a flushed table is rewritten by the periodic check', async () => {
    await host.exec('nft', ['flush', 'table', 'inet', 'calico-ports']);
    assert.doesNotMatch(await nftPorts(), /jump publish/);
    await until(async () => /jump publish/.test(await nftPorts()), 'the rules back');
    assert.equal(await ask(router, HOST4), 'web 172.31.0.254');
  });
});

describe('iptables backend', () => {
  test('the same reachability from nat chains, our nftables table gone; repaired when flushed; and back to nftables', async () => {
    await restartWith({ CALICO_FIREWALL: 'iptables' });
    await until(async () => (await nftPorts()) === '', 'our nftables ports table removed');
    await until(async () => /DNAT/.test(await iptPorts()), 'the DNAT rules');
    const rules = await iptPorts();
    assert.match(rules, /-A PREROUTING -m addrtype --dst-type LOCAL -j cali-ports/);
    assert.match(rules, /-A OUTPUT ! -d 127\.0\.0\.0\/8 -m addrtype --dst-type LOCAL -j cali-ports/);
    assert.match(rules, /-A POSTROUTING -j cali-ports-masq/);
    assert.match(rules, new RegExp(`-A cali-ports -p tcp -m tcp --dport 8080 -j DNAT --to-destination ${c[0].ip4.replace(/\./g, '\\.')}:80`));
    await reachable();
    await host.exec('iptables', ['-w', '-t', 'nat', '-F', 'cali-ports']);
    assert.doesNotMatch(await iptPorts(), /-j DNAT/);
    await until(async () => /-j DNAT/.test(await iptPorts()), 'a flushed chain repaired');
    await restartWith({ CALICO_FIREWALL: undefined });
    await until(async () => (await iptPorts()) === '', 'the iptables chains and their jumps removed');
    await until(async () => /8080/.test(await nftPorts()), 'back in nftables');
    await reachable();
  });

  test('with CALICO_POLICY=off published ports still work', async () => {
    await restartWith({ CALICO_POLICY: 'off' });
    await until(async () => (await ask(router, HOST4)) === 'web 172.31.0.254', 'published without our firewall');
    await restartWith({ CALICO_POLICY: undefined });
  });
});

describe('teardown', () => {
  test('Leave and DeleteEndpoint leave no rule and no record', async () => {
    const d = node.docker;
    await d.ok('net', 'Leave', { NetworkID: nid, EndpointID: c[0].eid });
    await until(async () => !(await nftPorts()).includes('8080'), 'the rule gone at Leave');
    await d.ok('net', 'DeleteEndpoint', { NetworkID: nid, EndpointID: c[0].eid });
    assert.ok(!(await endpoints()).some((e) => e.id === c[0].eid));
    await until(async () => (await nftPorts()) === '', 'no table once nothing is published');
  });
});
