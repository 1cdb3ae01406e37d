/**
 * What the project keeps in etcd, one JSON document per key. The layout (keys.ts) groups
 * records so each consumer needs one prefix read or watch.
 */
import type { Family } from '../ip';

export interface PoolRecord {
  cidr: string;
  family: Family;
  /** Prefix length of the host-affine blocks carved from this pool (26 / 122 by default). */
  blockSize: number;
  disabled: boolean;
  createdAt: string;
}

/** Who holds an address. Every allocation has one, so nothing can leak untraceably. */
export interface Owner {
  /** Host whose calico node allocated it. */
  host: string;
  /** The Docker IPAM PoolID it was requested through. */
  pool: string;
  /**
   * `pending`: handed out by RequestAddress, not yet claimed by an endpoint or network.
   * `endpoint`: held by a container endpoint. `aux`: reserved by `--aux-address`.
   */
  kind: 'pending' | 'endpoint' | 'aux';
  network?: string;
  endpoint?: string;
  /** Random per-request ID: lets an ambiguous etcd write be recognised as ours. */
  handle: string;
  since: string;
}

export interface BlockRecord {
  cidr: string;
  /** Host the block is affine to; null once released (its live addresses are "borrowed"). */
  affinity: string | null;
  /** Ordinal (offset in the block) to owner. */
  allocations: Record<string, Owner>;
  /** Free ordinals in reuse order: released ones go to the tail, so reuse is as late as possible. */
  unallocated: number[];
}

export interface AffinityRecord {
  state: 'confirmed';
  since: string;
}

export interface HostRecord {
  name: string;
  ipv4?: string;
  ipv6?: string;
  asn?: number;
  /** Set by `calico node set --route-reflector`: this host reflects routes for its cluster. */
  routeReflector?: string;
  version: string;
  startedAt: string;
}

export interface NetworkRecord {
  id: string;
  host: string;
  /** Docker's name, learned asynchronously from Docker (never asked for inside a request). */
  name?: string;
  /** Subnets Docker's IPAM data carried (0.0.0.0/0 and ::/0 mean "any pool"). */
  ipv4Pools: string[];
  ipv6Pools: string[];
  ipv6: boolean;
  /** From `-o com.docker.network.driver.mtu`; absent means the host default. */
  mtu?: number;
  /** Every `-o` option as given. */
  options: Record<string, string>;
  /** `--internal`: containers reach each other on the network and nothing outside it. */
  internal?: boolean;
  createdAt: string;
}

export interface EndpointRecord {
  id: string;
  host: string;
  network: string;
  /** Host-side interface, `cali` + 11 chars of the ID. */
  ifName: string;
  mac: string;
  /** /32 CIDRs. */
  ipv4: string[];
  /** /128 CIDRs. */
  ipv6: string[];
  containerId?: string;
  containerName?: string;
  /** Docker's SandboxKey (the container's netns path), learned at Join. */
  sandbox?: string;
  labels: Record<string, string>;
  createdAt: string;
}
