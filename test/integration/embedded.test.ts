/**
 * The embedded default: with ETCD_ENDPOINTS unset, `calico node` runs its own etcd with data in
 * CALICO_DATA_DIR, the CLI finds it, and SIGTERM removes the sockets and stops that etcd.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { netnsScope } from '../harness/netns';
import { startCalico, type CalicoProcess } from '../harness/calico';

const scope = netnsScope();
let node: CalicoProcess | undefined;

after(async () => {
  await node?.destroy();
  await scope.destroyAll();
});

function etcdPids(dataDir: string): number[] {
  return fs
    .readdirSync('/proc')
    .filter((p) => /^\d+$/.test(p))
    .filter((p) => {
      try {
        return fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0').includes(path.join(dataDir, 'etcd'));
      } catch {
        return false;
      }
    })
    .map(Number);
}

test('without ETCD_ENDPOINTS calico node runs a private etcd, the CLI uses it, and SIGTERM stops it and removes the sockets', async () => {
  const ns = await scope.create('emb');
  node = await startCalico(ns, { name: 'emb-host' });
  await node.ready();
  const endpointFile = path.join(node.dataDir, 'etcd.endpoint');
  assert.match(fs.readFileSync(endpointFile, 'utf8'), /^https:\/\/127\.0\.0\.1:\d+\n$/);
  assert.ok(fs.existsSync(path.join(node.dataDir, 'etcd', 'member')), 'etcd data is under CALICO_DATA_DIR/etcd');
  assert.equal(etcdPids(node.dataDir).length, 1);
  const env = { ...node.env };
  delete env.ETCD_ENDPOINTS;
  const pools = JSON.parse((await node.cli(['pool', 'ls', '--json'])).stdout) as Array<{ cidr: string }>;
  assert.deepEqual(
    pools.map((p) => p.cidr),
    ['10.65.0.0/16', 'fd65::/64'],
  );
  for (const s of ['calico.sock', 'calico-ipam.sock']) {
    const st: fs.Stats = fs.statSync(path.join(node.pluginDir, s));
    assert.ok(st.isSocket());
    assert.equal(st.mode & 0o777, 0o660);
  }

  assert.equal(await node.stop('SIGTERM'), 0);
  assert.deepEqual(fs.readdirSync(node.pluginDir), []);
  assert.deepEqual(etcdPids(node.dataDir), []);

  // Started again, it finds its data: the pools are still there, none is created twice.
  await node.restart();
  await node.ready();
  assert.equal(JSON.parse((await node.cli(['pool', 'ls', '--json'])).stdout).length, 2);
  assert.equal(await node.stop('SIGINT'), 0);
  assert.deepEqual(etcdPids(node.dataDir), []);
});

test('a stale socket left by a crash is replaced at start', async () => {
  const ns = await scope.create('emb2');
  const first = await startCalico(ns, { name: 'emb-host2' });
  await first.ready();
  await first.stop('SIGKILL');
  assert.ok(fs.existsSync(path.join(first.pluginDir, 'calico.sock')), 'SIGKILL leaves the socket behind');
  // The kernel stops the orphaned etcd (parent-death signal), or the next start reaps it.
  await first.restart();
  await first.ready(40_000);
  const r = await first.docker.ok('net', 'GetCapabilities');
  assert.equal(r.Scope, 'local');
  await first.destroy();
});
