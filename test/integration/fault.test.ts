/**
 * etcd outages. While etcd is down, requests that need it fail fast with a message that says
 * so, and nothing is half-written; when etcd returns, the same calico node serves again.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { netnsScope, type Netns } from '../harness/netns';
import { startEtcd, type TestEtcd } from '../harness/etcd';
import { startCalico, type CalicoProcess } from '../harness/calico';
import { callPlugin } from '../harness/plugin-client';

const hex = () => randomBytes(32).toString('hex');
const scope = netnsScope();
let ns: Netns;
let etcd: TestEtcd;
let node: CalicoProcess;

before(async () => {
  ns = await scope.create('ft');
  etcd = await startEtcd(ns);
});

after(async () => {
  await node?.destroy();
  await etcd?.destroy();
  await scope.destroyAll();
});

async function until<T>(fn: () => Promise<T | undefined>, timeoutMs: number, what: string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`${what} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

test('a node started while etcd is down answers Activate and GetCapabilities at once and serves once etcd appears', async () => {
  await etcd.stop();
  node = await startCalico(ns, { name: 'ft-host', etcd: etcd.endpoint });
  const t0 = Date.now();
  assert.deepEqual((await callPlugin(node.docker.networkSock, 'Plugin.Activate')).body, { Implements: ['NetworkDriver'] });
  assert.deepEqual(await node.docker.ok('net', 'GetCapabilities'), { Scope: 'local', ConnectivityScope: 'global', GwAllocChecker: true });
  assert.deepEqual(await node.docker.ok('ipam', 'GetCapabilities'), { RequiresMACAddress: false, RequiresRequestReplay: false });
  assert.ok(Date.now() - t0 < 1000, 'capabilities waited for etcd');
  const early = await node.docker.ipam('RequestPool', { AddressSpace: 'CalicoLocalAddressSpace', Pool: '', SubPool: '', Options: null, V6: false });
  assert.equal(early.status, 500);
  assert.match(early.body.Err, /not ready/);
  await etcd.start();
  await node.ready(30_000);
  assert.equal(
    (await node.docker.ok('ipam', 'RequestPool', { AddressSpace: 'CalicoLocalAddressSpace', Pool: '', SubPool: '', Options: null, V6: false })).PoolID,
    'CalicoPoolIPv4',
  );
});

test('with etcd stopped mid-run requests fail fast and clearly, write nothing, and succeed again when etcd is back', async () => {
  const d = node.docker;
  const nid = hex();
  await d.ok('net', 'CreateNetwork', {
    NetworkID: nid,
    Options: { 'com.docker.network.generic': {} },
    IPv4Data: [{ AddressSpace: 'CalicoLocalAddressSpace', Pool: '0.0.0.0/0', Gateway: '0.0.0.0/0' }],
    IPv6Data: [],
  });
  const a = (await d.ok('ipam', 'RequestAddress', { PoolID: 'CalicoPoolIPv4', Address: '', Options: null })).Address;
  const before = JSON.parse((await node.cli(['ipam', 'show', '--allocations', '--json'])).stdout);

  await etcd.stop();
  for (const [which, method, body] of [
    ['ipam', 'RequestAddress', { PoolID: 'CalicoPoolIPv4', Address: '', Options: null }],
    ['net', 'CreateEndpoint', { NetworkID: nid, EndpointID: hex(), Interface: { Address: a }, Options: null }],
    ['net', 'CreateNetwork', { NetworkID: hex(), Options: {}, IPv4Data: [{ Pool: '0.0.0.0/0', Gateway: '0.0.0.0/0' }], IPv6Data: [] }],
  ] as const) {
    const t0 = Date.now();
    const r = await (which === 'ipam' ? d.ipam(method, body) : d.net(method, body));
    const ms = Date.now() - t0;
    assert.equal(r.status, 500, `${method}: ${r.raw}`);
    assert.match(r.body.Err, /etcd at http:\/\/127\.0\.0\.1:\d+ did not answer/, method);
    assert.ok(ms < 8000, `${method} took ${ms} ms to fail`);
  }
  // Calls that need no etcd keep working.
  assert.deepEqual(await d.ok('net', 'Leave', { NetworkID: nid, EndpointID: hex() }), {});
  assert.deepEqual(await d.ok('net', 'GetCapabilities'), { Scope: 'local', ConnectivityScope: 'global', GwAllocChecker: true });

  await etcd.start();
  const b = await until(
    async () => {
      const r = await d.ipam('RequestAddress', { PoolID: 'CalicoPoolIPv4', Address: '', Options: null });
      return r.status === 200 ? (r.body.Address as string) : undefined;
    },
    30_000,
    'RequestAddress did not succeed after etcd returned',
  );
  assert.notEqual(b, a);
  // Nothing from the failed requests was written: exactly one more allocation than before.
  const afterList = JSON.parse((await node.cli(['ipam', 'show', '--allocations', '--json'])).stdout) as unknown[];
  assert.equal(afterList.length, before.length + 1);
  assert.equal(JSON.parse((await node.cli(['endpoint', 'ls', '--json'])).stdout).length, 0);
  for (const ip of [a, b]) await d.ok('ipam', 'ReleaseAddress', { PoolID: 'CalicoPoolIPv4', Address: ip.split('/')[0] });
  await d.ok('net', 'DeleteNetwork', { NetworkID: nid });
  const check = await node.cli(['ipam', 'check', '--grace', '0', '--json'], { allowFail: true });
  assert.deepEqual(JSON.parse(check.stdout).problems, []);
});
