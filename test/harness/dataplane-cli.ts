/**
 * Runs LinuxDataplane operations in the network namespace this process was started in (a
 * netlink socket acts on its opener's namespace, so tests start this with runNodeInNetns).
 *
 * Usage: node dataplane-cli.js '<command or array of commands as JSON>'
 * Prints one JSON line: an array with one {ok, value} or {ok:false, error} per command, all run
 * in order on the same LinuxDataplane instance (failures do not stop later commands).
 */
import { performance } from 'node:perf_hooks';
import { classify } from '../../lib/errors';
import { LinuxDataplane } from '../../lib/dataplane/linux';
import type { EndpointWiring } from '../../lib/dataplane/types';

export type DataplaneCommand =
  | { op: 'wire'; wiring: EndpointWiring }
  | { op: 'unwire'; ifName: string }
  | { op: 'ensureRoute'; ifName: string; ip: string }
  | { op: 'listLinks' }
  | { op: 'listRoutes' }
  | { op: 'enableForwarding'; ipv6: boolean }
  | { op: 'uplinkMtu' }
  | { op: 'uplinkIPv4' }
  /** Wires `count` endpoints one after the other, then unwires them; reports timings. */
  | { op: 'bench'; count: number; ipv6?: boolean };

export type CommandResult = { ok: true; value: unknown } | { ok: false; error: { name: string; kind: string; message: string } };

export interface BenchResult {
  count: number;
  wireTotalMs: number;
  unwireTotalMs: number;
  wireMeanMs: number;
  wireP50Ms: number;
  wireP99Ms: number;
  unwireMeanMs: number;
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0;
}

async function bench(dp: LinuxDataplane, count: number, ipv6: boolean): Promise<BenchResult> {
  const wire: number[] = [];
  const unwire: number[] = [];
  const names: string[] = [];
  for (let i = 0; i < count; i++) {
    const hi = (i >> 8) & 0xff;
    const lo = i & 0xff;
    const w: EndpointWiring = {
      hostIfName: `calib${i}`,
      tempIfName: `tmpb${i}`,
      mtu: 1500,
      containerMac: `02:42:ac:1f:${hi.toString(16).padStart(2, '0')}:${lo.toString(16).padStart(2, '0')}`,
      ipv4: [`10.77.${hi}.${lo}`],
      ipv6: ipv6 ? [`fd77::${i.toString(16)}`] : [],
    };
    const t0 = performance.now();
    await dp.wireEndpoint(w);
    wire.push(performance.now() - t0);
    names.push(w.hostIfName);
  }
  for (const n of names) {
    const t0 = performance.now();
    await dp.unwireEndpoint(n);
    unwire.push(performance.now() - t0);
  }
  const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
  const sorted = [...wire].sort((a, b) => a - b);
  const round = (x: number) => Math.round(x * 1000) / 1000;
  return {
    count,
    wireTotalMs: round(sum(wire)),
    unwireTotalMs: round(sum(unwire)),
    wireMeanMs: round(sum(wire) / count),
    wireP50Ms: round(percentile(sorted, 50)),
    wireP99Ms: round(percentile(sorted, 99)),
    unwireMeanMs: round(sum(unwire) / count),
  };
}

async function runOne(dp: LinuxDataplane, c: DataplaneCommand): Promise<unknown> {
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
    case 'bench':
      return bench(dp, c.count, c.ipv6 ?? false);
  }
}

async function main(): Promise<void> {
  const parsed = JSON.parse(process.argv[2] ?? '[]') as DataplaneCommand | DataplaneCommand[];
  const commands = Array.isArray(parsed) ? parsed : [parsed];
  const dp = new LinuxDataplane();
  const results: CommandResult[] = [];
  try {
    for (const c of commands) {
      try {
        results.push({ ok: true, value: (await runOne(dp, c)) ?? null });
      } catch (err) {
        const e = classify(err);
        results.push({ ok: false, error: { name: e.name, kind: e.kind, message: e.message } });
      }
    }
  } finally {
    dp.close();
  }
  process.stdout.write(`${JSON.stringify(results)}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
