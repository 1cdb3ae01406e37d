/**
 * Beyond the fabric, end to end: hosts with real dockerd (its own iptables on, FORWARD DROP),
 * `calico node` and BIRD on two subnets joined by a router that knows no pools, and an outside
 * client behind the router. Packet captures on the router prove what crosses it: with `Never`
 * containers across the router cannot reach each other (BGP's direct sessions stay within a
 * subnet and the router drops pool addresses); `CrossSubnet` is native within a subnet and VXLAN
 * across; `Always` encapsulates everything; every switch is live. Outgoing NAT: the outside
 * client sees the host's address, and with NAT off nothing comes back.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { netnsScope, type Netns } from '../harness/netns';
import { type DockerHost, startDockerHost } from '../harness/docker';
import { OUTSIDE_CLIENT, type Subnets, startSubnets } from '../harness/subnets';

const scope = netnsScope();
let net: Subnets;
const hosts: Record<string, DockerHost> = {};
const ip: Record<string, string> = {};
const POOL = '10.65.0.0/16';

async function until(fn: () => Promise<boolean>, what: string, timeoutMs = 20_000): Promise<void> {
  const t0 = Date.now();
  while (!(await fn().catch(() => false))) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

const pings = (from: string, to: string) => hosts[from].docker(['exec', from, 'ping', '-c', '1', '-W', '1', to]).then((r) => r.code === 0);

/** Captures `count` packets matching `filter` on a router interface while `traffic` runs. */
async function capture(ns: Netns, dev: string, filter: string[], traffic: () => Promise<unknown>): Promise<string> {
  const p = ns.spawn('tcpdump', ['-l', '-n', '-i', dev, '-c', '1', ...filter]);
  let out = '';
  p.stdout?.on('data', (d) => (out += d));
  const exited = new Promise((r) => p.on('exit', r));
  await new Promise((r) => setTimeout(r, 500));
  await traffic();
  await Promise.race([exited, new Promise((r) => setTimeout(r, 3000))]);
  p.kill();
  return out;
}
const esc = (s: string) => s.replace(/\./g, '\\.');

async function host(name: string, subnet: 'a' | 'b', index: number): Promise<void> {
  const { ns, ip: addr } = await net.addHost(name, subnet, index);
  const h = await startDockerHost(scope, {
    name,
    etcd: net.etcd.endpoint,
    env: { CALICO_IP: addr, CALICO_RECONCILE_INTERVAL: '2' },
    onFabric: { ns, ip: addr },
    dockerIptables: true,
  });
  hosts[name] = h;
  ip[`host-${name}`] = addr;
  await h.dockerOk(['network', 'create', '-d', 'calico', '--ipam-driver', 'calico-ipam', 'wide']);
  await h.dockerOk(['run', '-d', '--name', name, '--network', 'wide', 'busybox', 'sleep', '3600']);
  ip[name] = await h.dockerOk(['inspect', '-f', '{{.NetworkSettings.Networks.wide.IPAddress}}', name]);
}

before(async () => {
  net = await startSubnets(scope);
  await host('sa1', 'a', 1);
  await host('sa2', 'a', 2);
  await host('sb1', 'b', 1);
});

after(async () => {
  for (const h of Object.values(hosts)) await h.destroy();
  await net?.etcd.destroy();
  await scope.destroyAll();
});

test('Never: containers in one subnet reach each other over BGP, and across the router they cannot', async () => {
  await until(() => pings('sa1', ip.sa2), 'sa1 → sa2 over BGP routes');
  assert.equal(await pings('sa1', ip.sb1), false, 'the router knows no pools');
});

test('outgoing NAT: the outside client sees the host address, and with natOutgoing off nothing comes back', async () => {
  const seen = await capture(net.router, 'out0', ['icmp'], () => until(() => pings('sa1', OUTSIDE_CLIENT), 'sa1 reaching the outside'));
  assert.match(seen, new RegExp(`${esc(ip['host-sa1'])} > ${esc(OUTSIDE_CLIENT)}: ICMP echo request`), seen);
  await hosts.sa1.calico(['pool', 'set', POOL, '--nat-outgoing=false']);
  await until(async () => !(await pings('sa1', OUTSIDE_CLIENT)), 'no reply without NAT');
  await hosts.sa1.calico(['pool', 'set', POOL, '--nat-outgoing']);
  await until(() => pings('sa1', OUTSIDE_CLIENT), 'NAT back');
});

test('CrossSubnet: native within a subnet, VXLAN across the router, switched live', async () => {
  await hosts.sa1.calico(['pool', 'set', POOL, '--vxlan-mode', 'CrossSubnet']);
  const across = await capture(net.router, 'bra', ['udp', 'port', '4789'], () => until(() => pings('sa1', ip.sb1), 'sa1 → sb1 through VXLAN'));
  assert.match(across, new RegExp(`${esc(ip['host-sa1'])}\\.\\d+ > ${esc(ip['host-sb1'])}\\.4789: VXLAN`), across);
  assert.ok(await pings('sb1', ip.sa2), 'and from the other side');
  const within = await capture(net.router, 'bra', ['icmp', 'and', 'host', ip.sa2], () => pings('sa1', ip.sa2));
  assert.match(within, new RegExp(`${esc(ip.sa1)} > ${esc(ip.sa2)}: ICMP echo request`), `native within the subnet: ${within}`);
});

test('Always encapsulates within the subnet too, and Never again cuts the way across', async () => {
  await hosts.sa1.calico(['pool', 'set', POOL, '--vxlan-mode', 'Always']);
  await until(async () => {
    const seen = await capture(net.router, 'bra', ['udp', 'port', '4789', 'and', 'host', ip['host-sa2']], () => pings('sa1', ip.sa2));
    return seen.includes(`${ip['host-sa2']}.4789: VXLAN`);
  }, 'sa1 → sa2 inside VXLAN');
  assert.ok(await pings('sa1', ip.sb1));
  await hosts.sa1.calico(['pool', 'set', POOL, '--vxlan-mode', 'Never']);
  await until(async () => !(await pings('sa1', ip.sb1)), 'across the router cut again');
  await until(() => pings('sa1', ip.sa2), 'within the subnet back on BGP');
});
