/**
 * The key layout under KEY_PREFIX: one function per record kind, and nothing else builds keys.
 * Each kind's value is decoded by the codec of the same name (codec.ts).
 */
import { cidrKey } from '../ip';

export const keys = {
  host: (name: string) => `hosts/${name}`,
  hosts: () => 'hosts/',
  /** Lease-backed liveness, separate from the host record so expiry removes nothing else. */
  alive: (name: string) => `alive/${name}`,
  alives: () => 'alive/',
  pool: (cidr: string) => `pools/${cidrKey(cidr)}`,
  pools: () => 'pools/',
  block: (cidr: string) => `ipam/blocks/${cidrKey(cidr)}`,
  blocks: () => 'ipam/blocks/',
  affinity: (host: string, cidr: string) => `ipam/affinity/${host}/${cidrKey(cidr)}`,
  affinities: (host?: string) => (host ? `ipam/affinity/${host}/` : 'ipam/affinity/'),
  network: (host: string, id: string) => `networks/${host}/${id}`,
  networks: (host?: string) => (host ? `networks/${host}/` : 'networks/'),
  endpoint: (host: string, id: string) => `endpoints/${host}/${id}`,
  endpoints: (host?: string) => (host ? `endpoints/${host}/` : 'endpoints/'),
  /** Global BGP settings: the default AS and the node-to-node mesh. */
  bgpSettings: () => 'config/bgp',
  peer: (name: string) => `bgppeers/${name}`,
  peers: () => 'bgppeers/',
  policy: (name: string) => `policies/${name}`,
  policies: () => 'policies/',
  /** One per Calico network name, kept by the nodes' policy agents. */
  profile: (name: string) => `profiles/${name}`,
  profiles: () => 'profiles/',
  /** GlobalNetworkSets: labelled CIDRs that rule selectors match. */
  networkSet: (name: string) => `netsets/${name}`,
  networkSets: () => 'netsets/',
};

/** The last segment of a key under `prefix` (a host, a network ID, a CIDR key). */
export function keyName(key: string, prefix: string): string {
  return key.slice(prefix.length);
}

/** Host names become key segments: keep them to DNS-label-ish characters. */
export function validHostName(name: string): boolean {
  return /^[A-Za-z0-9]([A-Za-z0-9._-]{0,251}[A-Za-z0-9])?$/.test(name);
}
