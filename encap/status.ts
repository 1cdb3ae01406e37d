/**
 * `calico status`'s encapsulation section: how this host reaches every other host's blocks
 * (through vxlan.calico, tunl0, natively, or left to BGP), planned from etcd exactly as the
 * agent plans it, beside what this host's kernel has for the tunnel devices.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { KV } from '../lib/datastore/kv';
import { codecs } from '../lib/datastore/codec';
import { keyName, keys } from '../lib/datastore/keys';
import { cidrFromKey } from '../lib/ip';
import { IPIP_DEVICE, VXLAN_DEVICE, encapPlan } from './plan';

const run = promisify(execFile);

export interface HostReach {
  host: string;
  address?: string;
  subnet?: string;
  vtep?: string;
  /** `block via`: vxlan, ipip, native or bgp. */
  blocks: Array<{ cidr: string; via: 'vxlan' | 'ipip' | 'native' | 'bgp' }>;
}

export interface EncapStatus {
  devices: Record<string, { mtu?: number; mac?: string; up: boolean } | null>;
  hosts: HostReach[];
}

async function device(name: string): Promise<EncapStatus['devices'][string]> {
  try {
    const [l] = JSON.parse((await run('ip', ['-j', 'link', 'show', 'dev', name])).stdout) as Array<{ mtu?: number; address?: string; flags?: string[] }>;
    return { mtu: l.mtu, mac: l.address, up: !!l.flags?.includes('UP') };
  } catch {
    return null;
  }
}

export async function encapStatus(kv: KV, self: string): Promise<EncapStatus> {
  const [hostEntries, poolEntries, affEntries] = await Promise.all([
    kv.list(keys.hosts()),
    kv.list(keys.pools()),
    kv.list(keys.affinities(), { keysOnly: true }),
  ]);
  const hosts = codecs.host.decodeAll(hostEntries);
  const pools = codecs.pool.decodeAll(poolEntries);
  const affinities = affEntries.flatMap((e) => {
    const rest = keyName(e.key, keys.affinities());
    const i = rest.indexOf('/');
    return i > 0 ? [{ host: rest.slice(0, i), cidr: cidrFromKey(rest.slice(i + 1)) }] : [];
  });
  const me = hosts.find((h) => h.name === self);
  const plan = me ? encapPlan({ self: me, hosts, pools, affinities, uplinkMtu: 1500 }) : undefined;
  const routed = new Map((plan?.routes ?? []).map((r) => [r.dst, r]));
  const reach: HostReach[] = hosts
    .filter((h) => h.name !== self)
    .sort((a, b) => a.name.localeCompare(b.name))
    .map((h) => ({
      host: h.name,
      ...(h.ipv4 ? { address: h.ipv4 } : {}),
      ...(h.ipv4Subnet ? { subnet: h.ipv4Subnet } : {}),
      ...(h.vxlanMac ? { vtep: h.vxlanMac } : {}),
      blocks: affinities
        .filter((a) => a.host === h.name)
        .map((a) => {
          const r = routed.get(a.cidr);
          const via = !r ? 'bgp' : r.dev === VXLAN_DEVICE ? 'vxlan' : r.dev === IPIP_DEVICE ? 'ipip' : 'native';
          return { cidr: a.cidr, via } as const;
        }),
    }));
  return { devices: { [VXLAN_DEVICE]: await device(VXLAN_DEVICE), [IPIP_DEVICE]: await device(IPIP_DEVICE) }, hosts: reach };
}
