/** The key layout under KEY_PREFIX. One function per record kind; nothing else builds keys. */
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
};

/** Host names become key segments: keep them to DNS-label-ish characters. */
export function validHostName(name: string): boolean {
  return /^[A-Za-z0-9]([A-Za-z0-9._-]{0,251}[A-Za-z0-9])?$/.test(name);
}
