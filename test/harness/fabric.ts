/**
 * Several hosts on one layer-2 fabric, each a network namespace: a fabric namespace holds a
 * bridge (with the fabric's router address, every host's default gateway) and the shared etcd;
 * each host gets an uplink veth onto the bridge. Addresses are 172.31.0.0/24 inside these
 * namespaces only; nothing routes to the machine's real network.
 */
import type { Netns, NetnsScope } from './netns';
import { type TestEtcd, startEtcd } from './etcd';

export const FABRIC_GW = '172.31.0.254';

export interface Fabric {
  ns: Netns;
  etcd: TestEtcd;
  /** A host at 172.31.0.<index> and fd31::<index> (hex). */
  addHost(name: string, index: number): Promise<{ ns: Netns; ip: string; ip6: string }>;
}

export async function startFabric(scope: NetnsScope): Promise<Fabric> {
  const ns = await scope.create('fab');
  // A fixed MAC: otherwise the bridge takes its lowest port's, which changes as hosts join, and
  // every host's ARP entry for the fabric address (where etcd listens) goes stale.
  await ns.ip(['link', 'add', 'br0', 'address', '02:00:00:00:fe:fe', 'type', 'bridge']);
  await ns.ip(['addr', 'add', `${FABRIC_GW}/24`, 'dev', 'br0']);
  await ns.ip(['-6', 'addr', 'add', 'fd31::fe/64', 'dev', 'br0', 'nodad']);
  await ns.ip(['link', 'set', 'br0', 'up']);
  const etcd = await startEtcd(ns, FABRIC_GW);
  return {
    ns,
    etcd,
    async addHost(name, index) {
      const host = await scope.create(name);
      const ip = `172.31.0.${index}`;
      const peer = `fab${index}`;
      await host.ip(['link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', peer, 'netns', ns.name]);
      await ns.ip(['link', 'set', peer, 'master', 'br0']);
      await ns.ip(['link', 'set', peer, 'up']);
      await host.ip(['addr', 'add', `${ip}/24`, 'dev', 'eth0']);
      const ip6 = `fd31::${index.toString(16)}`;
      await host.ip(['-6', 'addr', 'add', `${ip6}/64`, 'dev', 'eth0', 'nodad']);
      await host.ip(['link', 'set', 'eth0', 'up']);
      await host.ip(['route', 'add', 'default', 'via', FABRIC_GW]);
      return { ns: host, ip, ip6 };
    },
  };
}
