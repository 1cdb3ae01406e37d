/**
 * Puts an EncapPlan into the kernel and keeps it there: the tunnel devices, our routes (proto
 * ENCAP_PROTO, so ours are told from everyone else's), vxlan.calico's static neighbours and
 * forwarding entries. Reads what is there first and changes only the difference, so the
 * periodic pass costs a few listings and repairs hand edits. `ip` and `bridge` are fed batches
 * on stdin; every address and MAC in them was parsed first, and nothing goes through a shell.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { feed } from '../firewall/iptables/tools';
import { UnavailableError } from '../lib/errors';
import { canonicalCidr, formatIP, parseIP } from '../lib/ip';
import { ENCAP_PROTO, type EncapPlan, IPIP_DEVICE, type RouteSpec, VXLAN_DEVICE } from './plan';

const run = promisify(execFile);
const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

interface LinkJson {
  ifname: string;
  address?: string;
  mtu?: number;
  operstate?: string;
  flags?: string[];
  linkinfo?: { info_kind?: string; info_data?: { id?: number; port?: number; local?: string } };
}

async function json<T>(cmd: string, args: string[]): Promise<T> {
  const { stdout } = await run(cmd, args, { maxBuffer: 64 * 1024 * 1024 });
  return (stdout.trim() ? JSON.parse(stdout) : []) as T;
}

async function link(name: string): Promise<LinkJson | undefined> {
  try {
    return (await json<LinkJson[]>('ip', ['-d', '-j', 'link', 'show', 'dev', name]))[0];
  } catch {
    return undefined;
  }
}

const mac = (m: string) => {
  if (!MAC.test(m)) throw new Error(`"${m}" is not a MAC address`);
  return m;
};
const addr = (ip: string) => formatIP(parseIP(ip, 'tunnel address'));

export interface KernelChanges {
  devices: number;
  routes: number;
  neighbours: number;
  fdb: number;
}

export async function applyEncap(plan: EncapPlan): Promise<KernelChanges> {
  const changes: KernelChanges = { devices: 0, routes: 0, neighbours: 0, fdb: 0 };
  changes.devices += await ensureVxlan(plan.vxlan);
  changes.devices += await ensureIpip(plan.ipip);
  if (plan.vxlan) {
    changes.fdb = await syncFdb(plan.fdb);
    changes.neighbours = await syncNeighbours(plan.neighbours);
  }
  // IP-in-IP's routes are BIRD's (proto bird); ours are only the ones we program.
  changes.routes = await syncRoutes(plan.routes.filter((r) => !r.bird));
  return changes;
}

async function ensureVxlan(want: EncapPlan['vxlan']): Promise<number> {
  const have = await link(VXLAN_DEVICE);
  if (!want) {
    if (!have) return 0;
    await run('ip', ['link', 'del', VXLAN_DEVICE]); // its routes, neighbours and entries go with it
    return 1;
  }
  const d = have?.linkinfo?.info_data;
  const same = have?.linkinfo?.info_kind === 'vxlan' && d?.id === want.vni && d?.port === want.port && d?.local === want.local;
  let n = 0;
  if (have && !same) {
    await run('ip', ['link', 'del', VXLAN_DEVICE]);
    n++;
  }
  if (!have || !same) {
    // nolearning: remote VTEPs come from etcd only, never from whoever sends us a packet.
    await run('ip', [
      'link',
      'add',
      VXLAN_DEVICE,
      'type',
      'vxlan',
      'id',
      String(want.vni),
      'dstport',
      String(want.port),
      'local',
      addr(want.local),
      'nolearning',
    ]);
    n++;
  }
  const now = await link(VXLAN_DEVICE);
  if (now?.address !== want.mac || now.mtu !== want.mtu || !now.flags?.includes('UP')) {
    await run('ip', ['link', 'set', VXLAN_DEVICE, 'address', mac(want.mac), 'mtu', String(want.mtu), 'up']);
    n++;
  }
  return n;
}

async function ensureIpip(want: EncapPlan['ipip']): Promise<number> {
  let have = await link(IPIP_DEVICE);
  if (!want) {
    // tunl0 is the kernel's fallback device and cannot be deleted; down, it carries nothing.
    if (have?.flags?.includes('UP')) {
      await run('ip', ['link', 'set', IPIP_DEVICE, 'down']);
      return 1;
    }
    return 0;
  }
  if (!have) {
    try {
      await run('ip', ['link', 'add', 'name', IPIP_DEVICE, 'type', 'ipip']);
    } catch (err) {
      throw new UnavailableError(
        `IP-in-IP needs the kernel's ipip module, and ${IPIP_DEVICE} could not be made (${(err as Error).message.trim()}): load it (modprobe ipip) or use vxlanMode instead`,
      );
    }
    have = await link(IPIP_DEVICE);
  }
  if (have?.mtu === want.mtu && have.flags?.includes('UP')) return 0;
  await run('ip', ['link', 'set', IPIP_DEVICE, 'mtu', String(want.mtu), 'up']);
  return 1;
}

interface RouteJson {
  dst: string;
  gateway?: string;
  dev?: string;
  flags?: string[];
}

function same(r: RouteJson, w: RouteSpec): boolean {
  return r.gateway === addr(w.via) && (!w.dev || r.dev === w.dev) && !!r.flags?.includes('onlink') === w.onlink;
}

async function syncRoutes(want: RouteSpec[]): Promise<number> {
  const have = [
    ...(await json<RouteJson[]>('ip', ['-j', '-4', 'route', 'show', 'proto', String(ENCAP_PROTO)])),
    ...(await json<RouteJson[]>('ip', ['-j', '-6', 'route', 'show', 'proto', String(ENCAP_PROTO)])),
  ];
  const wanted = new Map(want.map((w) => [canonicalCidr(w.dst), w]));
  const byDst = new Map(have.map((r) => [canonicalCidr(r.dst.includes('/') ? r.dst : `${r.dst}/${r.dst.includes(':') ? 128 : 32}`), r]));
  const lines: string[] = [];
  for (const [dst] of byDst) if (!wanted.has(dst)) lines.push(`route del ${dst} proto ${ENCAP_PROTO}`);
  for (const [dst, w] of wanted) {
    const r = byDst.get(dst);
    if (r && same(r, w)) continue;
    lines.push(`route replace ${dst} via ${addr(w.via)}${w.dev ? ` dev ${w.dev}` : ''}${w.onlink ? ' onlink' : ''} proto ${ENCAP_PROTO}`);
  }
  if (lines.length) await feed('ip', ['-force', '-batch', '-'], lines.join('\n') + '\n');
  return lines.length;
}

interface NeighJson {
  dst: string;
  lladdr?: string;
  state?: string[];
}

async function syncNeighbours(want: EncapPlan['neighbours']): Promise<number> {
  const have = [
    ...(await json<NeighJson[]>('ip', ['-j', '-4', 'neigh', 'show', 'dev', VXLAN_DEVICE])),
    ...(await json<NeighJson[]>('ip', ['-j', '-6', 'neigh', 'show', 'dev', VXLAN_DEVICE])),
  ];
  const wanted = new Map(want.map((n) => [addr(n.ip), n.mac]));
  const lines: string[] = [];
  for (const h of have) {
    if (h.dst.startsWith('fe80:') && !wanted.has(h.dst) && !h.state?.includes('PERMANENT')) continue; // the kernel's own
    if (!wanted.has(h.dst)) lines.push(`neigh del ${h.dst} dev ${VXLAN_DEVICE}`);
  }
  for (const [ip, m] of wanted) {
    const h = have.find((x) => x.dst === ip);
    if (h?.lladdr === m && h.state?.includes('PERMANENT')) continue;
    lines.push(`neigh replace ${ip} lladdr ${mac(m)} dev ${VXLAN_DEVICE} nud permanent`);
  }
  if (lines.length) await feed('ip', ['-force', '-batch', '-'], lines.join('\n') + '\n');
  return lines.length;
}

interface FdbJson {
  mac: string;
  dst?: string;
}

async function syncFdb(want: EncapPlan['fdb']): Promise<number> {
  const have = (await json<FdbJson[]>('bridge', ['-j', 'fdb', 'show', 'dev', VXLAN_DEVICE])).filter((f) => f.dst);
  const key = (m: string, d: string) => `${m}|${d}`;
  const wanted = new Set(want.map((f) => key(mac(f.mac), addr(f.dst))));
  const haveKeys = new Set(have.map((f) => key(f.mac, f.dst!)));
  const lines: string[] = [];
  for (const f of have) if (!wanted.has(key(f.mac, f.dst!))) lines.push(`fdb del ${f.mac} dev ${VXLAN_DEVICE} dst ${f.dst} self`);
  for (const f of want) if (!haveKeys.has(key(f.mac, f.dst))) lines.push(`fdb append ${f.mac} dev ${VXLAN_DEVICE} dst ${addr(f.dst)} self permanent`);
  if (lines.length) await feed('bridge', ['-force', '-batch', '-'], lines.join('\n') + '\n');
  return lines.length;
}

/** Everything of ours, for CALICO_... removal and tests: the devices' state goes with them. */
export async function removeEncap(): Promise<void> {
  await applyEncap({ routes: [], neighbours: [], fdb: [], skipped: [] });
}
