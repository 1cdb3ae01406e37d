/**
 * The `calico` command against a real node and etcd: pools, IPAM inspection and repair,
 * endpoints, hosts and status, in human and JSON form, and bad arguments refused clearly.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { netnsScope, type Netns } from '../harness/netns';
import { startEtcd, type TestEtcd } from '../harness/etcd';
import { startCalico, type CalicoProcess } from '../harness/calico';

const hex = () => randomBytes(32).toString('hex');
const scope = netnsScope();
let ns: Netns;
let etcd: TestEtcd;
let node: CalicoProcess;

before(async () => {
  ns = await scope.create('cli');
  etcd = await startEtcd(ns);
  node = await startCalico(ns, { name: 'cli-host', etcd: etcd.endpoint, env: { CALICO_IP: '172.31.0.9', CALICO_LIVENESS_TTL: '3' } });
  await node.ready();
});

after(async () => {
  await node?.destroy();
  await etcd?.destroy();
  await scope.destroyAll();
});

const cli = (...args: string[]) => node.cli(args, { allowFail: true });

test('pool add, ls, disable, enable and rm manage pools, and RequestPool follows them', async () => {
  assert.equal((await cli('pool', 'add', '10.70.0.0/16', '--block-size', '28')).code, 0);
  const pools = JSON.parse((await cli('pool', 'ls', '--json')).stdout) as Array<{ cidr: string; blockSize: number; disabled: boolean }>;
  assert.deepEqual(
    pools.map((p) => [p.cidr, p.blockSize, p.disabled]),
    [
      ['10.65.0.0/16', 26, false],
      ['10.70.0.0/16', 28, false],
      ['fd65::/64', 122, false],
    ],
  );
  assert.match((await cli('pool', 'ls')).stdout, /10\.70\.0\.0\/16\s+\/28\s+enabled/);
  const req = { AddressSpace: 'CalicoLocalAddressSpace', Pool: '10.70.1.0/24', SubPool: '', Options: null, V6: false };
  assert.equal((await node.docker.ipam('RequestPool', req)).status, 200);
  assert.equal((await cli('pool', 'disable', '10.70.0.0/16')).code, 0);
  await new Promise((r) => setTimeout(r, 1100)); // the node's pool cache lives one second
  const refused = await node.docker.ipam('RequestPool', req);
  assert.equal(refused.status, 400);
  assert.match(refused.body.Err, /disabled; enable it with "calico pool enable 10\.70\.0\.0\/16"/);
  assert.equal((await cli('pool', 'enable', '10.70.0.0/16')).code, 0);
  assert.equal((await cli('pool', 'rm', '10.70.0.0/16')).code, 0);
  assert.equal(JSON.parse((await cli('pool', 'ls', '--json')).stdout).length, 2);
});

test('pool add and set keep outgoing NAT and one encapsulation per pool, shown by pool ls; bad modes change nothing', async () => {
  assert.equal((await cli('pool', 'add', '10.71.0.0/16', '--nat-outgoing', '--vxlan-mode', 'crosssubnet')).code, 0);
  const row = async () =>
    (JSON.parse((await cli('pool', 'ls', '--json')).stdout) as Array<{ cidr: string; natOutgoing: boolean; vxlanMode: string; ipipMode: string }>).find(
      (p) => p.cidr === '10.71.0.0/16',
    );
  const made = (await row())!;
  assert.deepEqual([made.natOutgoing, made.vxlanMode, made.ipipMode], [true, 'CrossSubnet', 'Never']);
  assert.match((await cli('pool', 'ls')).stdout, /10\.71\.0\.0\/16\s+\/26\s+enabled\s+outgoing\s+vxlan:CrossSubnet/);
  const both = await cli('pool', 'set', '10.71.0.0/16', '--ipip-mode', 'Always');
  assert.notEqual(both.code, 0);
  assert.match(both.stderr, /--vxlan-mode CrossSubnet and --ipip-mode Always are both set/);
  for (const [args, message] of [
    [['--nat-outgoing=maybe'], /--nat-outgoing "maybe" is not a boolean: use true or false/],
    [['--vxlan-mode', 'Sometimes'], /--vxlan-mode "Sometimes" is not a mode: use Always, CrossSubnet, Never/],
    [[], /nothing to set/],
  ] as Array<[string[], RegExp]>) {
    const r = await cli('pool', 'set', '10.71.0.0/16', ...args);
    assert.notEqual(r.code, 0, args.join(' '));
    assert.match(r.stderr, message);
  }
  assert.equal((await row())!.vxlanMode, 'CrossSubnet');
  const off = await cli('pool', 'set', '10.71.0.0/16', '--nat-outgoing=false', '--vxlan-mode', 'Never', '--ipip-mode', 'Always');
  assert.equal(off.code, 0, off.stderr);
  assert.deepEqual([(await row())!.natOutgoing, (await row())!.vxlanMode, (await row())!.ipipMode], [false, 'Never', 'Always']);
  assert.equal((await cli('pool', 'rm', '10.71.0.0/16')).code, 0);
});

test('bad pool arguments are refused with a message naming the problem and a non-zero exit', async () => {
  const cases: Array<[string[], RegExp]> = [
    [['pool', 'add', '10.65.1.0/24'], /overlaps existing pool 10\.65\.0\.0\/16/],
    [['pool', 'add', '10.80.0.1/16'], /host bits set; did you mean 10\.80\.0\.0\/16/],
    [['pool', 'add', 'banana'], /"banana" is not a CIDR/],
    [['pool', 'add', '10.80.0.0/16', '--block-size', '40'], /block size 40 is out of range for IPv4: use 20 to 32/],
    [['pool', 'rm', '10.99.0.0/16'], /no pool 10\.99\.0\.0\/16/],
    [['ipam', 'release', 'not-an-ip'], /"not-an-ip" is not an IP address/],
    [['ipam', 'check', '--grace', 'soon'], /--grace "soon" is not a number/],
  ];
  for (const [args, message] of cases) {
    const r = await cli(...args);
    assert.notEqual(r.code, 0, args.join(' '));
    assert.match(r.stderr, message, args.join(' '));
    assert.equal(r.stdout, '', args.join(' '));
  }
});

test('ipam show, check and release find and repair a leaked address; a pool in use cannot be removed', async () => {
  const d = node.docker;
  const nid = hex();
  await d.ok('net', 'CreateNetwork', { NetworkID: nid, Options: {}, IPv4Data: [{ Pool: '0.0.0.0/0', Gateway: '0.0.0.0/0' }], IPv6Data: [] });
  const eid = hex();
  const a = (await d.ok('ipam', 'RequestAddress', { PoolID: 'CalicoPoolIPv4', Address: '', Options: null })).Address.split('/')[0];
  await d.ok('net', 'CreateEndpoint', { NetworkID: nid, EndpointID: eid, Interface: { Address: `${a}/32` }, Options: null });
  const owner = JSON.parse((await cli('ipam', 'show', '--ip', a, '--json')).stdout);
  assert.equal(owner.owner.kind, 'endpoint');
  assert.equal(owner.owner.endpoint, eid);
  assert.match((await cli('ipam', 'show', '--ip', a)).stdout, new RegExp(`is held by endpoint ${eid.slice(0, 12)}`));
  const eps = JSON.parse((await cli('endpoint', 'ls', '--json')).stdout);
  assert.deepEqual(
    eps.map((e: { id: string; ipv4: string[] }) => [e.id, e.ipv4]),
    [[eid, [`${a}/32`]]],
  );
  assert.match((await cli('endpoint', 'ls')).stdout, new RegExp(`cli-host\\s+${eid.slice(0, 12)}`));

  // Releasing an address whose endpoint exists is refused; the pool cannot go either.
  const keep = await cli('ipam', 'release', a);
  assert.equal(keep.code, 1);
  assert.match(keep.stdout, /kept: its endpoint still exists/);
  const rm = await cli('pool', 'rm', '10.65.0.0/16');
  assert.equal(rm.code, 1);
  assert.match(rm.stderr, /still has 1 address\(es\) in use/);

  // The endpoint disappears without its ReleaseAddress (a crash): check reports the leak...
  await d.ok('net', 'DeleteEndpoint', { NetworkID: nid, EndpointID: eid });
  const leak = await cli('ipam', 'check', '--grace', '0', '--json');
  assert.equal(leak.code, 1);
  assert.deepEqual(
    JSON.parse(leak.stdout).problems.map((p: { kind: string; ip: string }) => [p.kind, p.ip]),
    [['allocation-without-endpoint', a]],
  );
  assert.match((await cli('ipam', 'check', '--grace', '0')).stdout, /allocation-without-endpoint: .* no longer exists/);
  // ...and release repairs it.
  assert.equal((await cli('ipam', 'release', a)).code, 0);
  const clean = await cli('ipam', 'check', '--grace', '0');
  assert.equal(clean.code, 0);
  assert.match(clean.stdout, /^ok: 0 allocation\(s\), 0 endpoint\(s\), no problems/);
  await d.ok('net', 'DeleteNetwork', { NetworkID: nid });
});

test('node ls and status show the registered host, its pools and blocks', async () => {
  const hosts = JSON.parse((await cli('node', 'ls', '--json')).stdout) as Array<{ name: string; ipv4: string; asn: number }>;
  assert.deepEqual(
    hosts.map((h) => [h.name, h.ipv4, h.asn]),
    [['cli-host', '172.31.0.9', 64512]],
  );
  assert.match((await cli('node', 'ls')).stdout, /cli-host\s+172\.31\.0\.9\s+64512\s+(yes|no)/);
  const status = JSON.parse((await cli('status', '--json')).stdout);
  assert.equal(status.etcd, 'reachable');
  assert.equal(status.node, 'cli-host');
  assert.equal(status.registered.name, 'cli-host');
  assert.deepEqual(
    status.pools.map((p: { cidr: string }) => p.cidr),
    ['10.65.0.0/16', 'fd65::/64'],
  );
  const human = await cli('status');
  assert.equal(human.code, 0);
  assert.match(human.stdout, /etcd:\s+reachable/);
});

test('node ls shows whether each host is alive: gone at once on a clean stop, after the lease TTL on a crash', async () => {
  const alive = async () =>
    (JSON.parse((await cli('node', 'ls', '--json')).stdout) as Array<{ name: string; alive: boolean }>).find((x) => x.name === 'cli-host')?.alive;
  const until = async (want: boolean, ms: number) => {
    const deadline = Date.now() + ms;
    while ((await alive()) !== want) {
      if (Date.now() > deadline) throw new Error(`alive did not become ${want} within ${ms} ms`);
      await new Promise((r) => setTimeout(r, 200));
    }
  };
  await until(true, 5000);
  assert.match((await cli('node', 'ls')).stdout, /cli-host\s+172\.31\.0\.9\s+64512\s+yes/);
  assert.equal(await node.stop('SIGTERM'), 0);
  assert.equal(await alive(), false, 'a clean stop revokes the lease');
  await node.restart();
  await node.ready();
  await until(true, 5000);
  await node.stop('SIGKILL');
  await until(false, 15_000); // TTL 3 s
  await node.restart();
  await node.ready();
  await until(true, 5000);
});

test('bgp config, bgp peer and node set manage BGP settings, peers and route reflectors', async () => {
  assert.deepEqual(JSON.parse((await cli('bgp', 'config', '--json')).stdout), { asn: 64512, nodeMesh: true });
  assert.deepEqual(JSON.parse((await cli('bgp', 'config', '--as', '65000', '--mesh', 'off', '--json')).stdout), { asn: 65000, nodeMesh: false });
  // A host without CALICO_AS speaks the global default.
  const hosts = async () =>
    (JSON.parse((await cli('node', 'ls', '--json')).stdout) as Array<{ name: string; asn: number; routeReflector?: string }>).find(
      (x) => x.name === 'cli-host',
    )!;
  assert.equal((await hosts()).asn, 65000);
  assert.equal((await cli('bgp', 'peer', 'add', 'tor1', '--ip', '172.31.0.254', '--as', '65100')).code, 0);
  assert.equal((await cli('bgp', 'peer', 'add', 'rack2', '--ip', '172.31.1.254', '--as', '65101', '--host', 'cli-host')).code, 0);
  assert.deepEqual(JSON.parse((await cli('bgp', 'peer', 'ls', '--json')).stdout), [
    { name: 'rack2', ip: '172.31.1.254', asn: 65101, host: 'cli-host' },
    { name: 'tor1', ip: '172.31.0.254', asn: 65100 },
  ]);
  assert.match((await cli('bgp', 'peer', 'ls')).stdout, /tor1\s+172\.31\.0\.254\s+65100\s+\(all\)/);
  for (const [args, message] of [
    [['bgp', 'peer', 'add', 'x', '--ip', '300.1.1.1', '--as', '1'], /"300\.1\.1\.1" is not an IP address/],
    [['bgp', 'peer', 'add', 'x', '--ip', '10.0.0.1', '--as', '0'], /peer AS 0 is out of range/],
    [['bgp', 'peer', 'add', 'Bad_Name', '--ip', '10.0.0.1', '--as', '1'], /must be a DNS label/],
    [['bgp', 'peer', 'rm', 'nope'], /no BGP peer named nope/],
    [['bgp', 'config', '--mesh', 'maybe'], /use on or off/],
    [['node', 'set', 'cli-host', '--route-reflector', 'yes'], /give a cluster ID like 1\.0\.0\.1, or off/],
    [['node', 'set', 'ghost', '--route-reflector', '1.0.0.1'], /no host ghost/],
  ] as Array<[string[], RegExp]>) {
    const r = await cli(...args);
    assert.notEqual(r.code, 0, args.join(' '));
    assert.match(r.stderr, message, args.join(' '));
  }
  assert.equal((await cli('bgp', 'peer', 'rm', 'rack2')).code, 0);
  assert.equal((await cli('node', 'set', 'cli-host', '--route-reflector', '1.0.0.1')).code, 0);
  assert.equal((await hosts()).routeReflector, '1.0.0.1');
  // The role survives calico node re-registering at start.
  await node.stop('SIGTERM');
  await node.restart();
  await node.ready();
  assert.equal((await hosts()).routeReflector, '1.0.0.1');
  assert.equal((await cli('node', 'set', 'cli-host', '--route-reflector', 'off')).code, 0);
  assert.equal((await hosts()).routeReflector, undefined);
  await cli('bgp', 'peer', 'rm', 'tor1');
  await cli('bgp', 'config', '--as', '64512', '--mesh', 'on');
});

test('the CLI says clearly when etcd is unreachable', async () => {
  const r = await node.cli(['pool', 'ls'], { allowFail: true }).then(() =>
    ns.exec('env', ['ETCD_ENDPOINTS=http://127.0.0.1:1', process.execPath, require.resolve('../../cli/main.js'), 'pool', 'ls']).then(
      () => ({ code: 0, stderr: '' }),
      (err: Error) => ({ code: 2, stderr: err.message }),
    ),
  );
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /etcd at http:\/\/127\.0\.0\.1:1 did not answer/);
});
