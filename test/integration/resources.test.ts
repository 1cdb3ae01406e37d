/**
 * calicoctl's verbs through the real `calico` command against real etcd: v3 manifests applied,
 * created, replaced, read in every output form and deleted, seen by `calico pool` / `calico bgp`
 * / `calico policy`, and bad files refused with a non-zero exit and nothing written.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parse } from 'yaml';
import { netnsScope, type Netns } from '../harness/netns';
import { startEtcd, type TestEtcd } from '../harness/etcd';
import { startCalico, type CalicoProcess } from '../harness/calico';

const scope = netnsScope();
let ns: Netns;
let etcd: TestEtcd;
let node: CalicoProcess;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'calico-resources-'));

before(async () => {
  ns = await scope.create('res');
  etcd = await startEtcd(ns);
  node = await startCalico(ns, { name: 'res-host', etcd: etcd.endpoint, env: { CALICO_IP: '172.31.0.19' } });
  await node.ready();
});

after(async () => {
  await node?.destroy();
  await etcd?.destroy();
  await scope.destroyAll();
  fs.rmSync(dir, { recursive: true, force: true });
});

const cli = (...args: string[]) => node.cli(args, { allowFail: true });
let n = 0;
const file = (text: string) => {
  const f = path.join(dir, `m${n++}.yaml`);
  fs.writeFileSync(f, text);
  return f;
};
const V = 'apiVersion: projectcalico.org/v3\n';
const MANIFEST = `${V}kind: IPPool
metadata:
  name: blue
spec:
  cidr: 10.88.0.0/16
  blockSize: 27
  natOutgoing: false
  ipipMode: Never
  vxlanMode: Never
  nodeSelector: all()
---
${V}kind: BGPPeer
metadata:
  name: tor
spec:
  peerIP: 192.0.2.10
  asNumber: 65010
  node: res-host
---
${V}kind: BGPConfiguration
metadata:
  name: default
spec:
  asNumber: 64600
  nodeToNodeMeshEnabled: false
  logSeverityScreen: Info
---
${V}kind: GlobalNetworkPolicy
metadata:
  name: web
spec:
  order: 10
  selector: role == 'web'
  ingress:
    - action: Allow
      protocol: TCP
      source:
        selector: role == 'frontend'
      destination:
        ports: [80]
`;
const poolNames = async () =>
  (JSON.parse((await cli('get', 'ippool', '-o', 'json')).stdout) as { items: Array<{ metadata: { name: string } }> }).items.map((i) => i.metadata.name);

test('apply writes v3 resources that calico pool, bgp and policy then show, and get prints them as yaml, json and tables', async () => {
  const applied = await cli('apply', '-f', file(MANIFEST));
  assert.equal(applied.code, 0, applied.stderr);
  assert.match(applied.stdout, /applied 4 resource\(s\): IPPool blue, BGPPeer tor, BGPConfiguration default, GlobalNetworkPolicy web/);

  const pools = JSON.parse((await cli('pool', 'ls', '--json')).stdout) as Array<{ cidr: string; blockSize: number }>;
  assert.ok(pools.some((p) => p.cidr === '10.88.0.0/16' && p.blockSize === 27));
  assert.deepEqual(JSON.parse((await cli('bgp', 'config', '--json')).stdout), { asn: 64600, nodeMesh: false });
  assert.deepEqual(JSON.parse((await cli('bgp', 'peer', 'ls', '--json')).stdout), [{ name: 'tor', ip: '192.0.2.10', asn: 65010, host: 'res-host' }]);
  assert.match((await cli('policy', 'get', 'web')).stdout, /selector: role == 'web'/);

  const yaml = parse((await cli('get', 'ippool', 'blue', '-o', 'yaml')).stdout) as { kind: string; spec: Record<string, unknown> };
  assert.deepEqual([yaml.kind, yaml.spec.cidr, yaml.spec.blockSize, yaml.spec.ipipMode], ['IPPool', '10.88.0.0/16', 27, 'Never']);
  const gnp = JSON.parse((await cli('get', 'gnp', 'web', '-o', 'json')).stdout) as {
    spec: { types: string[]; ingress: Array<{ action: string; protocol: string }> };
  };
  assert.deepEqual([gnp.spec.types, gnp.spec.ingress[0].action, gnp.spec.ingress[0].protocol], [['Ingress'], 'Allow', 'TCP']);
  assert.match((await cli('get', 'bgppeers')).stdout, /tor\s+192\.0\.2\.10\s+res-host\s+65010/);
  assert.match((await cli('get', 'ippool', '-o', 'wide')).stdout, /blue\s+10\.88\.0\.0\/16\s+all\(\)\s+27\s+false\s+Never\s+Never\s+false/);
  assert.match((await cli('get', 'bgpconfig')).stdout, /default\s+Info\s+false\s+64600/);

  // What get -o yaml prints (a List) applies again unchanged.
  const listed = (await cli('get', 'globalnetworkpolicy', '-o', 'yaml')).stdout;
  const again = await cli('apply', '-f', file(listed));
  assert.equal(again.code, 0, again.stderr);
  assert.equal((await cli('get', 'gnp', 'web', '-o', 'json')).stdout, JSON.stringify(gnp, null, 2) + '\n');
});

test('a GlobalNetworkSet applies, lists with its nets and labels, round-trips through get -o yaml and deletes by kind and name', async () => {
  const gns = `${V}kind: GlobalNetworkSet\nmetadata:\n  name: partners\n  labels: {role: partner}\nspec:\n  nets: [198.51.100.0/24, 192.0.2.7, "2001:db8::/32"]\n`;
  const applied = await cli('apply', '-f', file(gns));
  assert.equal(applied.code, 0, applied.stderr);
  assert.match(applied.stdout, /applied 1 resource\(s\): GlobalNetworkSet partners/);
  assert.match((await cli('get', 'gns', '-o', 'wide')).stdout, /partners\s+198\.51\.100\.0\/24,192\.0\.2\.7\/32,2001:db8::\/32\s+role=partner/);
  const listed = (await cli('get', 'globalnetworksets', '-o', 'yaml')).stdout;
  assert.equal((await cli('replace', '-f', file(listed))).code, 0);
  const deleted = await cli('delete', 'globalnetworkset', 'partners');
  assert.equal(deleted.code, 0, deleted.stderr);
  assert.notEqual((await cli('get', 'gns', 'partners')).code, 0);
});

test('create refuses an existing resource and replace an absent one, with a non-zero exit and nothing written', async () => {
  const pool = (name: string, cidr: string, extra = '') => `${V}kind: IPPool\nmetadata:\n  name: ${name}\nspec:\n  cidr: ${cidr}\n${extra}`;
  const created = await cli('create', '-f', file(pool('green', '10.89.0.0/16')));
  assert.equal(created.code, 0, created.stderr);
  const twice = await cli('create', '-f', file(`${pool('red', '10.90.0.0/16')}---\n${pool('green', '10.89.0.0/16')}`));
  assert.notEqual(twice.code, 0);
  assert.match(twice.stderr, /IPPool green already exists/);
  const absent = await cli('replace', '-f', file(`${pool('green', '10.89.0.0/16', '  disabled: true\n')}---\n${pool('red', '10.90.0.0/16')}`));
  assert.notEqual(absent.code, 0);
  assert.match(absent.stderr, /IPPool red does not exist/);
  assert.ok(!(await poolNames()).includes('red'));
  assert.equal((parse((await cli('get', 'ippool', 'green', '-o', 'yaml')).stdout) as { spec: { disabled: boolean } }).spec.disabled, false);

  const replaced = await cli('replace', '-f', file(pool('green', '10.89.0.0/16', '  disabled: true\n')));
  assert.equal(replaced.code, 0, replaced.stderr);
  assert.match((await cli('pool', 'ls')).stdout, /10\.89\.0\.0\/16\s+\/26\s+disabled/);
});

test('delete by file and by kind and name removes resources, and a missing one fails the whole delete', async () => {
  const missing = await cli('delete', 'bgppeer', 'nobody');
  assert.notEqual(missing.code, 0);
  assert.match(missing.stderr, /BGPPeer nobody does not exist/);
  const byName = await cli('delete', 'ippool', 'green');
  assert.equal(byName.code, 0, byName.stderr);
  assert.ok(!(await poolNames()).includes('green'));
  const some = `${V}kind: BGPPeer\nmetadata: {name: tor}\nspec: {peerIP: 192.0.2.10, asNumber: 65010}\n---\n${V}kind: BGPPeer\nmetadata: {name: ghost}\nspec: {peerIP: 192.0.2.11, asNumber: 65010}\n`;
  const partial = await cli('delete', '-f', file(some));
  assert.notEqual(partial.code, 0);
  assert.equal(JSON.parse((await cli('bgp', 'peer', 'ls', '--json')).stdout).length, 1, 'nothing deleted when one is missing');
  const byFile = await cli('delete', '-f', file(MANIFEST.split('---\n').slice(1, 2).join('')));
  assert.equal(byFile.code, 0, byFile.stderr);
  assert.deepEqual(JSON.parse((await cli('bgp', 'peer', 'ls', '--json')).stdout), []);
});

test('bad files exit non-zero, name the item and field, and write nothing', async () => {
  const before = await poolNames();
  const cases: Array<[string, RegExp]> = [
    [`${V}kind: Frobnicator\nmetadata: {name: x}\nspec: {}\n`, /unknown kind "Frobnicator"/],
    [`${V}kind: IPPool\nmetadata: {name: x}\nspec: {cidr: 10.91.0.0/16, allowedUses: [Workload]}\n`, /field spec: unknown field "allowedUses"/],
    [`apiVersion: v1\nkind: IPPool\nmetadata: {name: x}\nspec: {cidr: 10.91.0.0/16}\n`, /field apiVersion: must be projectcalico.org\/v3/],
    [`${V}kind: IPPool\nmetadata: {name: x}\nspec: {cidr: 10.91.0.0/16, natOutgoing: maybe}\n`, /field spec\.natOutgoing/],
    [`${V}kind: IPPool\nmetadata: {name: x}\nspec: {cidr: 10.91.0.0/16, vxlanMode: Always, ipipMode: Always}\n`, /both set/],
    [`${V}kind: IPPool\nmetadata: {name: ok}\nspec: {cidr: 10.92.0.0/16}\n---\nkind: [broken\n`, /neither valid YAML nor JSON/],
    [
      `${V}kind: IPPool\nmetadata: {name: ok}\nspec: {cidr: 10.92.0.0/16}\n---\n${V}kind: IPPool\nmetadata: {name: y}\nspec: {cidr: 10.92.1.0/24}\n`,
      /overlaps pool 10\.92\.0\.0\/16/,
    ],
  ];
  for (const [text, re] of cases) {
    const r = await cli('apply', '-f', file(text));
    assert.notEqual(r.code, 0, text);
    assert.match(r.stderr, re);
  }
  assert.deepEqual(await poolNames(), before);
  const kind = await cli('get', 'widgets');
  assert.notEqual(kind.code, 0);
  assert.match(kind.stderr, /unknown resource kind "widgets"/);
});

test('an applied pool keeps its name when the node carves blocks from it, and cannot be deleted while an address is in use', async () => {
  const d = node.docker;
  const applied = await cli('apply', '-f', file(`${V}kind: IPPool\nmetadata: {name: orange}\nspec: {cidr: 10.93.0.0/16}\n`));
  assert.equal(applied.code, 0, applied.stderr);
  const req = { AddressSpace: 'CalicoLocalAddressSpace', Pool: '10.93.0.0/16', SubPool: '', Options: null, V6: false };
  const { PoolID } = (await d.ok('ipam', 'RequestPool', req)) as { PoolID: string };
  const { Address } = (await d.ok('ipam', 'RequestAddress', { PoolID, Address: '', Options: null })) as { Address: string };
  assert.match(Address, /^10\.93\./);
  assert.equal((parse((await cli('get', 'ippool', 'orange', '-o', 'yaml')).stdout) as { spec: { cidr: string } }).spec.cidr, '10.93.0.0/16');
  const inUse = await cli('delete', 'ippool', 'orange');
  assert.notEqual(inUse.code, 0);
  assert.match(inUse.stderr, /still has 1 address\(es\) in use/);
  await d.ok('ipam', 'ReleaseAddress', { PoolID, Address: Address.split('/')[0] });
  const gone = await cli('delete', 'ippool', 'orange');
  assert.equal(gone.code, 0, gone.stderr);
  assert.ok(!(await poolNames()).includes('orange'));
});
