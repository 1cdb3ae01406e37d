/**
 * `npm run bench:throughput` (root): the data path between two hosts of the namespace fabric, in
 * one run so every figure shares the machine's minute. Cross-host TCP throughput (iperf3) and
 * request/response rate (bench/rr-peer.ts) for:
 * - host to host (the fabric itself: the reference),
 * - calico containers routed natively (BGP),
 * - calico containers over VXLAN (a second pool with `--vxlan-mode Always`),
 * - containers on Docker's own overlay network (swarm) between the same hosts,
 * and the connection rate to a published port (`-p`) on a calico network next to Docker's
 * bridge with `-p` on the same daemon, from the other host. Each figure is the median of
 * BENCH_REPEATS runs of BENCH_SECONDS; the paths take turns (one run of each per round), because
 * this shared machine's speed drifts from one minute to the next. Prints JSON with the targets
 * of issue 13.
 * BENCH_ONLY=host,native,vxlan,overlay,published (any of them) runs only those parts.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';
import { netnsScope } from '../test/harness/netns';
import { startFabric } from '../test/harness/fabric';
import { type DockerHost, runCmd, startDockerHost } from '../test/harness/docker';
import { percentile } from './stats';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 3);
const REPEATS = Number(process.env.BENCH_REPEATS ?? 3);
const PEER = path.join(__dirname, 'rr-peer.js');
const POOL = '10.68.0.0/16';
const POOL_VXLAN = '10.70.0.0/16';
const ONLY = process.env.BENCH_ONLY ? new Set(process.env.BENCH_ONLY.split(',').map((x) => x.trim())) : undefined;
const wanted = (part: 'host' | 'native' | 'vxlan' | 'overlay' | 'published') => !ONLY || ONLY.has(part);

/** Where a command runs: a host's namespace, or a container's (by its PID). */
type Place = { ns: string } | { pid: number };
const argv = (p: Place, cmd: string[]) => ('ns' in p ? ['ip', 'netns', 'exec', p.ns, ...cmd] : ['nsenter', '-t', String(p.pid), '-n', ...cmd]);

async function run(p: Place, cmd: string[], timeoutMs = 60_000): Promise<string> {
  const [c, ...args] = argv(p, cmd);
  const r = await runCmd(c, args, { timeoutMs });
  if (r.code !== 0) throw new Error(`${cmd.join(' ')}: ${r.stderr.trim() || r.stdout.trim()}`);
  return r.stdout.trim();
}

function background(p: Place, cmd: string[]): ChildProcess {
  const [c, ...args] = argv(p, cmd);
  return spawn(c, args, { stdio: 'ignore' });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const median = (xs: number[]) =>
  Math.round(
    percentile(
      [...xs].sort((a, b) => a - b),
      50,
    ),
  );

/** One run of each: Gbit/s and round trips/s from `from` to a server run at `to`, reachable there as `ip`. */
async function measureOnce(from: Place, to: Place, ip: string): Promise<{ gbps: number; rr: number }> {
  const srv = background(to, ['iperf3', '-s', '-1', '-p', '5201']);
  await sleep(300);
  let gbps: number;
  try {
    const out = JSON.parse(await run(from, ['iperf3', '-c', ip, '-p', '5201', '-t', String(SECONDS), '-J']));
    gbps = out.end.sum_received.bits_per_second / 1e9;
  } finally {
    srv.kill();
  }
  const echo = background(to, [process.execPath, PEER, 'serve', '5202']);
  await sleep(400);
  try {
    return { gbps, rr: Number(await run(from, [process.execPath, PEER, 'drive', ip, '5202', String(SECONDS)])) };
  } finally {
    echo.kill();
  }
}

/** A path measured in turns with the others; `skipped` says why it never ran. */
interface Path {
  from: Place;
  to: Place;
  ip: string;
  runs: Array<{ gbps: number; rr: number }>;
  skipped?: string;
}
const newPath = (from: Place, to: Place, ip: string): Path => ({ from, to, ip, runs: [] });
const summary = (p: Path) =>
  p.skipped !== undefined
    ? { skipped: p.skipped }
    : {
        gbitPerSec:
          Math.round(
            percentile(
              [...p.runs.map((r) => r.gbps)].sort((a, b) => a - b),
              50,
            ) * 100,
          ) / 100,
        requestsPerSec: median(p.runs.map((r) => r.rr)),
        runs: p.runs.map((r) => Math.round(r.gbps * 100) / 100),
      };

async function pidOf(h: DockerHost, name: string): Promise<number> {
  return Number(await h.dockerOk(['inspect', '-f', '{{.State.Pid}}', name]));
}
async function ipOf(h: DockerHost, name: string, net: string): Promise<string> {
  return h.dockerOk(['inspect', '-f', `{{(index .NetworkSettings.Networks "${net}").IPAddress}}`, name]);
}

async function until(fn: () => Promise<boolean>, ms: number): Promise<boolean> {
  for (const t0 = Date.now(); Date.now() - t0 < ms; await sleep(250)) if (await fn().catch(() => false)) return true;
  return false;
}

async function main() {
  const scope = netnsScope();
  const hosts: DockerHost[] = [];
  const fabric = await startFabric(scope);
  const result: Record<string, unknown> = { seconds: SECONDS, repeats: REPEATS };
  try {
    for (const i of [1, 2]) {
      const { ns, ip } = await fabric.addHost(`tp${i}`, i);
      hosts.push(
        await startDockerHost(scope, {
          name: `tp${i}`,
          etcd: fabric.etcd.endpoint,
          env: { CALICO_IP: ip, CALICO_LOG_LEVEL: 'warn' },
          onFabric: { ns, ip },
          dockerIptables: true,
        }),
      );
    }
    const [a, b] = hosts;
    // Every path stays up and the runs take turns, so each round shares one minute of the machine.
    const paths: Record<string, Path> = {};
    if (wanted('host')) paths.hostToHost = newPath({ ns: a.ns.name }, { ns: b.ns.name }, '172.31.0.2');

    await a.calico(['pool', 'add', POOL]);
    await a.calico(['pool', 'add', POOL_VXLAN, '--vxlan-mode', 'Always']);
    for (const h of hosts) {
      await h.dockerOk(['network', 'create', '-d', 'calico', '--ipam-driver', 'calico-ipam', '--subnet', POOL, 'tp']);
      await h.dockerOk(['network', 'create', '-d', 'calico', '--ipam-driver', 'calico-ipam', '--subnet', POOL_VXLAN, 'tpv']);
    }
    if (wanted('native')) paths.calicoNative = await containerPath(a, b, 'tp', 'tpc', 'tps');
    if (wanted('vxlan')) {
      const vx = await containerPath(a, b, 'tpv', 'tvc', 'tvs');
      const viaVxlan = async () => (await a.ns.ip(['route', 'show', 'dev', 'vxlan.calico'])).includes('10.70.');
      if (!vx.skipped && !(await until(viaVxlan, 20_000))) vx.skipped = 'no route through vxlan.calico within 20 s';
      paths.calicoVxlan = vx;
    }
    if (wanted('overlay')) paths.dockerOverlay = await overlay(a, b);

    for (let i = 0; i < REPEATS; i++) for (const p of Object.values(paths)) if (p.skipped === undefined) p.runs.push(await measureOnce(p.from, p.to, p.ip));
    for (const [k, p] of Object.entries(paths)) result[k] = summary(p);
    if (wanted('published')) result.publishedPorts = await published(a, b);

    const r = (x: number, y: number) => Math.round((x / y) * 100) / 100;
    const host = (result.hostToHost ?? {}) as { gbitPerSec?: number };
    const native = (result.calicoNative ?? {}) as { gbitPerSec?: number };
    const vx = (result.calicoVxlan ?? {}) as { gbitPerSec?: number };
    const ov = (result.dockerOverlay ?? {}) as { gbitPerSec?: number };
    const pp = (result.publishedPorts ?? {}) as { calicoPerSec?: number; bridgePerSec?: number };
    result.targets = {
      nativeAtLeast095xHost:
        native.gbitPerSec !== undefined && host.gbitPerSec !== undefined
          ? { measured: r(native.gbitPerSec, host.gbitPerSec), met: native.gbitPerSec >= 0.95 * host.gbitPerSec }
          : 'not measured',
      vxlanAtLeastDockerOverlay:
        vx.gbitPerSec !== undefined && ov.gbitPerSec !== undefined
          ? { measured: r(vx.gbitPerSec, ov.gbitPerSec), met: vx.gbitPerSec >= ov.gbitPerSec }
          : 'not measured',
      publishedPortsAtLeastBridge:
        pp.calicoPerSec !== undefined && pp.bridgePerSec !== undefined
          ? { measured: r(pp.calicoPerSec, pp.bridgePerSec), met: pp.calicoPerSec >= pp.bridgePerSec }
          : 'not measured',
    };
    process.stdout.write(JSON.stringify(result, null, 2) + '\n');
  } finally {
    for (const h of hosts) await h.docker(['swarm', 'leave', '-f']);
    for (const h of hosts) await h.destroy();
    await fabric.etcd.destroy();
    await scope.destroyAll();
  }
}

/** A client on host A and a server on host B on network `net`, once they reach each other. */
async function containerPath(a: DockerHost, b: DockerHost, net: string, clientName: string, serverName: string): Promise<Path> {
  await a.dockerOk(['run', '-d', '--name', clientName, '--network', net, 'busybox', 'sleep', '3600']);
  await b.dockerOk(['run', '-d', '--name', serverName, '--network', net, 'busybox', 'sleep', '3600']);
  const p = newPath({ pid: await pidOf(a, clientName) }, { pid: await pidOf(b, serverName) }, await ipOf(b, serverName, net));
  if (!(await until(() => run(p.from, ['ping', '-c', '1', '-W', '1', p.ip]).then(() => true), 30_000)))
    p.skipped = `the containers on ${net} never reached each other`;
  return p;
}

/** Docker's overlay between the same two daemons, made a swarm for it. */
async function overlay(a: DockerHost, b: DockerHost): Promise<Path> {
  try {
    await a.dockerOk(['swarm', 'init', '--advertise-addr', '172.31.0.1']);
    await b.dockerOk(['swarm', 'join', '--token', await a.dockerOk(['swarm', 'join-token', '-q', 'worker']), '172.31.0.1:2377']);
    await a.dockerOk(['network', 'create', '-d', 'overlay', '--attachable', '--subnet', '10.69.0.0/24', 'ov']);
    return await containerPath(a, b, 'ov', 'oc', 'os');
  } catch (err) {
    return { ...newPath({ ns: a.ns.name }, { ns: b.ns.name }, ''), skipped: (err as Error).message };
  }
}

/**
 * Connections per second from host B to a port host A publishes: calico network vs Docker's
 * bridge, measured in turns (bridge, calico, bridge, ...) so a busy machine's swings fall on both.
 */
async function published(a: DockerHost, b: DockerHost) {
  const out: Record<string, unknown> = {};
  const servers: ReturnType<typeof background>[] = [];
  const start = async (name: string, args: string[], port: number) => {
    await a.dockerOk(['run', '-d', '--name', name, ...args, '-p', `${port}:7000`, 'busybox', 'sleep', '3600']);
    servers.push(background({ pid: await pidOf(a, name) }, [process.execPath, PEER, 'serve', '7000']));
    return port;
  };
  const sides: Array<{ key: 'bridge' | 'calico'; port: number; runs: number[] }> = [];
  // Each repeat opens thousands of connections to one address and port: without reusing
  // TIME_WAIT ports the client runs out of them after the first repeat and measures its own stall.
  await b.ns.exec('sysctl', ['-q', '-w', 'net.ipv4.tcp_tw_reuse=1']);
  try {
    try {
      // The daemon runs with --bridge=none (the harness's default), so the bridge is a user-defined one.
      await a.dockerOk(['network', 'create', '-d', 'bridge', '--subnet', '10.201.0.0/24', 'tpbr']);
      sides.push({ key: 'bridge', port: await start('pb', ['--network', 'tpbr'], 18081), runs: [] });
    } catch (err) {
      out.bridgeSkipped = (err as Error).message;
    }
    try {
      sides.push({ key: 'calico', port: await start('pc', ['--network', 'tp'], 18080), runs: [] });
    } catch (err) {
      out.calicoSkipped = (err as Error).message;
    }
    await sleep(400);
    for (let i = 0; i < REPEATS; i++)
      for (const side of sides) {
        try {
          side.runs.push(Number(await run({ ns: b.ns.name }, [process.execPath, PEER, 'connect', '172.31.0.1', String(side.port), String(SECONDS)])));
        } catch (err) {
          out[`${side.key}Skipped`] = (err as Error).message;
        }
      }
  } finally {
    for (const s of servers) s.kill();
  }
  for (const side of sides) if (side.runs.length) out[`${side.key}PerSec`] = median(side.runs);
  return { ...out, runs: Object.fromEntries(sides.map((x) => [x.key, x.runs])) };
}

main().catch((err) => {
  process.stderr.write(String(err?.stack ?? err) + '\n');
  process.exit(1);
});
