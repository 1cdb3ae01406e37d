/**
 * Runs dataplane operations in the network namespace this process was started in (a netlink
 * socket acts on its opener's namespace, so tests start this with runNodeInNetns).
 *
 * Usage: node dataplane-cli.js '<command or array of commands as JSON>' ['<CliOptions as JSON>']
 * Prints one JSON line: an array with one {ok, value} or {ok:false, error} per command, all run
 * in order on the same dataplane instance (failures do not stop later commands). The options
 * pick the implementation: LinuxDataplane on this thread (the default) or ThreadedDataplane.
 */
import { performance } from 'node:perf_hooks';
import { classify, isRetryable } from '../../lib/errors';
import { LinuxDataplane } from '../../lib/dataplane/linux';
import { ThreadedDataplane } from '../../lib/dataplane/threaded';
import type { Dataplane, EndpointWiring } from '../../lib/dataplane/types';

export type DataplaneImpl = 'linux' | 'threaded';

export interface CliOptions {
  impl?: DataplaneImpl;
  /** Root of the sysctl tree the dataplane writes. */
  procSys?: string;
  /** ThreadedDataplane only. */
  workers?: number;
}

export type DataplaneCommand =
  | { op: 'wire'; wiring: EndpointWiring }
  | { op: 'unwire'; ifName: string }
  | { op: 'ensureRoute'; ifName: string; ip: string }
  | { op: 'listLinks' }
  | { op: 'listRoutes' }
  | { op: 'enableForwarding'; ipv6: boolean }
  | { op: 'uplinkMtu' }
  | { op: 'uplinkIPv4' }
  | { op: 'uplinkIPv6' }
  /** Runs the commands concurrently (all started at once); the value is their results. */
  | { op: 'parallel'; commands: DataplaneCommand[] }
  /**
   * Runs the commands concurrently while a timer on this thread ticks every `intervalMs`;
   * reports the longest gap between ticks (how long this event loop was blocked).
   */
  | { op: 'loopProbe'; commands: DataplaneCommand[]; intervalMs?: number }
  /** ThreadedDataplane only: makes worker `index` die of an uncaught error. */
  | { op: 'crashWorker'; index?: number }
  /** Sleeps on this thread (lets a crashed worker's exit be noticed). */
  | { op: 'sleep'; ms: number }
  /**
   * Wires `count` endpoints, then unwires them, `width` at a time (1: one after the other);
   * reports timings and the longest stall of this thread's event loop.
   */
  | { op: 'bench'; count: number; ipv6?: boolean; width?: number };

export interface CommandError {
  name: string;
  kind: string;
  message: string;
  /** Constructor name of the error the caller received. */
  class: string;
  retryable: boolean;
}

export type CommandResult = { ok: true; value: unknown } | { ok: false; error: CommandError };

export interface LoopProbeResult {
  results: CommandResult[];
  elapsedMs: number;
  maxGapMs: number;
  ticks: number;
}

export interface BenchResult {
  count: number;
  width: number;
  wireTotalMs: number;
  unwireTotalMs: number;
  wireMeanMs: number;
  wireP50Ms: number;
  wireP99Ms: number;
  unwireMeanMs: number;
  unwireP99Ms: number;
  /** Longest gap between 5 ms ticks of a timer on this thread during the run. */
  maxLoopGapMs: number;
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0;
}

/** Measures how long this thread's event loop goes without running a timer. */
function loopMonitor(intervalMs: number): { stop(): { maxGapMs: number; ticks: number } } {
  let last = performance.now();
  let maxGap = 0;
  let ticks = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    maxGap = Math.max(maxGap, now - last);
    last = now;
    ticks++;
  }, intervalMs);
  return {
    stop() {
      clearInterval(timer);
      maxGap = Math.max(maxGap, performance.now() - last);
      return { maxGapMs: Math.round(maxGap * 1000) / 1000, ticks };
    },
  };
}

/** Runs fn(0..count-1) with at most `width` running at once; returns each one's latency. */
async function drive(count: number, width: number, fn: (i: number) => Promise<unknown>): Promise<{ lat: number[]; wallMs: number }> {
  const lat: number[] = [];
  let next = 0;
  const t0 = performance.now();
  const lane = async () => {
    while (next < count) {
      const i = next++;
      const s = performance.now();
      await fn(i);
      lat.push(performance.now() - s);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, width) }, lane));
  return { lat, wallMs: performance.now() - t0 };
}

async function bench(dp: Dataplane, count: number, ipv6: boolean, width: number): Promise<BenchResult> {
  const wirings = Array.from({ length: count }, (_, i): EndpointWiring => {
    const hi = (i >> 8) & 0xff;
    const lo = i & 0xff;
    return {
      hostIfName: `calib${i}`,
      tempIfName: `tmpb${i}`,
      mtu: 1500,
      containerMac: `02:42:ac:1f:${hi.toString(16).padStart(2, '0')}:${lo.toString(16).padStart(2, '0')}`,
      ipv4: [`10.77.${hi}.${lo}`],
      ipv6: ipv6 ? [`fd77::${i.toString(16)}`] : [],
    };
  });
  // Start-up (worker threads loading, the dump socket opening) is not what is measured: warm up
  // every worker of a ThreadedDataplane (list calls go round-robin) and the LinuxDataplane alike.
  await Promise.all(Array.from({ length: 16 }, () => dp.listWorkloadLinks()));
  const monitor = loopMonitor(5);
  const wire = await drive(count, width, (i) => dp.wireEndpoint(wirings[i]));
  const unwire = await drive(count, width, (i) => dp.unwireEndpoint(wirings[i].hostIfName));
  const { maxGapMs } = monitor.stop();
  const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
  const sorted = [...wire.lat].sort((a, b) => a - b);
  const sortedUnwire = [...unwire.lat].sort((a, b) => a - b);
  const round = (x: number) => Math.round(x * 1000) / 1000;
  return {
    count,
    width,
    wireTotalMs: round(wire.wallMs),
    unwireTotalMs: round(unwire.wallMs),
    wireMeanMs: round(sum(wire.lat) / count),
    wireP50Ms: round(percentile(sorted, 50)),
    wireP99Ms: round(percentile(sorted, 99)),
    unwireMeanMs: round(sum(unwire.lat) / count),
    unwireP99Ms: round(percentile(sortedUnwire, 99)),
    maxLoopGapMs: maxGapMs,
  };
}

function toResult(err: unknown): CommandResult {
  const e = classify(err);
  return { ok: false, error: { name: e.name, kind: e.kind, message: e.message, class: e.constructor.name, retryable: isRetryable(e) } };
}

async function settle(dp: Dataplane, c: DataplaneCommand): Promise<CommandResult> {
  try {
    return { ok: true, value: (await runOne(dp, c)) ?? null };
  } catch (err) {
    return toResult(err);
  }
}

async function runOne(dp: Dataplane, c: DataplaneCommand): Promise<unknown> {
  switch (c.op) {
    case 'wire':
      return dp.wireEndpoint(c.wiring);
    case 'unwire':
      return dp.unwireEndpoint(c.ifName);
    case 'ensureRoute':
      return dp.ensureRoute(c.ifName, c.ip);
    case 'listLinks':
      return dp.listWorkloadLinks();
    case 'listRoutes':
      return dp.listWorkloadRoutes();
    case 'enableForwarding':
      return dp.enableForwarding(c.ipv6);
    case 'uplinkMtu':
      return dp.uplinkMtu();
    case 'uplinkIPv4':
      return dp.uplinkIPv4();
    case 'uplinkIPv6':
      return dp.uplinkIPv6();
    case 'parallel':
      return Promise.all(c.commands.map((x) => settle(dp, x)));
    case 'loopProbe': {
      const t0 = performance.now();
      const monitor = loopMonitor(c.intervalMs ?? 5);
      const results = await Promise.all(c.commands.map((x) => settle(dp, x)));
      const elapsedMs = Math.round((performance.now() - t0) * 1000) / 1000;
      return { results, elapsedMs, ...monitor.stop() } satisfies LoopProbeResult;
    }
    case 'crashWorker':
      if (!(dp instanceof ThreadedDataplane)) throw new Error('crashWorker needs the threaded dataplane');
      return dp.crashWorker(c.index ?? 0);
    case 'sleep':
      return new Promise((r) => setTimeout(r, c.ms));
    case 'bench':
      return bench(dp, c.count, c.ipv6 ?? false, c.width ?? 1);
  }
}

async function main(): Promise<void> {
  const parsed = JSON.parse(process.argv[2] ?? '[]') as DataplaneCommand | DataplaneCommand[];
  const opts = JSON.parse(process.argv[3] ?? '{}') as CliOptions;
  const commands = Array.isArray(parsed) ? parsed : [parsed];
  const dp: Dataplane =
    opts.impl === 'threaded'
      ? new ThreadedDataplane(undefined, { procSys: opts.procSys, workers: opts.workers })
      : new LinuxDataplane(undefined, { procSys: opts.procSys });
  const results: CommandResult[] = [];
  try {
    for (const c of commands) results.push(await settle(dp, c));
  } finally {
    dp.close();
  }
  process.stdout.write(`${JSON.stringify(results)}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
