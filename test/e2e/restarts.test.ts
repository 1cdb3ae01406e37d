/**
 * Restarts and crashes with a real Docker engine: calico node stopped while containers run,
 * killed while 20 `docker run` are in flight, and dockerd restarted. Reconciliation runs every
 * second here (five seconds of grace) so the suite converges quickly.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { netnsScope } from '../harness/netns';
import { startEtcd, type TestEtcd } from '../harness/etcd';
import { startDockerHost, type DockerHost } from '../harness/docker';

const scope = netnsScope();
let etcd: TestEtcd;
let h: DockerHost;
const CALICO = ['-d', 'calico', '--ipam-driver', 'calico-ipam'];

before(async () => {
  h = await startDockerHost(scope, { name: 'rst', env: { CALICO_RECONCILE_INTERVAL: '1', CALICO_RECONCILE_GRACE: '5' } });
  etcd = await startEtcd(h.ns);
  await h.node.stop('SIGTERM');
  h.node.env.ETCD_ENDPOINTS = etcd.endpoint;
  await h.node.restart();
  await h.node.ready();
  await h.dockerOk(['network', 'create', ...CALICO, 'net']);
});

after(async () => {
  await h?.destroy();
  await etcd?.destroy();
  await scope.destroyAll();
});

const ipOf = (c: string) => h.dockerOk(['inspect', '-f', '{{.NetworkSettings.Networks.net.IPAddress}}', c]);

async function until(fn: () => Promise<boolean>, what: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await fn())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

async function ipamClean(): Promise<boolean> {
  const r = await h.calico(['ipam', 'check', '--grace', '0', '--json']);
  return r.code === 0 && JSON.parse(r.stdout).ok === true;
}

test('containers keep pinging while calico node is stopped and started; new containers work and removal cleans up', async () => {
  await h.dockerOk(['run', '-d', '--name', 'ca', '--network', 'net', 'busybox', 'sleep', '600']);
  await h.dockerOk(['run', '-d', '--name', 'cb', '--network', 'net', 'busybox', 'sleep', '600']);
  const pinging = h.docker(['exec', 'ca', 'ping', '-c', '25', '-i', '0.2', '-W', '1', await ipOf('cb')]);
  await new Promise((r) => setTimeout(r, 1000));
  assert.equal(await h.node.stop('SIGTERM'), 0);
  await new Promise((r) => setTimeout(r, 1500));
  await h.node.restart();
  await h.node.ready();
  const ping = await pinging;
  assert.equal(ping.code, 0, ping.stdout + ping.stderr);
  assert.match(ping.stdout, / 0% packet loss/);
  await h.dockerOk(['run', '-d', '--name', 'cc', '--network', 'net', 'busybox', 'sleep', '600']);
  await h.dockerOk(['exec', 'cc', 'ping', '-c', '1', '-W', '2', await ipOf('ca')]);
  // A host route deleted by hand is put back by reconciliation.
  const ipA = await ipOf('ca');
  await h.ns.ip(['route', 'del', `${ipA}/32`]);
  await until(async () => (await h.ns.ipJson<unknown[]>(['route', 'show', `${ipA}/32`])).length === 1, 'host route repaired', 15_000);
  assert.match(h.node.logs(), /repaired: added missing host route/);
  await h.dockerOk(['exec', 'cc', 'ping', '-c', '1', '-W', '2', ipA]);
  await h.dockerOk(['rm', '-f', 'ca', 'cb', 'cc']);
  assert.ok(await ipamClean(), (await h.calico(['ipam', 'check', '--grace', '0'])).stdout);
});

test('after calico node is killed during 20 docker runs, reconciliation leaves unique addresses and nothing leaked', async () => {
  const runs = Array.from({ length: 20 }, (_, i) =>
    h.docker(['run', '-d', '--name', `k${i}`, '--network', 'net', 'busybox', 'sleep', '600'], { timeoutMs: 120_000 }),
  );
  await new Promise((r) => setTimeout(r, 700));
  await h.node.stop('SIGKILL');
  // Docker retries a plugin whose socket refuses for up to ~15-30 s; come back within that.
  await new Promise((r) => setTimeout(r, 2000));
  await h.node.restart();
  await h.node.ready();
  const results = await Promise.all(runs);
  const running = (await h.dockerOk(['ps', '--filter', 'status=running', '--format', '{{.Names}}'])).split('\n').filter(Boolean);
  assert.ok(running.length > 0, `no container survived: ${results.map((r) => r.stderr).join(' | ')}`);
  const addrs = await Promise.all(running.map(ipOf));
  assert.equal(new Set(addrs).size, addrs.length, `duplicate addresses: ${addrs.join(' ')}`);
  // Containers whose start failed are left created; remove them as a user would.
  const stopped = (await h.dockerOk(['ps', '-a', '--filter', 'status=created', '--format', '{{.Names}}'])).split('\n').filter(Boolean);
  if (stopped.length) await h.dockerOk(['rm', '-f', ...stopped]);
  await until(ipamClean, 'calico ipam check clean after reconciliation');
  const eps = JSON.parse((await h.calico(['endpoint', 'ls', '--json'])).stdout) as unknown[];
  assert.equal(eps.length, running.length);
  await h.dockerOk(['rm', '-f', ...running]);
  await until(ipamClean, 'clean after removal', 20_000);
});

test('after dockerd restarts, networks and containers with a restart policy work again', async () => {
  await h.dockerOk(['run', '-d', '--restart', 'always', '--name', 'r1', '--network', 'net', 'busybox', 'sleep', '600']);
  await h.dockerOk(['run', '-d', '--restart', 'always', '--name', 'r2', '--network', 'net', 'busybox', 'sleep', '600']);
  await h.restartDockerd();
  await until(
    async () => (await h.dockerOk(['ps', '--filter', 'status=running', '--format', '{{.Names}}'])).split('\n').filter(Boolean).length === 2,
    'containers restarted',
    60_000,
  );
  await h.dockerOk(['exec', 'r1', 'ping', '-c', '2', '-W', '2', await ipOf('r2')]);
  await h.dockerOk(['run', '--rm', '--network', 'net', 'busybox', 'ping', '-c', '1', '-W', '2', await ipOf('r1')]);
  await h.dockerOk(['rm', '-f', 'r1', 'r2']);
  await until(ipamClean, 'clean after removal', 20_000);
});
