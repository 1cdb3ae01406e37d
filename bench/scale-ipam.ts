/**
 * `npm run bench:scale-ipam [total] [hosts] [inFlight]`: the seed's scale, 50,000 container
 * addresses by default, across 4 `calico node` hosts (each its own network namespace, BIRD on)
 * on a real 3-member etcd cluster (test/harness/etcd-cluster.ts), every address requested
 * through a host's IPAM socket (RequestAddress, `inFlight` at a time per host). Prints the
 * aggregate allocation rate per 10,000 addresses (so growth worse than linear shows), duplicates,
 * etcd's database size and key count, each node's RSS, how long `calico ipam check` and
 * `calico ipam show` take at the end, and BGP routes per host against other hosts' blocks.
 * Endpoints with veths are not made here (bench/endpoints.ts measures those).
 */
import fs from 'node:fs';
import path from 'node:path';
import { type Netns, netnsScope } from '../test/harness/netns';
import { startEtcdCluster } from '../test/harness/etcd-cluster';
import { type CalicoProcess, startCalico } from '../test/harness/calico';
import { ownCpuMs, percentile, processCpuMs, rssMB, timed } from './stats';

const MB = 1024 * 1024;
const POOL = '10.96.0.0/15';

async function main() {
  const [totalText, hostsText, widthText] = process.argv.slice(2);
  const total = Number(totalText ?? 50_000);
  const hostCount = Number(hostsText ?? 4);
  const width = Number(widthText ?? 8);
  const scope = netnsScope();
  const nodes: CalicoProcess[] = [];
  const hostNs: Netns[] = [];
  const cluster = await startEtcdCluster(scope);
  try {
    for (let i = 0; i < hostCount; i++) {
      const ns = await scope.create(`sc${i}`);
      hostNs.push(ns);
      const ip = await cluster.attach(ns, i);
      nodes.push(
        await startCalico(ns, {
          name: `scale-host${i}`,
          etcd: cluster.endpoints,
          env: { CALICO_LOG_LEVEL: 'info', CALICO_IPV4POOL_CIDR: POOL, CALICO_IP: ip },
        }),
      );
    }
    await Promise.all(nodes.map((n) => n.ready()));
    const poolIds = await Promise.all(
      nodes.map(
        async (n) =>
          (await n.docker.ok('ipam', 'RequestPool', { AddressSpace: 'CalicoLocalAddressSpace', Pool: '', SubPool: '', Options: null, V6: false }))
            .PoolID as string,
      ),
    );

    const birdPid = (n: CalicoProcess) => {
      try {
        return Number(fs.readFileSync(path.join(n.dataDir, 'bird', 'bird.pid'), 'utf8').trim()) || undefined;
      } catch {
        return undefined;
      }
    };
    const cpuOf = () => ({
      nodes: nodes.reduce((a, n) => a + processCpuMs(n.pid()), 0),
      bird: nodes.reduce((a, n) => a + processCpuMs(birdPid(n)), 0),
      etcd: cluster.members.reduce((a, m) => a + processCpuMs(m.pid()), 0),
      client: ownCpuMs(),
    });
    const cpu0 = cpuOf();
    const latencies: number[] = [];
    const addresses: string[] = [];
    let failures = 0;
    let firstError = '';
    let issued = 0;
    const windows: Array<{ upTo: number; perSecond: number }> = [];
    const t0 = performance.now();
    let windowStart = t0;
    let windowCount = 0;
    const step = 10_000;
    await Promise.all(
      nodes.flatMap((node, h) =>
        Array.from({ length: width }, async () => {
          while (issued < total) {
            issued++;
            const s0 = performance.now();
            const r = await node.docker.ipam('RequestAddress', { PoolID: poolIds[h], Address: '', Options: null });
            latencies.push(performance.now() - s0);
            if (r.status !== 200) {
              failures++;
              firstError ||= `${r.status} ${r.raw}`;
              continue;
            }
            addresses.push((r.body.Address as string).split('/')[0]);
            if (++windowCount === step || addresses.length === total) {
              const now = performance.now();
              windows.push({ upTo: addresses.length, perSecond: Math.round(windowCount / ((now - windowStart) / 1000)) });
              process.stderr.write(`${addresses.length} addresses, ${windows[windows.length - 1].perSecond}/s in the last ${windowCount}\n`);
              windowStart = now;
              windowCount = 0;
            }
          }
        }),
      ),
    );
    const wallS = (performance.now() - t0) / 1000;
    const cpu1 = cpuOf();
    const perAddress = (k: 'nodes' | 'bird' | 'etcd' | 'client') => +((cpu1[k] - cpu0[k]) / addresses.length).toFixed(2);
    const sorted = latencies.sort((a, b) => a - b);
    const duplicates = addresses.length - new Set(addresses).size;
    const rss = nodes.map((n) => rssMB(n.pid()));

    const etcdctl = async (args: string[]) => (await cluster.fabric.exec('etcdctl', ['--endpoints', cluster.endpoints, ...args], { timeoutMs: 60_000 })).stdout;
    const status = JSON.parse(await etcdctl(['endpoint', 'status', '-w', 'json'])) as Array<{ Status: { dbSize: number; header: { revision: number } } }>;
    const keys = JSON.parse(await etcdctl(['get', '--from-key', '', '--keys-only', '--limit', '1', '-w', 'json'])) as { count: number };

    const check = await timed(() => nodes[0].cli(['ipam', 'check', '--json', '--grace', '86400'], { allowFail: true }));
    const show = await timed(() => nodes[0].cli(['ipam', 'show', '--json']));
    const showAll = await timed(() => nodes[0].cli(['ipam', 'show', '--allocations', '--json']));
    const blocks = JSON.parse(show.value.stdout) as Array<{ cidr: string; affinity: string | null; used: number }>;
    const report = JSON.parse(check.value.stdout) as { ok: boolean; allocations: number; problems: unknown[] };

    // BIRD: each host should have one learned route per block affine to another host.
    await new Promise((r) => setTimeout(r, 5000));
    const bgp = await Promise.all(
      nodes.map(async (n, i) => {
        const routes = (await hostNs[i].ip(['route', 'show', 'proto', 'bird'])).split('\n').filter((l) => l.trim());
        return {
          host: n.name,
          ownBlocks: blocks.filter((b) => b.affinity === n.name).length,
          blackholes: routes.filter((l) => l.startsWith('blackhole')).length,
          otherHostsBlocks: blocks.filter((b) => b.affinity && b.affinity !== n.name).length,
          learnedRoutes: routes.filter((l) => / via /.test(l)).length,
        };
      }),
    );

    process.stdout.write(
      JSON.stringify(
        {
          addresses: addresses.length,
          hosts: hostCount,
          inFlightPerHost: width,
          failures,
          firstError: firstError || undefined,
          seconds: Math.round(wallS),
          perSecond: Math.round(addresses.length / wallS),
          perSecondByWindow: windows,
          latencyMs: { p50: +percentile(sorted, 50).toFixed(1), p99: +percentile(sorted, 99).toFixed(1), max: +sorted[sorted.length - 1].toFixed(1) },
          cpuMsPerAddress: { calicoNodes: perAddress('nodes'), bird: perAddress('bird'), etcdMembers: perAddress('etcd'), client: perAddress('client') },
          duplicates,
          blocks: blocks.length,
          etcd: { dbSizeMB: status.map((s) => +(s.Status.dbSize / MB).toFixed(1)), revision: status[0]?.Status.header.revision, keys: keys.count },
          calicoNodeRssMB: rss,
          ipamCheck: { ms: check.ms, ok: report.ok, allocations: report.allocations, problems: report.problems.length },
          ipamShowMs: show.ms,
          ipamShowAllocationsMs: showAll.ms,
          bgp,
          targets: { perSecond: '>= 500', duplicates: 0, ipamCheckMs: '< 5000', ipamShowMs: '< 5000' },
        },
        null,
        2,
      ) + '\n',
    );
  } finally {
    await Promise.all(nodes.map((n) => n.destroy()));
    await cluster.destroy();
    await scope.destroyAll();
  }
}

main().catch((err) => {
  process.stderr.write(String(err?.stack ?? err) + '\n');
  process.exit(1);
});
