/**
 * `npm run bench`: the endpoint lifecycle through the real sockets of a real `calico node`
 * (real etcd, real veths, in a throw-away namespace): setup = RequestAddress + CreateEndpoint +
 * Join, teardown = Leave + DeleteEndpoint + ReleaseAddress, sequential and with 8 in flight,
 * next to the floor (bench/floor.ts) measured in the same run. Prints JSON.
 */
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { createNetns } from '../test/harness/netns';
import { startEtcd } from '../test/harness/etcd';
import { startCalico } from '../test/harness/calico';
import { drive, summarise, type Summary } from './stats';

const N = Number(process.env.BENCH_ENDPOINTS ?? 400);
const hex = () => randomBytes(32).toString('hex');

async function main() {
  const ns = await createNetns('bench');
  const etcd = await startEtcd(ns);
  // The floor has no firewall, so neither has calico by default; BENCH_POLICY=on shows what
  // the firewall adds (Join waits for the new endpoint's rules).
  const node = await startCalico(ns, { name: 'bench-host', etcd: etcd.endpoint, env: { CALICO_LOG_LEVEL: 'warn', CALICO_IPV4POOL_CIDR: '10.64.0.0/14', CALICO_MTU: '1500', CALICO_POLICY: process.env.BENCH_POLICY ?? 'off' } });
  try {
    await node.ready();
    const d = node.docker;
    const pool = await d.ok('ipam', 'RequestPool', { AddressSpace: 'CalicoLocalAddressSpace', Pool: '', SubPool: '', Options: null, V6: false });
    const nid = hex();
    await d.ok('net', 'CreateNetwork', {
      NetworkID: nid,
      Options: { 'com.docker.network.generic': {} },
      IPv4Data: [{ AddressSpace: 'CalicoLocalAddressSpace', Pool: pool.Pool, Gateway: pool.Data['com.docker.network.gateway'] }],
      IPv6Data: [],
    });
    const results: Record<string, { setup: Summary; teardown: Summary; phases: Record<string, Summary> }> = {};
    const floor: Record<string, unknown> = {};
    for (const [label, width] of [['sequential', 1], ['inFlight8', 8]] as const) {
      const eps: Array<{ eid: string; ip: string }> = new Array(N);
      const phase: Record<string, number[]> = { RequestAddress: [], CreateEndpoint: [], Join: [], Leave: [], DeleteEndpoint: [], ReleaseAddress: [] };
      const timed = async <T>(name: string, fn: () => Promise<T>): Promise<T> => {
        const s = performance.now();
        const out = await fn();
        phase[name].push(performance.now() - s);
        return out;
      };
      const setup = await drive(N, width, async (i) => {
        const eid = hex();
        const a = await timed('RequestAddress', () => d.ok('ipam', 'RequestAddress', { PoolID: pool.PoolID, Address: '', Options: null }));
        await timed('CreateEndpoint', () => d.ok('net', 'CreateEndpoint', { NetworkID: nid, EndpointID: eid, Interface: { Address: a.Address, AddressIPv6: '', MacAddress: '' }, Options: {} }));
        await timed('Join', () => d.ok('net', 'Join', { NetworkID: nid, EndpointID: eid, SandboxKey: '', Options: {} }));
        eps[i] = { eid, ip: a.Address.split('/')[0] };
      });
      const teardown = await drive(N, width, async (i) => {
        const { eid, ip } = eps[i];
        await timed('Leave', () => d.ok('net', 'Leave', { NetworkID: nid, EndpointID: eid }));
        await timed('DeleteEndpoint', () => d.ok('net', 'DeleteEndpoint', { NetworkID: nid, EndpointID: eid }));
        await timed('ReleaseAddress', () => d.ok('ipam', 'ReleaseAddress', { PoolID: pool.PoolID, Address: ip }));
      });
      results[label] = {
        setup: summarise(setup.lat, setup.wallMs),
        teardown: summarise(teardown.lat, teardown.wallMs),
        phases: Object.fromEntries(Object.entries(phase).map(([k, v]) => [k, summarise(v, setup.wallMs)])),
      };
      const f = await ns.exec(process.execPath, [path.join(__dirname, 'floor.js'), etcd.endpoint, String(N), String(width)], { timeoutMs: 300_000 });
      floor[label] = JSON.parse(f.stdout.trim().split('\n').pop()!);
    }
    const c = results.inFlight8.setup;
    const f8 = floor.inFlight8 as { setup: Summary };
    const report = {
      endpoints: N,
      results,
      floor,
      targets: {
        setupOpsPerSecInFlight8: { target: '>= 100', measured: c.opsPerSec, met: c.opsPerSec >= 100 },
        setupP99Ms: { target: '< 50', measured: c.p99Ms, met: c.p99Ms < 50 },
        vsFloorInFlight8: { target: '<= 2x', measured: Math.round((f8.setup.opsPerSec / c.opsPerSec) * 100) / 100, met: f8.setup.opsPerSec / c.opsPerSec <= 2 },
      },
    };
    process.stdout.write(JSON.stringify(report, null, 2) + '\n');
  } finally {
    await node.destroy();
    await etcd.destroy();
    await ns.destroy();
  }
}

main().catch((err) => {
  process.stderr.write(String(err?.stack ?? err) + '\n');
  process.exit(1);
});
