/**
 * The managed plugin: built by scripts/build-plugin.sh without a registry, installed with
 * `docker plugin create`, configured with `docker plugin set`, enabled, and used through its
 * NAME:TAG for both the network and the IPAM driver.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { netnsScope } from '../harness/netns';
import { startEtcd, type TestEtcd } from '../harness/etcd';
import { runCmd, startDockerHost, type DockerHost } from '../harness/docker';

const PLUGIN = 'calico-test:latest';
const scope = netnsScope();
let etcd: TestEtcd;
let h: DockerHost;
let dir: string;

before(async () => {
  h = await startDockerHost(scope, { name: 'plg' });
  // The managed plugin replaces the legacy node on this host.
  await h.node.stop('SIGTERM');
  etcd = await startEtcd(h.ns);
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'calico-plugin-'));
  const built = await runCmd(path.resolve(__dirname, '../../../scripts/build-plugin.sh'), [path.join(dir, 'plugin')], { timeoutMs: 300_000 });
  assert.equal(built.code, 0, built.stderr);
  for (const d of ['data', 'certs']) fs.mkdirSync(path.join(dir, d));
});

after(async () => {
  await h?.docker(['plugin', 'disable', '-f', PLUGIN]);
  await h?.docker(['plugin', 'rm', '-f', PLUGIN]);
  await h?.destroy();
  await etcd?.destroy();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
  await scope.destroyAll();
});

test('the managed plugin is created, configured and enabled, and networks containers through NAME:TAG for both drivers', async () => {
  await h.dockerOk(['plugin', 'create', PLUGIN, path.join(dir, 'plugin')]);
  await h.dockerOk([
    'plugin', 'set', PLUGIN,
    `ETCD_ENDPOINTS=${etcd.endpoint}`,
    'CALICO_NODENAME=plg-managed',
    'CALICO_IPV4POOL_CIDR=10.67.0.0/16',
    'CALICO_IPV6POOL_CIDR=fd67::/64',
    'CALICO_LOG_LEVEL=debug',
    `data.source=${path.join(dir, 'data')}`,
    `etcd-certs.source=${path.join(dir, 'certs')}`,
    `docker-sock.source=${h.dockerHost.replace('unix://', '')}`,
  ]);
  await h.dockerOk(['plugin', 'enable', PLUGIN]);
  assert.match(await h.dockerOk(['plugin', 'ls', '--format', '{{.Name}} {{.Enabled}}']), /calico-test:latest true/);

  await h.dockerOk(['network', 'create', '-d', PLUGIN, '--ipam-driver', PLUGIN, '--ipv6', 'mnet']);
  await h.dockerOk(['run', '-d', '--name', 'm1', '--network', 'mnet', 'busybox', 'sleep', '600']);
  await h.dockerOk(['run', '-d', '--name', 'm2', '--network', 'mnet', 'busybox', 'sleep', '600']);
  const ip = (c: string, f: string) => h.dockerOk(['inspect', '-f', `{{.NetworkSettings.Networks.mnet.${f}}}`, c]);
  const [a, b6] = [await ip('m1', 'IPAddress'), await ip('m2', 'GlobalIPv6Address')];
  assert.match(a, /^10\.67\./);
  assert.equal(await h.dockerOk(['exec', 'm2', 'ip', 'route']), 'default via 169.254.1.1 dev eth0 \n169.254.1.1 dev eth0 scope link'.trim());
  await h.dockerOk(['exec', 'm2', 'ping', '-c', '2', '-W', '2', a]);
  await h.dockerOk(['exec', 'm1', 'ping', '-6', '-c', '2', '-W', '2', b6]);
  // The host side was wired by the plugin through the host's /proc (its own /proc/sys is read-only).
  const eid = await ip('m1', 'EndpointID');
  assert.equal(await h.ns.sysctl(`net/ipv4/conf/cali${eid.slice(0, 11)}/proxy_arp`), '1');

  const refused = await h.docker(['network', 'create', '-d', PLUGIN, '--ipam-driver', PLUGIN, '-o', 'bogus=1', 'bad']);
  assert.notEqual(refused.code, 0);
  assert.match(refused.stderr, /calico does not support the option bogus/);

  await h.dockerOk(['rm', '-f', 'm1', 'm2']);
  await h.dockerOk(['network', 'rm', 'mnet']);
  const env = [`ETCD_ENDPOINTS=${etcd.endpoint}`, process.execPath, path.resolve(__dirname, '../../cli/main.js')];
  const check = await h.ns.exec('env', [...env, 'ipam', 'check', '--grace', '0', '--json']);
  assert.deepEqual(JSON.parse(check.stdout).problems, []);
  const hosts = JSON.parse((await h.ns.exec('env', [...env, 'node', 'ls', '--json'])).stdout) as Array<{ name: string }>;
  assert.ok(hosts.some((x) => x.name === 'plg-managed'));
});
