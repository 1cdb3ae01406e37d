/**
 * `npm run bench`: the endpoint lifecycle through the real sockets of a real `calico node`
 * (real etcd, real veths, in a throw-away namespace): setup = RequestAddress + CreateEndpoint +
 * Join, teardown = Leave + DeleteEndpoint + ReleaseAddress, sequential and with 8 in flight,
 * next to the floor (bench/floor.ts) measured in the same run. Prints JSON.
 *
 * Calico and the floor take turns in rounds (ABBA order), so a slow spell of this shared
 * machine lands on both rather than on whichever ran then; figures pool every round. CPU time
 * per endpoint is reported for each process too: unlike latency it hardly moves with the
 * machine's mood, so it shows where the time goes.
 */
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { createNetns, type Netns } from '../test/harness/netns';
import { startEtcd, type TestEtcd } from '../test/harness/etcd';
import { startCalico, type CalicoProcess } from '../test/harness/calico';
import { drive, ownCpuMs, processCpuMs, summarise, type Summary } from './stats';

const N = Number(process.env.BENCH_ENDPOINTS ?? 1000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 4);
const WARMUP = 64;
const hex = () => randomBytes(32).toString('hex');
const round2 = (x: number) => Math.round(x * 100) / 100;

interface Run {
  setup: { lat: number[]; wallMs: number };
  teardown: { lat: number[]; wallMs: number };
  phases?: Record<string, number[]>;
  cpuMs: Record<string, number>;
}

/** Pools rounds: every latency, and throughput over the summed wall time. */
function pooled(runs: Run[]) {
  const cat = (k: 'setup' | 'teardown') =>
    summarise(
      runs.flatMap((r) => r[k].lat),
      runs.reduce((t, r) => t + r[k].wallMs, 0),
    );
  const setup = cat('setup');
  const cpu: Record<string, number> = {};
  for (const r of runs) for (const [k, v] of Object.entries(r.cpuMs)) cpu[k] = (cpu[k] ?? 0) + v;
  const out: { setup: Summary; teardown: Summary; cpuMsPerSetup: Record<string, number>; phases?: Record<string, Summary> } = {
    setup,
    teardown: cat('teardown'),
    cpuMsPerSetup: Object.fromEntries(Object.entries(cpu).map(([k, v]) => [k, round2(v / setup.count)])),
  };
  if (runs[0].phases) {
    const wall = runs.reduce((t, r) => t + r.setup.wallMs, 0);
    out.phases = Object.fromEntries(
      Object.keys(runs[0].phases).map((k) => [
        k,
        summarise(
          runs.flatMap((r) => r.phases![k]),
          wall,
        ),
      ]),
    );
  }
  return out;
}

async function calicoRun(node: CalicoProcess, etcd: TestEtcd, ids: { pool: string; nid: string }, n: number, width: number, record = true): Promise<Run> {
  const d = node.docker;
  const eps: Array<{ eid: string; ip: string }> = new Array(n);
  const phases: Record<string, number[]> = { RequestAddress: [], CreateEndpoint: [], Join: [], Leave: [], DeleteEndpoint: [], ReleaseAddress: [] };
  const timed = async <T>(name: string, fn: () => Promise<T>): Promise<T> => {
    const s = performance.now();
    const out = await fn();
    if (record) phases[name].push(performance.now() - s);
    return out;
  };
  const cpu0 = { calicoNode: processCpuMs(node.pid()), etcd: processCpuMs(etcd.pid()), fakeDocker: ownCpuMs() };
  const setup = await drive(n, width, async (i) => {
    const eid = hex();
    const a = await timed('RequestAddress', () => d.ok('ipam', 'RequestAddress', { PoolID: ids.pool, Address: '', Options: null }));
    await timed('CreateEndpoint', () =>
      d.ok('net', 'CreateEndpoint', { NetworkID: ids.nid, EndpointID: eid, Interface: { Address: a.Address, AddressIPv6: '', MacAddress: '' }, Options: {} }),
    );
    await timed('Join', () => d.ok('net', 'Join', { NetworkID: ids.nid, EndpointID: eid, SandboxKey: '', Options: {} }));
    eps[i] = { eid, ip: a.Address.split('/')[0] };
  });
  const cpuMs = {
    calicoNode: processCpuMs(node.pid()) - cpu0.calicoNode,
    etcd: processCpuMs(etcd.pid()) - cpu0.etcd,
    fakeDocker: ownCpuMs() - cpu0.fakeDocker,
  };
  const teardown = await drive(n, width, async (i) => {
    const { eid, ip } = eps[i];
    await timed('Leave', () => d.ok('net', 'Leave', { NetworkID: ids.nid, EndpointID: eid }));
    await timed('DeleteEndpoint', () => d.ok('net', 'DeleteEndpoint', { NetworkID: ids.nid, EndpointID: eid }));
    await timed('ReleaseAddress', () => d.ok('ipam', 'ReleaseAddress', { PoolID: ids.pool, Address: ip }));
  });
  return { setup, teardown, phases, cpuMs };
}

async function floorRun(ns: Netns, etcd: TestEtcd, n: number, width: number): Promise<Run> {
  const f = await ns.exec(process.execPath, [path.join(__dirname, 'floor.js'), etcd.endpoint, String(n), String(width), String(etcd.pid() ?? '')], {
    timeoutMs: 300_000,
  });
  const r = JSON.parse(f.stdout.trim().split('\n').pop()!) as { setup: Run['setup']; teardown: Run['teardown']; setupCpuMs: { own: number; etcd: number } };
  return { setup: r.setup, teardown: r.teardown, cpuMs: { floorProcess: r.setupCpuMs.own, etcd: r.setupCpuMs.etcd } };
}

async function main() {
  const ns = await createNetns('bench');
  const etcd = await startEtcd(ns);
  // As users run it: the firewall on (Join waits for the new endpoint's rules). The floor has
  // none; BENCH_POLICY=off shows calico without it, beside the default figure.
  const node = await startCalico(ns, {
    name: 'bench-host',
    etcd: etcd.endpoint,
    env: { CALICO_LOG_LEVEL: 'warn', CALICO_IPV4POOL_CIDR: '10.64.0.0/14', CALICO_MTU: '1500', CALICO_POLICY: process.env.BENCH_POLICY ?? 'on' },
  });
  try {
    await node.ready();
    const d = node.docker;
    const ids = await d.createIPv4Network();
    await calicoRun(node, etcd, ids, WARMUP, 8, false);
    const results: Record<string, ReturnType<typeof pooled>> = {};
    const floor: Record<string, ReturnType<typeof pooled>> = {};
    const per = Math.ceil(N / ROUNDS);
    for (const [label, width] of [
      ['sequential', 1],
      ['inFlight8', 8],
    ] as const) {
      const mine: Run[] = [];
      const theirs: Run[] = [];
      for (let r = 0; r < ROUNDS; r++) {
        const calicoFirst = r % 4 === 0 || r % 4 === 3;
        if (calicoFirst) mine.push(await calicoRun(node, etcd, ids, per, width));
        theirs.push(await floorRun(ns, etcd, per, width));
        if (!calicoFirst) mine.push(await calicoRun(node, etcd, ids, per, width));
      }
      results[label] = pooled(mine);
      floor[label] = pooled(theirs);
    }
    const c = results.inFlight8.setup;
    const f8 = floor.inFlight8.setup;
    const report = {
      endpoints: per * ROUNDS,
      rounds: ROUNDS,
      results,
      floor,
      targets: {
        setupOpsPerSecInFlight8: { target: '>= 100', measured: c.opsPerSec, met: c.opsPerSec >= 100 },
        setupP99Ms: { target: '< 50', measured: c.p99Ms, met: c.p99Ms < 50 },
        vsFloorInFlight8: { target: '<= 2x', measured: round2(f8.opsPerSec / c.opsPerSec), met: f8.opsPerSec / c.opsPerSec <= 2 },
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
