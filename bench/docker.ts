/**
 * `npm run bench:docker`: `docker run --rm busybox true` on a calico network against the same
 * on a network of Docker's built-in bridge driver, on one daemon in one run, interleaved so
 * drift hits both alike, with BENCH_LIVE (default 100) containers running on each network
 * throughout, as on a host in use. Prints JSON with medians, p90s and the ratio.
 */
import { netnsScope } from '../test/harness/netns';
import { startEtcd } from '../test/harness/etcd';
import { startDockerHost } from '../test/harness/docker';
import { percentile } from './stats';

const N = Number(process.env.BENCH_RUNS ?? 50);
const LIVE = Number(process.env.BENCH_LIVE ?? 100);

async function main() {
  const scope = netnsScope();
  // BENCH_POLICY=off shows what the firewall (on by default, as users run it) adds to a start.
  const h = await startDockerHost(scope, { name: 'bdock', env: { CALICO_LOG_LEVEL: 'warn', CALICO_POLICY: process.env.BENCH_POLICY ?? 'on' } });
  const etcd = await startEtcd(h.ns);
  try {
    await h.node.stop('SIGTERM');
    h.node.env.ETCD_ENDPOINTS = etcd.endpoint;
    await h.node.restart();
    await h.node.ready();
    await h.dockerOk(['network', 'create', '-d', 'calico', '--ipam-driver', 'calico-ipam', 'cal']);
    await h.dockerOk(['network', 'create', '-d', 'bridge', '--subnet', '10.200.0.0/24', 'brg']);
    const times: Record<'calico' | 'bridge', number[]> = { calico: [], bridge: [] };
    const once = async (net: string) => {
      const t0 = performance.now();
      await h.dockerOk(['run', '--rm', '--network', net, 'busybox', 'true']);
      return performance.now() - t0;
    };
    for (let i = 0; i < LIVE; i++)
      for (const net of ['cal', 'brg']) await h.dockerOk(['run', '-d', '--name', `live-${net}-${i}`, '--network', net, 'busybox', 'sleep', '3600']);
    await once('cal');
    await once('brg'); // warm both paths before measuring
    for (let i = 0; i < N; i++) {
      // Alternate which goes first so neither always follows the other.
      const order: Array<['calico' | 'bridge', string]> =
        i % 2
          ? [
              ['calico', 'cal'],
              ['bridge', 'brg'],
            ]
          : [
              ['bridge', 'brg'],
              ['calico', 'cal'],
            ];
      for (const [k, net] of order) times[k].push(await once(net));
    }
    const stat = (xs: number[]) => {
      const s = [...xs].sort((a, b) => a - b);
      return { runs: s.length, medianMs: Math.round(percentile(s, 50) * 10) / 10, p90Ms: Math.round(percentile(s, 90) * 10) / 10 };
    };
    const c = stat(times.calico);
    const b = stat(times.bridge);
    const ratio = Math.round((c.medianMs / b.medianMs) * 100) / 100;
    process.stdout.write(
      JSON.stringify(
        { liveContainersPerNetwork: LIVE, calico: c, bridge: b, medianRatio: ratio, target: { medianRatio: '<= 1.03', met: ratio <= 1.03 } },
        null,
        2,
      ) + '\n',
    );
  } finally {
    await h.destroy();
    await etcd.destroy();
    await scope.destroyAll();
  }
}

main().catch((err) => {
  process.stderr.write(String(err?.stack ?? err) + '\n');
  process.exit(1);
});
