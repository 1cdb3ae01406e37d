/**
 * What encapsulation needs in this host's kernel, from etcd alone (Calico's VXLAN route
 * manager, in our design): for every block affine to another host, the pool it lies in says
 * how to reach it. `Always` → through the tunnel; `CrossSubnet` → through the tunnel only when
 * that host's address is outside this host's subnet, natively (via its address) within it;
 * `Never` → nothing here, BGP routes it as before. Pure and deterministic, so an unchanged
 * cluster is never reapplied. Because the routes come from etcd, VXLAN needs no BGP at all.
 * IP-in-IP's routes are BGP's, as in Calico: BIRD puts them on tunl0 (routing/render.ts), so
 * the plan only lists them (`bird`) for `calico status`; the kernel side brings up tunl0.
 */
import { createHash } from 'node:crypto';
import type { PoolRecord } from '../lib/datastore/records';
import { type Cidr, type Family, containsCidr, containsIP, parseCidr, parseIP } from '../lib/ip';
import { type Encapsulation, encapsulationOf } from '../ipam/pool-settings';

export const VXLAN_DEVICE = 'vxlan.calico';
/** Calico's VNI and the IANA port, so a mixed fleet can share a fabric's firewall rules. */
export const VXLAN_VNI = 4096;
export const VXLAN_PORT = 4789;
export const IPIP_DEVICE = 'tunl0';
/** The routing protocol number on our routes (Felix uses 80 too): how we find our own, and how BIRD tells them from workload routes. */
export const ENCAP_PROTO = 80;
/** Bytes each encapsulation adds, taken off the uplink's MTU for the tunnel and the networks on its pools. */
export const OVERHEAD: Record<Encapsulation, number> = { vxlan: 50, ipip: 20, none: 0 };

export interface PlanHost {
  name: string;
  /** The underlay address tunnels are sent to, and BGP's next hop. */
  ipv4?: string;
  ipv6?: string;
  /** The subnet `ipv4` lies in (CrossSubnet's "same subnet"). */
  ipv4Subnet?: string;
  /** This host's VTEP MAC on vxlan.calico. */
  vxlanMac?: string;
}

export interface PlanInput {
  self: PlanHost;
  hosts: PlanHost[];
  pools: ReadonlyArray<Pick<PoolRecord, 'cidr' | 'vxlanMode' | 'ipipMode'>>;
  /** Every block affinity in the cluster. */
  affinities: ReadonlyArray<{ host: string; cidr: string }>;
  uplinkMtu: number;
}

export interface RouteSpec {
  dst: string;
  /** The host the block is affine to (for status; the kernel never sees it). */
  host: string;
  via: string;
  /** Absent for a native route: the kernel resolves the device from `via`. */
  dev?: string;
  onlink: boolean;
  /** Programmed by BIRD from BGP (IP-in-IP pools), not by the encapsulation agent. */
  bird?: true;
}

export interface EncapPlan {
  vxlan?: { vni: number; port: number; local: string; mac: string; mtu: number };
  ipip?: { mtu: number };
  routes: RouteSpec[];
  /** Static neighbours on vxlan.calico: the next hop of each remote VTEP → its MAC. */
  neighbours: Array<{ ip: string; mac: string }>;
  /** Forwarding entries on vxlan.calico: a remote VTEP MAC → the underlay address it lives at. */
  fdb: Array<{ mac: string; dst: string }>;
  /** Why a block could not be routed (a host without an address or a VTEP yet): logged, retried on the next change. */
  skipped: string[];
}

/** A stable, locally administered unicast MAC per host name: the same after every restart. */
export function vtepMac(host: string): string {
  const b = createHash('sha256').update(`calico-vtep:${host}`).digest();
  b[0] = (b[0] & 0xfc) | 0x02;
  return [...b.subarray(0, 6)].map((x) => x.toString(16).padStart(2, '0')).join(':');
}

/** The EUI-64 link-local address a MAC gives: the IPv6 next hop towards a remote VTEP. */
export function linkLocalOf(mac: string): string {
  const b = mac.split(':').map((h) => parseInt(h, 16));
  b[0] ^= 0x02;
  const w = [(b[0] << 8) | b[1], (b[2] << 8) | 0xff, (0xfe << 8) | b[3], (b[4] << 8) | b[5]];
  return `fe80::${w.map((x) => x.toString(16)).join(':')}`;
}

function sameSubnet(self: PlanHost, other: PlanHost): boolean {
  if (!self.ipv4Subnet || !other.ipv4) return false; // unknown: encapsulate, which always works
  return containsIP(parseCidr(self.ipv4Subnet), parseIP(other.ipv4));
}

export function encapPlan(input: PlanInput): EncapPlan {
  const { self } = input;
  const pools = input.pools.map((p) => ({ net: parseCidr(p.cidr), encap: encapsulationOf(p) }));
  const plan: EncapPlan = { routes: [], neighbours: [], fdb: [], skipped: [] };
  const wants = (kind: Encapsulation) => pools.some((p) => p.encap.kind === kind);
  if (wants('vxlan') && self.ipv4 && self.vxlanMac) {
    plan.vxlan = { vni: VXLAN_VNI, port: VXLAN_PORT, local: self.ipv4, mac: self.vxlanMac, mtu: input.uplinkMtu - OVERHEAD.vxlan };
  }
  if (wants('ipip') && self.ipv4) plan.ipip = { mtu: input.uplinkMtu - OVERHEAD.ipip };
  const hosts = new Map(input.hosts.map((h) => [h.name, h]));
  const vteps = new Set<string>();
  const affinities = [...input.affinities].sort((a, b) => a.cidr.localeCompare(b.cidr) || a.host.localeCompare(b.host));
  for (const a of affinities) {
    if (a.host === self.name) continue;
    const block: Cidr = parseCidr(a.cidr);
    const pool = pools.find((p) => p.net.family === block.family && containsCidr(p.net, block));
    if (!pool || pool.encap.kind === 'none') continue;
    const h = hosts.get(a.host);
    const native = pool.encap.mode === 'CrossSubnet' && h !== undefined && sameSubnet(self, h);
    const fam: Family = block.family;
    if (!h?.ipv4) {
      plan.skipped.push(`${a.cidr}: host ${a.host} has no IPv4 address in etcd`);
      continue;
    }
    const bird = pool.encap.kind === 'ipip' ? { bird: true as const } : {};
    if (native) {
      const via = fam === 4 ? h.ipv4 : h.ipv6;
      if (via) plan.routes.push({ dst: a.cidr, host: a.host, via, onlink: false, ...bird });
      else plan.skipped.push(`${a.cidr}: host ${a.host} has no IPv6 address for a native route`);
      continue;
    }
    if (pool.encap.kind === 'ipip') {
      if (plan.ipip) plan.routes.push({ dst: a.cidr, host: a.host, via: h.ipv4, dev: IPIP_DEVICE, onlink: true, bird: true });
      continue;
    }
    if (!plan.vxlan) continue;
    if (!h.vxlanMac) {
      plan.skipped.push(`${a.cidr}: host ${a.host} has no VXLAN tunnel endpoint in etcd yet`);
      continue;
    }
    const via = fam === 4 ? h.ipv4 : linkLocalOf(h.vxlanMac);
    plan.routes.push({ dst: a.cidr, host: a.host, via, dev: VXLAN_DEVICE, onlink: fam === 4 });
    if (!vteps.has(`${fam}/${h.name}`)) {
      vteps.add(`${fam}/${h.name}`);
      plan.neighbours.push({ ip: via, mac: h.vxlanMac });
    }
    if (!plan.fdb.some((f) => f.mac === h.vxlanMac)) plan.fdb.push({ mac: h.vxlanMac, dst: h.ipv4 });
  }
  return plan;
}
