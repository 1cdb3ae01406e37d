/**
 * `node dist/bench/scale-host.js [endpoints] [inFlight]`: full endpoints on one host, 5,000 live
 * by default, through the plugin sockets of a real `calico node` (RequestAddress, CreateEndpoint,
 * Join: a veth, its route, the firewall on as by default), in a throw-away namespace on one real
 * etcd. Prints per 1,000 starts: starts/s, p50/p99 of a start, calico node CPU ms per start and
 * RSS (so growth worse than linear shows); at the top: the time of a reconciliation pass (the
 * node restarted with a 2 s interval, read from its "reconciliation pass done" log line), how
 * long that restart took to be ready, `calico ipam check`; then the teardown of every endpoint
 * (Leave, DeleteEndpoint, ReleaseAddress). Progress goes to stderr, the JSON report to stdout.
 */
import { randomBytes } from 'node:crypto';
import { createNetns } from '../test/harness/netns';
import { startEtcd } from '../test/harness/etcd';
import { startCalico, type CalicoProcess } from '../test/harness/calico';
import { percentile, processCpuMs, rssMB, timed } from './stats';

const STEP = 1000;
const hex = () => randomBytes(32).toString('hex');

/** Runs `n` jobs, `width` at a time. */
async function pool(n: number, width: number, job: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < n) await job(next++);
    }),
  );
}

/** The durationMs of reconciliation passes logged after `from`. */
function passes(node: CalicoProcess, from: number): Array<{ durationMs: number; links: number; endpoints: number }> {
  return node
    .logs()
    .slice(from)
    .split('\n')
    .filter((l) => l.includes('reconciliation pass done'))
    .map((l) => JSON.parse(l) as { durationMs: number; links: number; endpoints: number });
}

async function main() {
  const total = Number(process.argv[2] ?? 5000);
  const width = Number(process.argv[3] ?? 8);
  const ns = await createNetns('schost');
  const etcd = await startEtcd(ns);
  const node = await startCalico(ns, {
    name: 'scale-host',
    etcd: etcd.endpoint,
    env: { CALICO_LOG_LEVEL: 'warn', CALICO_IPV4POOL_CIDR: '10.64.0.0/14', CALICO_MTU: '1500' },
  });
  try {
    await node.ready();
    const d = node.docker;
    const { pool: poolId, nid } = await d.createIPv4Network();
    const eps: Array<{ eid: string; ip: string }> = [];
    const windows: Array<{ live: number; startsPerSec: number; p50Ms: number; p99Ms: number; cpuMsPerStart: number; rssMB: number }> = [];
    let lat: number[] = [];
    let w0 = performance.now();
    let cpu0 = processCpuMs(node.pid());
    let failures = 0;
    let firstError = '';
    await pool(total, width, async () => {
      const s0 = performance.now();
      const eid = hex();
      try {
        const a = await d.ok('ipam', 'RequestAddress', { PoolID: poolId, Address: '', Options: null });
        await d.ok('net', 'CreateEndpoint', {
          NetworkID: nid,
          EndpointID: eid,
          Interface: { Address: a.Address, AddressIPv6: '', MacAddress: '' },
          Options: {},
        });
        await d.ok('net', 'Join', { NetworkID: nid, EndpointID: eid, SandboxKey: '', Options: {} });
        eps.push({ eid, ip: (a.Address as string).split('/')[0] });
      } catch (err) {
        failures++;
        firstError ||= String(err);
        return;
      }
      lat.push(performance.now() - s0);
      if (lat.length === STEP) {
        const now = performance.now();
        const cpu = processCpuMs(node.pid());
        const sorted = lat.sort((x, y) => x - y);
        windows.push({
          live: eps.length,
          startsPerSec: Math.round(STEP / ((now - w0) / 1000)),
          p50Ms: +percentile(sorted, 50).toFixed(1),
          p99Ms: +percentile(sorted, 99).toFixed(1),
          cpuMsPerStart: +((cpu - cpu0) / STEP).toFixed(2),
          rssMB: rssMB(node.pid()),
        });
        process.stderr.write(`${JSON.stringify(windows[windows.length - 1])}\n`);
        lat = [];
        w0 = now;
        cpu0 = cpu;
      }
    });
    const links = (await ns.exec('ip', ['-o', 'link', 'show', 'type', 'veth'])).stdout.split('\n').filter((l) => /^\d+: cali/.test(l)).length;
    const rssAtTotal = rssMB(node.pid());

    // A reconciliation pass at this size: restart with a short interval and debug logs (the
    // pass logs its duration at debug), and take the passes after start-up's.
    await node.stop('SIGTERM');
    Object.assign(node.env, { CALICO_LOG_LEVEL: 'debug', CALICO_RECONCILE_INTERVAL: '2' });
    const mark = node.logs().length;
    const restart = await timed(async () => {
      await node.restart();
      await node.ready(120_000);
    });
    const deadline = Date.now() + 60_000;
    while (passes(node, mark).length < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    const reconcile = passes(node, mark);
    const check = await timed(() => node.cli(['ipam', 'check', '--json', '--grace', '86400'], { allowFail: true }));
    const checkReport = JSON.parse(check.value.stdout || '{}') as { ok?: boolean; allocations?: number };

    const teardown = await timed(() =>
      pool(eps.length, width, async (i) => {
        const { eid, ip } = eps[i];
        await d.ok('net', 'Leave', { NetworkID: nid, EndpointID: eid });
        await d.ok('net', 'DeleteEndpoint', { NetworkID: nid, EndpointID: eid });
        await d.ok('ipam', 'ReleaseAddress', { PoolID: poolId, Address: ip });
      }),
    );
    const report = {
      endpoints: eps.length,
      inFlight: width,
      failures,
      ...(firstError ? { firstError } : {}),
      vethsInKernel: links,
      windows,
      atTotal: {
        rssMB: rssAtTotal,
        cpuMsPerStart: windows[windows.length - 1]?.cpuMsPerStart,
        reconciliationPassMs: reconcile.map((r) => r.durationMs),
        reconciliationSaw: reconcile[0] ? { links: reconcile[0].links, endpoints: reconcile[0].endpoints } : undefined,
        restartToReadyMs: restart.ms,
        rssAfterRestartMB: rssMB(node.pid()),
        ipamCheckMs: check.ms,
        ipamCheckOk: checkReport.ok,
      },
      teardown: { ms: teardown.ms, perSec: Math.round(eps.length / (teardown.ms / 1000)) },
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
