/**
 * Swarm: two hosts on a fabric form a swarm, the managed plugin is installed on both, and a
 * calico network for services is made as the README describes (a config-only network on each
 * node, then `--scope swarm --config-from` on the manager). A 4-replica service spreads over both
 * nodes, its tasks reach each other across nodes, and scaling to 0 and back leaks nothing.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { netnsScope } from '../harness/netns';
import { type Fabric, startFabric } from '../harness/fabric';
import { type DockerHost, startDockerHost } from '../harness/docker';
import { type InstalledPlugin, installPlugin } from '../harness/plugin';

const PLUGIN = 'calico-swarm:latest';
const scope = netnsScope();
let fabric: Fabric;
const hosts: DockerHost[] = [];
const plugins: InstalledPlugin[] = [];

before(async () => {
  fabric = await startFabric(scope);
  for (const i of [1, 2]) {
    const { ns, ip } = await fabric.addHost(`sw${i}`, i);
    const h = await startDockerHost(scope, { name: `sw${i}`, etcd: fabric.etcd.endpoint, onFabric: { ns, ip } });
    await h.node.stop('SIGTERM'); // the managed plugin is this host's calico node
    h.node.env.ETCD_ENDPOINTS = fabric.etcd.endpoint;
    plugins.push(
      await installPlugin(h, {
        name: PLUGIN,
        etcd: fabric.etcd.endpoint,
        nodeName: `sw${i}`,
        env: { CALICO_IP: ip, CALICO_RECONCILE_INTERVAL: '2', CALICO_RECONCILE_GRACE: '5' },
      }),
    );
    hosts.push(h);
  }
  const [m, w] = hosts;
  await m.dockerOk(['swarm', 'init', '--advertise-addr', '172.31.0.1']);
  await w.dockerOk(['swarm', 'join', '--token', await m.dockerOk(['swarm', 'join-token', '-q', 'worker']), '172.31.0.1:2377']);
});

after(async () => {
  for (const h of hosts) await h.docker(['swarm', 'leave', '-f']);
  for (const p of plugins) await p.remove();
  for (const h of hosts) await h.destroy();
  await fabric?.etcd.destroy();
  await scope.destroyAll();
});

async function until(fn: () => Promise<boolean>, what: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await fn().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** Running tasks of the service on each host: container name and address on the swarm network. */
async function tasks(): Promise<Array<{ h: DockerHost; name: string; ip: string }>> {
  const out: Array<{ h: DockerHost; name: string; ip: string }> = [];
  for (const h of hosts) {
    const names = (await h.dockerOk(['ps', '--filter', 'label=com.docker.swarm.service.name=svc', '--format', '{{.Names}}'])).split('\n').filter(Boolean);
    for (const name of names) out.push({ h, name, ip: await h.dockerOk(['inspect', '-f', '{{.NetworkSettings.Networks.swn.IPAddress}}', name]) });
  }
  return out;
}

async function ipamClean(): Promise<boolean> {
  const r = await hosts[0].calico(['ipam', 'check', '--grace', '0', '--json']);
  return r.code === 0 && JSON.parse(r.stdout).allocations === 0;
}

test('a 4-replica service on a calico swarm network spreads over both nodes and its tasks reach each other', async () => {
  const [m] = hosts;
  for (const h of hosts) await h.dockerOk(['network', 'create', '--config-only', '--ipam-driver', PLUGIN, '--subnet', '10.65.100.0/24', 'swcfg']);
  await m.dockerOk(['network', 'create', '-d', PLUGIN, '--scope', 'swarm', '--config-from', 'swcfg', '--attachable', 'swn']);
  await m.dockerOk([
    'service',
    'create',
    '--detach',
    '--name',
    'svc',
    '--replicas',
    '4',
    '--network',
    'swn',
    '--endpoint-mode',
    'dnsrr',
    'busybox',
    'sleep',
    '3600',
  ]);
  await until(async () => (await tasks()).length === 4, '4 tasks running');
  const ts = await tasks();
  assert.deepEqual([...new Set(ts.map((t) => t.h.name))].sort(), ['sw1', 'sw2'], 'tasks on both nodes');
  assert.equal(new Set(ts.map((t) => t.ip)).size, 4, `unique addresses: ${ts.map((t) => t.ip).join(' ')}`);
  for (const a of ts)
    for (const b of ts)
      if (a !== b)
        await until(async () => (await a.h.docker(['exec', a.name, 'ping', '-c', '1', '-W', '1', b.ip])).code === 0, `${a.name} -> ${b.name}`, 30_000);
});

test('scaling to 0 and back to 4 works and leaves no address leaked', async () => {
  const [m] = hosts;
  await m.dockerOk(['service', 'scale', '--detach', 'svc=0']);
  await until(async () => (await tasks()).length === 0, 'tasks gone');
  await until(ipamClean, 'no allocation left after scaling to 0');
  await m.dockerOk(['service', 'scale', '--detach', 'svc=4']);
  await until(async () => (await tasks()).length === 4, '4 tasks again');
  const ts = await tasks();
  assert.equal(new Set(ts.map((t) => t.ip)).size, 4);
  await until(async () => (await ts[0].h.docker(['exec', ts[0].name, 'ping', '-c', '1', '-W', '1', ts[3].ip])).code === 0, 'ping after scaling back', 30_000);
  await m.dockerOk(['service', 'rm', 'svc']);
  await until(async () => (await tasks()).length === 0, 'service removed');
  await until(ipamClean, 'no allocation left after removing the service');
});
