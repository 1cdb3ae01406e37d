/**
 * What the project keeps in etcd, one JSON document per key, as zod schemas: every record read
 * back is decoded through these (lib/datastore/codec.ts), so a malformed or foreign value is
 * refused by name instead of flowing on as a cast. The layout (keys.ts) groups records so each
 * consumer needs one prefix read or watch. Schemas are structural: what a record means (a
 * selector that parses, a pool that does not overlap another) is checked where it is written.
 */
import { z } from 'zod';

const family = z.union([z.literal(4), z.literal(6)]);

/** Calico's encapsulation modes, for a pool's vxlanMode and ipipMode (ipam/pool-settings.ts). */
export const EncapModeSchema = z.enum(['Always', 'CrossSubnet', 'Never']);

export const PoolRecord = z.object({
  cidr: z.string(),
  family,
  /** Prefix length of the host-affine blocks carved from this pool (26 / 122 by default). */
  blockSize: z.number().int(),
  disabled: z.boolean(),
  createdAt: z.string(),
  /** metadata.name of a pool written as a v3 IPPool (`calico apply`); `calico pool add` sets none. */
  name: z.string().optional(),
  /** Calico's pool settings (ipam/pool-settings.ts); absent means false / Never. */
  natOutgoing: z.boolean().optional(),
  vxlanMode: EncapModeSchema.optional(),
  ipipMode: EncapModeSchema.optional(),
});
export type PoolRecord = z.infer<typeof PoolRecord>;

const ownerBase = {
  /** Host whose calico node allocated it. */
  host: z.string(),
  /** The Docker IPAM PoolID it was requested through. */
  pool: z.string(),
  /** Random per-request ID: lets an ambiguous etcd write be recognised as ours. */
  handle: z.string(),
  since: z.string(),
  /** Docker's endpoint (container) name, which Docker 29+ sends with RequestAddress. */
  name: z.string().optional(),
};

/**
 * Who holds an address. Every allocation has one, so nothing can leak untraceably.
 * `pending`: handed out by RequestAddress, not yet claimed by an endpoint or network;
 * `endpoint`: held by a container endpoint; `aux`: reserved by a network's `--aux-address`.
 */
export const Owner = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('pending'), ...ownerBase }),
  z.object({ kind: z.literal('endpoint'), ...ownerBase, network: z.string(), endpoint: z.string() }),
  z.object({ kind: z.literal('aux'), ...ownerBase, network: z.string() }),
]);
export type Owner = z.infer<typeof Owner>;
export type PendingOwner = Extract<Owner, { kind: 'pending' }>;

export const BlockRecord = z.object({
  cidr: z.string(),
  /** Host the block is affine to; null once released (its live addresses are "borrowed"). */
  affinity: z.string().nullable(),
  /** Ordinal (offset in the block) to owner. */
  allocations: z.record(z.string(), Owner),
  /** Free ordinals in reuse order: released ones go to the tail, so reuse is as late as possible. */
  unallocated: z.array(z.number().int()),
});
export type BlockRecord = z.infer<typeof BlockRecord>;

export const AffinityRecord = z.object({ state: z.literal('confirmed'), since: z.string() });
export type AffinityRecord = z.infer<typeof AffinityRecord>;

export const HostRecord = z.object({
  name: z.string(),
  ipv4: z.string().optional(),
  ipv6: z.string().optional(),
  asn: z.number().int().optional(),
  /** Set by `calico node set --route-reflector`: this host reflects routes for its cluster. */
  routeReflector: z.string().optional(),
  /** The subnet `ipv4` lies in, for CrossSubnet: hosts in it are reached without a tunnel. */
  ipv4Subnet: z.string().optional(),
  /** This host's VXLAN tunnel endpoint MAC on vxlan.calico (encap/plan.ts vtepMac). */
  vxlanMac: z.string().optional(),
  version: z.string(),
  startedAt: z.string(),
});
export type HostRecord = z.infer<typeof HostRecord>;

export const AliveRecord = z.object({ since: z.string() });
export type AliveRecord = z.infer<typeof AliveRecord>;

export const NetworkRecord = z.object({
  id: z.string(),
  host: z.string(),
  /** Docker's name, learned asynchronously from Docker (never asked for inside a request). */
  name: z.string().optional(),
  /** Subnets Docker's IPAM data carried (0.0.0.0/0 and ::/0 mean "any pool"). */
  ipv4Pools: z.array(z.string()),
  ipv6Pools: z.array(z.string()),
  ipv6: z.boolean(),
  /** From `-o com.docker.network.driver.mtu`; absent means the host default. */
  mtu: z.number().int().optional(),
  /** Every `-o` option as given. */
  options: z.record(z.string(), z.string()),
  /** `--internal`: containers reach each other on the network and nothing outside it. */
  internal: z.boolean().optional(),
  createdAt: z.string(),
});
export type NetworkRecord = z.infer<typeof NetworkRecord>;

/**
 * One `-p` binding of an endpoint (ports/request.ts), as Docker asked for it and, once
 * ProgramExternalConnectivity made it live, the host port chosen: only bindings with
 * `published` are programmed by the ports agent (ports/rules.ts).
 */
export const PortBindingRecord = z.object({
  protocol: z.enum(['tcp', 'udp', 'sctp']),
  /** The container's port. */
  port: z.number().int(),
  /** The host address asked for; absent: every address of the host. */
  hostIp: z.string().optional(),
  /** The host ports asked for, inclusive: equal for one port, both 0 for any free one (`-P`). */
  hostPort: z.number().int(),
  hostPortEnd: z.number().int(),
  /** The host port in use, set while the binding is published. */
  published: z.number().int().optional(),
});
export type PortBindingRecord = z.infer<typeof PortBindingRecord>;

export const EndpointRecord = z.object({
  id: z.string(),
  host: z.string(),
  network: z.string(),
  /** Host-side interface, `cali` + 11 chars of the ID. */
  ifName: z.string(),
  mac: z.string(),
  /** /32 CIDRs. */
  ipv4: z.array(z.string()),
  /** /128 CIDRs. */
  ipv6: z.array(z.string()),
  containerId: z.string().optional(),
  containerName: z.string().optional(),
  /** The container interface name asked for (com.docker.network.endpoint.ifname), answered at Join. */
  dstName: z.string().optional(),
  /** Docker's SandboxKey (the container's netns path), learned at Join. */
  sandbox: z.string().optional(),
  labels: z.record(z.string(), z.string()),
  /** `docker run -p`: the port map from CreateEndpoint or ProgramExternalConnectivity. */
  ports: z.array(PortBindingRecord).optional(),
  createdAt: z.string(),
});
export type EndpointRecord = z.infer<typeof EndpointRecord>;

export const BgpSettings = z.object({
  /** AS of hosts that set none (CALICO_AS unset). */
  asn: z.number().int(),
  /** Every host peers with every other; off when route reflectors or top-of-rack routers peer instead. */
  nodeMesh: z.boolean(),
});
export type BgpSettings = z.infer<typeof BgpSettings>;

export const PeerRecord = z.object({
  name: z.string(),
  ip: z.string(),
  asn: z.number().int(),
  /** Only this host peers with it; absent: every host does. */
  host: z.string().optional(),
});
export type PeerRecord = z.infer<typeof PeerRecord>;

const port = z.union([z.number().int(), z.string()]);
/**
 * One side of a rule. Strict: a field this version does not know would narrow what a rule
 * matches, so a record carrying one is refused (and skipped) rather than read as broader.
 */
export const RuleEntity = z
  .object({
    selector: z.string().optional(),
    notSelector: z.string().optional(),
    network: z.string().optional(),
    nets: z.array(z.string()).optional(),
    notNets: z.array(z.string()).optional(),
    ports: z.array(port).optional(),
    notPorts: z.array(port).optional(),
  })
  .strict();
export type RuleEntity = z.infer<typeof RuleEntity>;

const protocol = z.union([z.enum(['tcp', 'udp', 'icmp', 'icmpv6', 'sctp']), z.number().int()]);
/** An ICMP (or ICMPv6) type, and optionally its code. */
const IcmpMatch = z.object({ type: z.number().int(), code: z.number().int().optional() }).strict();

export const RuleRecord = z
  .object({
    action: z.enum(['allow', 'deny', 'log', 'pass']),
    protocol: protocol.optional(),
    notProtocol: protocol.optional(),
    icmp: IcmpMatch.optional(),
    notICMP: IcmpMatch.optional(),
    source: RuleEntity.optional(),
    destination: RuleEntity.optional(),
  })
  .strict();
export type RuleRecord = z.infer<typeof RuleRecord>;

/** A policy as applied (`calico policy apply`), defaults filled in. */
export const PolicyRecord = z.object({
  name: z.string(),
  order: z.number(),
  selector: z.string(),
  types: z.array(z.enum(['ingress', 'egress'])),
  ingress: z.array(RuleRecord),
  egress: z.array(RuleRecord),
});
export type PolicyRecord = z.infer<typeof PolicyRecord>;

/** A network name's profile, kept by the nodes: its rules and whether it is internal. */
export const ProfileRecord = z.object({
  name: z.string(),
  internal: z.boolean(),
  ingress: z.array(RuleRecord),
  egress: z.array(RuleRecord),
});
export type ProfileRecord = z.infer<typeof ProfileRecord>;

/**
 * A Calico GlobalNetworkSet: addresses outside the cluster, labelled like an endpoint so that a
 * rule's selector can name them. Its nets are canonical CIDRs of either family.
 */
export const NetworkSetRecord = z.object({
  name: z.string(),
  labels: z.record(z.string(), z.string()),
  nets: z.array(z.string()),
});
export type NetworkSetRecord = z.infer<typeof NetworkSetRecord>;
