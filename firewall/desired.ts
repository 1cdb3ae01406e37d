/**
 * The desired firewall of one host, held as data (Felix's idea: compute desired state, serialise
 * late). The policy calculator (policy/calc/) produces it from etcd's records and reports what
 * changed as a {@link Delta}; a backend (firewall/nftables/, firewall/iptables/) compiles these
 * objects into its own kernel objects, remembers what it programmed, and turns each Delta into one
 * change of the kernel. Nothing here knows about nftables or iptables syntax.
 *
 * Semantics every backend implements (the README's Policy section):
 * - Traffic from a local endpoint (interface `cali…`, the container's egress) and to one (its
 *   ingress) is filtered; traffic neither from nor to a local endpoint is not touched. Packets of
 *   established or related connections pass; invalid ones are dropped. Traffic between two local
 *   endpoints passes only if the sender's egress and the receiver's ingress both allow it.
 * - An unknown `cali…` interface (no EndpointSpec) is dropped both ways.
 * - From an endpoint, a source address that is not one of `addrs` of that family is dropped
 *   (anti-spoofing; an endpoint with no address of a family sends nothing of that family).
 * - Per direction: if the tier has a `group`, its policies' rules are evaluated in order across
 *   all policies: `allow` ends evaluation with the packet allowed; `deny` drops; `pass` skips
 *   the remaining policies and goes to the profile; `log` logs (prefix `logPrefix`) and goes on.
 *   If no rule of the group allowed or passed, the packet is dropped (Calico's default deny).
 *   Then (no group, or after a pass) the profile's rules: `allow` allows, `deny` drops, `log`
 *   logs, `pass` ends the profile; a packet no profile rule allowed is dropped.
 * - Ingress only, between the group and the profile: a connection whose destination was
 *   translated (conntrack status DNAT: a published port, ports/rules.ts) is allowed. So the
 *   profile never blocks `-p`, and a policy selecting the endpoint still decides.
 * - A rule matches when every part it gives matches: protocol, not `notProtocol`, the ICMP type
 *   and code in `icmp`, not those in `notICMP`; on each side every set in `sets`
 *   holds the address, none in `notSets` does, `nets` holds it, `notNets` does not, the port is
 *   in `ports` and not in `notPorts` (ports only ever come with protocol tcp, udp or sctp).
 * - To the host itself (INPUT) from a local endpoint: replies to connections the host opened,
 *   and IPv6 neighbour discovery (ICMPv6 133, 135, 136), pass; the rest follows `endpointToHost`.
 */

export type Family = 4 | 6;
export type Dir = 'ingress' | 'egress';
export const FAMILIES: readonly Family[] = [4, 6];
export const DIRS: readonly Dir[] = ['ingress', 'egress'];

/** Inclusive port range; a single port is [p, p]. */
export type PortRange = readonly [number, number];

/** IANA protocol numbers the rule language names. */
export const PROTOCOLS = { icmp: 1, tcp: 6, udp: 17, icmpv6: 58, sctp: 132 } as const;

/** One side (source or destination) of a rule, for one address family. */
export interface Side {
  /** The address must be in every one of these sets (selectors, `network`). */
  sets: readonly string[];
  /** ... and in none of these (`notSelector`). */
  notSets: readonly string[];
  /** A `net` set holding the rule's `nets` of this family. */
  nets?: string;
  /** A `net` set holding the rule's `notNets` of this family. */
  notNets?: string;
  ports?: readonly PortRange[];
  notPorts?: readonly PortRange[];
}

/** An ICMP or ICMPv6 type (0-254) and optionally its code (0-255). */
export interface IcmpSpec {
  type: number;
  code?: number;
}

export interface RuleSpec {
  action: 'allow' | 'deny' | 'log' | 'pass';
  /** IANA protocol number; absent: any protocol. */
  protocol?: number;
  /** A protocol the packet must not have; never given together with `protocol`. */
  notProtocol?: number;
  /** Only with protocol 1 or 58: the packet's type (and code) must be these. */
  icmp?: IcmpSpec;
  /** Only with protocol 1 or 58: the packet's type and code must not be these (type alone: not that type). */
  notICMP?: IcmpSpec;
  src: Side;
  dst: Side;
  /** For `log`: the kernel log prefix (`calico <policy>`), at most 28 characters. */
  logPrefix: string;
}

/** A rule list per family: a rule that cannot apply to a family (its `nets` are all of the other family, icmp vs icmpv6) is left out of that family's list. */
export type FamilyRules = Readonly<Record<Family, readonly RuleSpec[]>>;

export interface PolicySpec {
  name: string;
  ingress: FamilyRules;
  egress: FamilyRules;
}

export interface ProfileSpec {
  name: string;
  ingress: FamilyRules;
  egress: FamilyRules;
}

/**
 * The ordered policies that select some local endpoints in one direction. Endpoints selected by
 * the same policies share one group, so a backend can compile the group once (and, e.g., merge
 * rules across its policies) instead of once per endpoint.
 */
export interface GroupSpec {
  /** Derived from `dir` and `policies`: equal groups have equal ids. */
  id: string;
  dir: Dir;
  /** PolicySpec names in evaluation order (order, then name). */
  policies: readonly string[];
}

export interface Tier {
  /** GroupSpec id; absent when no policy selects the endpoint in this direction. */
  group?: string;
  /** ProfileSpec name. */
  profile: string;
}

/** One local endpoint: its host interface and what filters it. */
export interface EndpointSpec {
  /** `cali…`, 15 characters at most. */
  ifName: string;
  /** Addresses (no prefix length) the container may send from, per family, sorted. */
  addrs: Readonly<Record<Family, readonly string[]>>;
  /** To the container. */
  ingress: Tier;
  /** From the container. */
  egress: Tier;
}

export interface SetSpec {
  name: string;
  family: Family;
  /**
   * `addr`: single addresses (anti-spoofing sets of a backend); `net`: CIDRs, none inside
   * another, a single address standing for its /32 or /128 (the sets of rules' nets and of
   * selectors, which hold endpoints' addresses and network sets' CIDRs).
   */
  kind: 'addr' | 'net';
  members: ReadonlySet<string>;
}

/** Everything a host's firewall holds. Objects are only those some local endpoint needs. */
export interface Desired {
  endpointToHost: 'drop' | 'accept';
  sets: ReadonlyMap<string, SetSpec>;
  policies: ReadonlyMap<string, PolicySpec>;
  profiles: ReadonlyMap<string, ProfileSpec>;
  groups: ReadonlyMap<string, GroupSpec>;
  /** By ifName. */
  endpoints: ReadonlyMap<string, EndpointSpec>;
}

export interface Changes<T> {
  /** New or changed objects (whole). */
  upsert: T[];
  /** Names (ids, ifNames) of objects gone. */
  remove: string[];
}

/**
 * What changed between two Desired states. Sets that keep their name but change members are
 * reported in `members` (element by element), never as an upsert; an upserted set is new and
 * carries all its members. An object is in at most one of upsert / remove / members.
 */
export interface Delta {
  sets: Changes<SetSpec> & { members: Array<{ name: string; add: string[]; del: string[] }> };
  policies: Changes<PolicySpec>;
  profiles: Changes<ProfileSpec>;
  groups: Changes<GroupSpec>;
  endpoints: Changes<EndpointSpec>;
}

export function emptyDelta(): Delta {
  return {
    sets: { upsert: [], remove: [], members: [] },
    policies: { upsert: [], remove: [] },
    profiles: { upsert: [], remove: [] },
    groups: { upsert: [], remove: [] },
    endpoints: { upsert: [], remove: [] },
  };
}

export function isEmptyDelta(d: Delta): boolean {
  return (
    d.sets.upsert.length + d.sets.remove.length + d.sets.members.length === 0 &&
    [d.policies, d.profiles, d.groups, d.endpoints].every((c) => c.upsert.length + c.remove.length === 0)
  );
}

export interface ApplyStats {
  /** Kernel objects (chains, rules, sets, elements) written, for logs and metrics. */
  objects: number;
  full: boolean;
}

/**
 * A firewall backend. Calls never overlap (the agent serialises them). After a failed call the
 * kernel state is unknown to the backend: the agent's next call is `apply(desired, undefined)`.
 */
export interface FirewallBackend {
  readonly name: 'nftables' | 'iptables';
  /**
   * Makes the kernel hold `desired`. With a delta (the difference from the state of the last
   * successful call), changes only what the delta names, as one atomic change where the kernel
   * allows. Without one, programs everything, replacing whatever of ours is in the kernel, with
   * no moment where traffic is unfiltered.
   */
  apply(desired: Desired, delta?: Delta): Promise<ApplyStats>;
  /**
   * The periodic repair: compares what is in the kernel with what this backend last programmed
   * (cheaply, without recompiling) and, if anything of ours is missing or altered, programs
   * `desired` in full. Returns true when it had to repair.
   */
  check(desired: Desired): Promise<boolean>;
  /** Removes every rule, chain, set and hook of this backend from the kernel (missing is success). */
  remove(): Promise<void>;
}
