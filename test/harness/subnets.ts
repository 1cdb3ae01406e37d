/**
 * Two subnets joined by a router that knows no pools, and an outside client behind it: the
 * topology of hosts in two cloud zones or on two LANs. The router namespace holds both
 * subnets' bridges (172.31.1.0/24 and 172.31.2.0/24, the router at .254 on each), a link to an
 * outside namespace (198.18.0.0/24: the router at .1, the client at .10) and the shared etcd on
 * 172.31.1.254. Every address lives only inside these namespaces.
 */
import type { Netns, NetnsScope } from './netns';
import { startEtcd, type TestEtcd } from './etcd';

export const OUTSIDE_CLIENT = '198.18.0.10';
export const SUBNETS = { a: '172.31.1', b: '172.31.2' } as const;

export interface Subnets {
  router: Netns;
  outside: Netns;
  etcd: TestEtcd;
  /** A host at <subnet>.<index> with its default route through the router. */
  addHost(name: string, subnet: keyof typeof SUBNETS, index: number): Promise<{ ns: Netns; ip: string }>;
}

export async function startSubnets(scope: NetnsScope): Promise<Subnets> {
  const router = await scope.create('rtr');
  const outside = await scope.create('out');
  await router.exec('sysctl', ['-q', '-w', 'net.ipv4.ip_forward=1']);
  for (const [name, net] of Object.entries(SUBNETS)) {
    const br = `br${name}`;
    await router.ip(['link', 'add', br, 'type', 'bridge']);
    await router.ip(['addr', 'add', `${net}.254/24`, 'dev', br]);
    await router.ip(['link', 'set', br, 'up']);
  }
  await router.ip(['link', 'add', 'out0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', outside.name]);
  await router.ip(['addr', 'add', '198.18.0.1/24', 'dev', 'out0']);
  await router.ip(['link', 'set', 'out0', 'up']);
  await outside.ip(['addr', 'add', `${OUTSIDE_CLIENT}/24`, 'dev', 'eth0']);
  await outside.ip(['link', 'set', 'eth0', 'up']);
  await outside.ip(['route', 'add', '172.31.0.0/16', 'via', '198.18.0.1']);
  const etcd = await startEtcd(router, `${SUBNETS.a}.254`);
  return {
    router,
    outside,
    etcd,
    async addHost(name, subnet, index) {
      const host = await scope.create(name);
      const net = SUBNETS[subnet];
      const peer = `${subnet}${index}`;
      await host.ip(['link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', peer, 'netns', router.name]);
      await router.ip(['link', 'set', peer, 'master', `br${subnet}`]);
      await router.ip(['link', 'set', peer, 'up']);
      const ip = `${net}.${index}`;
      await host.ip(['addr', 'add', `${ip}/24`, 'dev', 'eth0']);
      await host.ip(['link', 'set', 'eth0', 'up']);
      await host.ip(['route', 'add', 'default', 'via', `${net}.254`]);
      return { ns: host, ip };
    },
  };
}
