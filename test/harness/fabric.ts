/**
 * Several hosts on one layer-2 fabric, each a network namespace: a fabric namespace holds a
 * bridge (with the fabric's router address, every host's default gateway) and the shared etcd;
 * each host gets an uplink veth onto the bridge. Addresses are 172.31.0.0/24 inside these
 * namespaces only; nothing routes to the machine's real network.
 *
 * With `etcd: 'cluster'` (or CALICO_TEST_ETCD=cluster in the environment) the etcd is a real
 * 3-member cluster (etcd-cluster.ts) instead of one member: the fabric namespace joins the
 * cluster's bridge and routes between the two, so every host reaches every member and its
 * ETCD_ENDPOINTS (`etcd.endpoint`) lists all three. `cluster` then lets a test kill, restart
 * or partition members.
 */
import type { Netns, NetnsScope } from './netns';
import { type TestEtcd, startEtcd } from './etcd';
import { type EtcdCluster, startEtcdCluster } from './etcd-cluster';

export const FABRIC_GW = '172.31.0.254';
const FABRIC_NET = '172.31.0.0/24';

export interface Fabric {
  ns: Netns;
  /** The etcd every host uses; `endpoint` lists every member when it is a cluster. */
  etcd: TestEtcd;
  /** Set when the fabric runs on a 3-member cluster. */
  cluster?: EtcdCluster;
  /** A host at 172.31.0.<index> and fd31::<index> (hex). */
  addHost(name: string, index: number): Promise<{ ns: Netns; ip: string; ip6: string }>;
}

export interface FabricOptions {
  /** One etcd member (default) or a 3-member cluster; CALICO_TEST_ETCD=cluster sets the default. */
  etcd?: 'single' | 'cluster';
}

/** The cluster seen through the single-member interface the suites already use. */
async function clusterEtcd(scope: NetnsScope, fabric: Netns): Promise<{ etcd: TestEtcd; cluster: EtcdCluster }> {
  const cluster = await startEtcdCluster(scope);
  try {
    const via = await cluster.attach(fabric, 0);
    await fabric.exec('sysctl', ['-q', '-w', 'net.ipv4.ip_forward=1']);
    // Members answer hosts through the fabric namespace, their only way back to 172.31.0.0/24.
    for (const m of cluster.members) await m.ns.ip(['route', 'add', FABRIC_NET, 'via', via]);
  } catch (err) {
    await cluster.destroy();
    throw err;
  }
  const all = cluster.members.map((_, i) => i);
  const etcd: TestEtcd = {
    endpoint: cluster.endpoints,
    async start() {
      for (const i of all) if (cluster.members[i].pid() === undefined) await cluster.restart(i);
      await cluster.healthy();
    },
    async stop() {
      await Promise.all(all.map((i) => cluster.kill(i, 'SIGTERM')));
    },
    pid: () => cluster.members.map((m) => m.pid()).find((p) => p !== undefined),
    destroy: () => cluster.destroy(),
  };
  return { etcd, cluster };
}

export async function startFabric(scope: NetnsScope, opts: FabricOptions = {}): Promise<Fabric> {
  const mode = opts.etcd ?? (process.env.CALICO_TEST_ETCD === 'cluster' ? 'cluster' : 'single');
  const ns = await scope.create('fab');
  // A fixed MAC: otherwise the bridge takes its lowest port's, which changes as hosts join, and
  // every host's ARP entry for the fabric address (where etcd listens) goes stale.
  await ns.ip(['link', 'add', 'br0', 'address', '02:00:00:00:fe:fe', 'type', 'bridge']);
  await ns.ip(['addr', 'add', `${FABRIC_GW}/24`, 'dev', 'br0']);
  await ns.ip(['-6', 'addr', 'add', 'fd31::fe/64', 'dev', 'br0', 'nodad']);
  await ns.ip(['link', 'set', 'br0', 'up']);
  const { etcd, cluster } = mode === 'cluster' ? await clusterEtcd(scope, ns) : { etcd: await startEtcd(ns, FABRIC_GW), cluster: undefined };
  return {
    ns,
    etcd,
    ...(cluster ? { cluster } : {}),
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
