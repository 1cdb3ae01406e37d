/**
 * `npm run bench:fabric` (root): route propagation on the multi-host testbed.
 * 1. Time from `docker run` returning on host A until a container on host B first gets a ping
 *    reply, for a container in an already-announced block and for one that needs a new block
 *    (a fresh subnet each time), 20 samples each: medians and p90s.
 * 2. A host joining (bench/host-join.ts): from a new host's `calico node` start until the
 *    other hosts' containers reach a container on it and it reaches theirs, beside the same
 *    `docker run` on a host that joined long ago. BENCH_JOIN_SAMPLES joins (default:
 *    BENCH_SAMPLES if set, else 5): medians and p90s. BENCH_FABRIC=join runs only this part.
 * 3. Routes and BGP updates each host carries as endpoints on host A grow from 10 to 500
 *    (endpoints made through the plugin sockets: veth and /32 route, no container process), to
 *    show block aggregation keeps routes near the number of blocks, not of containers.
 * Prints JSON.
 */
import { randomBytes } from 'node:crypto';
import { netnsScope } from '../test/harness/netns';
import { startFabric } from '../test/harness/fabric';
import { type DockerHost, startDockerHost } from '../test/harness/docker';
import { percentile } from './stats';
import { containerAddress, hostJoin } from './host-join';

const SAMPLES = Number(process.env.BENCH_SAMPLES ?? 20);
const JOIN_SAMPLES = Number(process.env.BENCH_JOIN_SAMPLES ?? process.env.BENCH_SAMPLES ?? 5);
const ONLY_JOIN = process.env.BENCH_FABRIC === 'join';
const hex = () => randomBytes(32).toString('hex');

async function main() {
  const scope = netnsScope();
  const hosts: DockerHost[] = [];
  const fabric = await startFabric(scope);
  try {
    for (const i of [1, 2]) {
      const { ns, ip } = await fabric.addHost(`bf${i}`, i);
      hosts.push(
        await startDockerHost(scope, { name: `bf${i}`, etcd: fabric.etcd.endpoint, env: { CALICO_IP: ip, CALICO_LOG_LEVEL: 'warn' }, onFabric: { ns, ip } }),
      );
    }
    const [a, b] = hosts;
    for (const h of hosts) await h.dockerOk(['network', 'create', '-d', 'calico', '--ipam-driver', 'calico-ipam', 'bench']);
    await b.dockerOk(['run', '-d', '--name', 'prober', '--network', 'bench', 'busybox', 'sleep', '3600']);
    await a.dockerOk(['run', '-d', '--name', 'seed', '--network', 'bench', 'busybox', 'sleep', '3600']);
    const seedIp = await containerAddress(a, 'seed', 'bench');
    const proberIp = await containerAddress(b, 'prober', 'bench');
    // Wait until A's first block is announced and B has it.
    for (const t0 = Date.now(); Date.now() - t0 < 30_000;) {
      if ((await b.docker(['exec', 'prober', 'ping', '-c', '1', '-W', '1', seedIp])).code === 0) break;
    }
    const join = await hostJoin({
      scope,
      fabric,
      prober: b,
      proberIp,
      target: a,
      targetIp: seedIp,
      network: 'bench',
      samples: JOIN_SAMPLES,
      firstIndex: 10,
      env: { CALICO_LOG_LEVEL: 'warn' },
    });
    // Both ways: reached by the others' containers, and reaching theirs.
    const joinMedian = Math.max(join.newHost.reached.medianMs, join.newHost.reaches.medianMs);
    const joinTarget = { measured: joinMedian, met: joinMedian < 2000 };
    if (ONLY_JOIN) {
      process.stdout.write(JSON.stringify({ hostJoin: join, targets: { newHostReachedMedianUnder2s: joinTarget } }, null, 2) + '\n');
      return;
    }
    const firstReply = async (net: string, name: string, probe = 'prober'): Promise<number> => {
      await a.dockerOk(['run', '-d', '--name', name, '--network', net, 'busybox', 'sleep', '3600']);
      const t0 = performance.now();
      const ip = await a.dockerOk(['inspect', '-f', `{{.NetworkSettings.Networks.${net}.IPAddress}}`, name]);
      // The probe pings every 20 ms from B until the first reply; its exit marks the moment.
      const r = await b.docker(['exec', probe, 'sh', '-c', `while ! ping -c 1 -W 1 -w 1 -q ${ip} >/dev/null 2>&1; do sleep 0.02; done`], {
        timeoutMs: 30_000,
      });
      if (r.code !== 0) throw new Error(`no reply from ${ip} to ${probe} on B`);
      return performance.now() - t0;
    };
    const existing: number[] = [];
    const fresh: number[] = [];
    const routesBefore = await routeCount(b);
    for (let i = 0; i < SAMPLES; i++) existing.push(await firstReply('bench', `e${i}`));
    const routeChangesExisting = (await routeCount(b)) - routesBefore;
    for (let i = 0; i < SAMPLES; i++) {
      const net = `fresh${i}`;
      // A subnet of its own: its first container needs a block nobody has announced yet.
      for (const h of hosts) await h.dockerOk(['network', 'create', '-d', 'calico', '--ipam-driver', 'calico-ipam', '--subnet', `10.65.${200 + i}.0/24`, net]);
      // The probe on B is on the same network: a network's profile admits only its own
      // containers, so the prober on "bench" would never get a reply. Its own block must have
      // reached A (A's replies go there) before the clock starts.
      const probe = `p${i}`;
      await b.dockerOk(['run', '-d', '--name', probe, '--network', net, 'busybox', 'sleep', '3600']);
      const probeIp = await containerAddress(b, probe, net);
      for (const t1 = Date.now(); !/via 172\.31\.0\.2 /.test((await a.ns.exec('ip', ['route', 'get', probeIp])).stdout);) {
        if (Date.now() - t1 > 30_000) throw new Error(`A never learned the route to B's ${probeIp}`);
        await new Promise((r) => setTimeout(r, 20));
      }
      fresh.push(await firstReply(net, `f${i}`, probe));
    }
    const stat = (xs: number[]) => {
      const s = [...xs].sort((x, y) => x - y);
      return { samples: s.length, medianMs: Math.round(percentile(s, 50)), p90Ms: Math.round(percentile(s, 90)) };
    };
    const growth = await routeGrowth(a, b);
    const newBlock = stat(fresh);
    process.stdout.write(
      JSON.stringify(
        {
          firstReply: { existingBlock: stat(existing), newBlock },
          hostJoin: join,
          routeChangesOnPeerForAddressesInAnnouncedBlock: routeChangesExisting,
          growth,
          targets: {
            newBlockMedianUnder1s: { measured: newBlock.medianMs, met: newBlock.medianMs < 1000 },
            newHostReachedMedianUnder2s: joinTarget,
            noRouteChangeInsideAnnouncedBlock: { measured: routeChangesExisting, met: routeChangesExisting === 0 },
          },
        },
        null,
        2,
      ) + '\n',
    );
  } finally {
    for (const h of hosts) await h.destroy();
    await fabric.etcd.destroy();
    await scope.destroyAll();
  }
}

async function routeCount(h: DockerHost): Promise<number> {
  return (await h.ns.ipJson<unknown[]>(['route', 'show', 'proto', 'bird'])).length;
}

/** BGP updates host `h` has received, summed over its sessions (from `birdc show protocols all`). */
async function updatesReceived(h: DockerHost): Promise<number> {
  const out = (await h.ns.exec('birdc', ['-s', `${h.node.dataDir}/bird/bird.ctl`, 'show', 'protocols', 'all'])).stdout;
  return [...out.matchAll(/Import updates:\s+(\d+)/g)].reduce((n, m) => n + Number(m[1]), 0);
}

/** Endpoints on A through the plugin sockets (veth + /32, no container), counting B's routes. */
async function routeGrowth(a: DockerHost, b: DockerHost) {
  const d = a.node.docker;
  const nid = hex();
  await a.calico(['pool', 'add', '10.66.0.0/16']);
  await d.ok('net', 'CreateNetwork', { NetworkID: nid, Options: {}, IPv4Data: [{ Pool: '10.66.0.0/16', Gateway: '0.0.0.0/0' }], IPv6Data: [] });
  const pool = await d.ok('ipam', 'RequestPool', { AddressSpace: 'CalicoLocalAddressSpace', Pool: '10.66.0.0/16', SubPool: '', Options: null, V6: false });
  const rows = [];
  let made = 0;
  const baseRoutes = await routeCount(b);
  const baseUpdates = await updatesReceived(b);
  for (const target of [10, 50, 100, 250, 500]) {
    for (; made < target; made++) {
      const eid = hex();
      const addr = (await d.ok('ipam', 'RequestAddress', { PoolID: pool.PoolID, Address: '', Options: null })).Address;
      await d.ok('net', 'CreateEndpoint', { NetworkID: nid, EndpointID: eid, Interface: { Address: addr }, Options: null });
      await d.ok('net', 'Join', { NetworkID: nid, EndpointID: eid, SandboxKey: '', Options: null });
    }
    const blocks = Math.ceil(target / 64);
    // Let BGP settle before counting.
    for (let t0 = Date.now(); Date.now() - t0 < 15_000 && (await routeCount(b)) - baseRoutes < blocks;) await new Promise((r) => setTimeout(r, 200));
    await new Promise((r) => setTimeout(r, 1000));
    rows.push({
      endpoints: target,
      blocks,
      routesOnPeer: (await routeCount(b)) - baseRoutes,
      bgpUpdatesReceivedByPeer: (await updatesReceived(b)) - baseUpdates,
    });
  }
  return rows;
}

main().catch((err) => {
  process.stderr.write(String(err?.stack ?? err) + '\n');
  process.exit(1);
});
