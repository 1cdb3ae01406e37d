/**
 * The suites that matter, once, on a real 3-member etcd cluster: two hosts with real dockerd
 * (its own iptables on), `calico node` and BIRD on one fabric, every host's ETCD_ENDPOINTS
 * listing all three members. Allocation through Docker, cross-host traffic over BIRD's block
 * routes, a policy taking effect on both hosts, the etcd leader SIGKILLed while containers keep
 * starting on both hosts, and a node restart while that member is still down. Compact on
 * purpose: the single-member suites (fabric, policy, restarts) cover each area in depth.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { netnsScope } from '../harness/netns';
import { type Fabric, startFabric } from '../harness/fabric';
import { type DockerHost, startDockerHost } from '../harness/docker';

const scope = netnsScope();
let fabric: Fabric;
const hosts: DockerHost[] = [];
const ip: Record<string, string> = {};
const where: Record<string, DockerHost> = {};
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'calico-cluster-'));
const LABEL = 'org.projectcalico.label.';

async function host(i: number): Promise<DockerHost> {
  const { ns, ip: addr } = await fabric.addHost(`cl${i}`, 40 + i);
  const h = await startDockerHost(scope, {
    name: `cl${i}`,
    etcd: fabric.etcd.endpoint,
    env: { CALICO_IP: addr },
    onFabric: { ns, ip: addr },
    dockerIptables: true,
  });
  await h.dockerOk(['network', 'create', '-d', 'calico', '--ipam-driver', 'calico-ipam', 'blue']);
  hosts.push(h);
  return h;
}

/** A container on network blue serving "ok" on TCP 80, with calico labels. */
async function run(h: DockerHost, name: string, labels: Record<string, string> = {}): Promise<string> {
  const l = Object.entries(labels).flatMap(([k, v]) => ['-l', `${LABEL}${k}=${v}`]);
  await h.dockerOk(['run', '-d', '--name', name, '--network', 'blue', ...l, 'busybox', 'sh', '-c', 'nc -ll -p 80 -e echo ok & exec sleep 3600']);
  ip[name] = await h.dockerOk(['inspect', '-f', '{{.NetworkSettings.Networks.blue.IPAddress}}', name]);
  where[name] = h;
  return ip[name];
}

async function until(fn: () => Promise<boolean>, what: string, timeoutMs = 20_000): Promise<number> {
  const t0 = Date.now();
  while (!(await fn().catch(() => false))) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return Date.now() - t0;
}

const pings = (from: string, to: string) => where[from].docker(['exec', from, 'ping', '-c', '1', '-W', '1', ip[to]]).then((r) => r.code === 0);
const tcp = (from: string, to: string) =>
  where[from].docker(['exec', from, 'nc', '-w', '1', ip[to], '80']).then((r) => r.code === 0 && r.stdout.trim() === 'ok');
const birdRoutes = (h: DockerHost) => h.ns.ipJson<Array<{ dst: string; gateway?: string }>>(['route', 'show', 'proto', 'bird']);
const labelled = (h: DockerHost, name: string) =>
  until(async () => {
    const eps = JSON.parse((await h.calico(['endpoint', 'ls', '--json'])).stdout) as Array<{ containerName?: string; labels: Record<string, string> }>;
    return eps.some((e) => e.containerName === name && Object.keys(e.labels).length > 0);
  }, `labels of ${name} learned`);

before(async () => {
  fabric = await startFabric(scope, { etcd: 'cluster' });
  await host(1);
  await host(2);
});

after(async () => {
  for (const h of hosts) await h.destroy();
  await fabric?.etcd.destroy();
  await scope.destroyAll();
  fs.rmSync(tmp, { recursive: true, force: true });
});

test('on a 3-member etcd cluster, containers started through Docker on two hosts reach each other over BIRD block routes', async () => {
  assert.equal(fabric.etcd.endpoint.split(',').length, 3, fabric.etcd.endpoint);
  const [h1, h2] = hosts;
  await run(h1, 'a1');
  await run(h2, 'a2');
  await until(() => pings('a1', 'a2'), 'a1 -> a2');
  await until(() => tcp('a2', 'a1'), 'a2 -> a1:80');
  for (const h of hosts) {
    const foreign = (await birdRoutes(h)).filter((r) => r.gateway);
    assert.ok(foreign.length >= 1 && foreign.every((r) => r.dst.endsWith('/26')), `${h.name}: ${JSON.stringify(foreign)}`);
  }
});

test('a policy applied on one host takes effect on the other: only role == frontend reaches role == db on TCP 80', async () => {
  const [h1, h2] = hosts;
  await run(h1, 'fe', { role: 'frontend' });
  await run(h2, 'db', { role: 'db' });
  await labelled(h1, 'fe');
  await labelled(h2, 'db');
  await until(() => tcp('a1', 'db'), 'a1 -> db:80 before the policy');
  const file = path.join(tmp, 'fe-to-db.yaml');
  fs.writeFileSync(
    file,
    "kind: Policy\nname: fe-to-db\norder: 100\nselector: role == 'db'\ntypes: [ingress]\ningress:\n  - action: allow\n    protocol: tcp\n    source:\n      selector: role == 'frontend'\n    destination:\n      ports: [80]\n",
  );
  const applied = await h1.calico(['policy', 'apply', '-f', file]);
  assert.equal(applied.code, 0, applied.stderr);
  await until(async () => !(await tcp('a1', 'db')), 'a1 -> db:80 denied');
  assert.equal(await tcp('fe', 'db'), true, 'fe -> db:80 allowed');
  const rm = await h2.calico(['policy', 'rm', 'fe-to-db']);
  assert.equal(rm.code, 0, rm.stderr);
  await until(() => tcp('a1', 'db'), 'a1 -> db:80 again once the policy is gone');
});

test('the etcd leader SIGKILLed while containers keep starting on both hosts: every start succeeds with a unique address that reaches the other host', async () => {
  const cluster = fabric.cluster!;
  const leader = await cluster.healthy();
  const PER_HOST = 5;
  const started: string[] = [];
  let killed: Promise<void> | undefined;
  await Promise.all(
    hosts.map(async (h, hi) => {
      for (let i = 0; i < PER_HOST; i++) {
        // The leader goes once the first host has started two containers; both keep starting.
        if (i === 2 && hi === 0) killed = cluster.kill(leader, 'SIGKILL');
        await run(h, `k${hi}-${i}`);
        started.push(`k${hi}-${i}`);
      }
    }),
  );
  await killed;
  assert.equal(started.length, 2 * PER_HOST);
  const all = Object.values(ip);
  assert.equal(new Set(all).size, all.length, `an address was handed out twice: ${all.join(' ')}`);
  await until(() => pings('k0-4', 'k1-4'), 'k0-4 -> k1-4 (started after the failover)');
  const check = await hosts[0].calico(['ipam', 'check', '--json', '--grace', '3600']);
  assert.ok((JSON.parse(check.stdout) as { ok: boolean }).ok, check.stdout);
  // Still down: the next test restarts a node on the two members left.
  assert.equal(cluster.members[leader].pid(), undefined);
});

test('calico node killed and restarted while a member is still down: traffic keeps flowing, and a new container starts on it', async () => {
  const [, h2] = hosts;
  const pinging = where.a1.docker(['exec', 'a1', 'ping', '-c', '20', '-i', '0.25', '-W', '1', ip.a2], { timeoutMs: 60_000 });
  await new Promise((r) => setTimeout(r, 1000));
  await h2.node.stop('SIGKILL');
  await new Promise((r) => setTimeout(r, 1000));
  await h2.node.restart();
  await h2.node.ready();
  const out = (await pinging).stdout;
  assert.match(out, / 0% packet loss/, out);
  await run(h2, 'after');
  await until(() => pings('a1', 'after'), 'a1 -> a container started after the restart');
  const cluster = fabric.cluster!;
  const down = cluster.members.findIndex((m) => m.pid() === undefined);
  if (down >= 0) await cluster.restart(down);
  await cluster.healthy();
});
