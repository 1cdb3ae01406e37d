/** Host ends of workload veths (`cali` + 11 characters of the endpoint ID); nothing else is ours. */
export const WORKLOAD_PREFIX = 'cali';

/**
 * The host side of Calico's pure layer-3 dataplane, behind an interface so handlers can be
 * tested without a kernel. The real implementation talks rtnetlink and writes /proc/sys; it
 * acts on the network namespace of the process that created it (the host's).
 */

/** Everything Join needs to wire one endpoint. */
export interface EndpointWiring {
  /** Host end, `cali` + first 11 chars of the endpoint ID. Stays in the host namespace. */
  hostIfName: string;
  /** Container end before Docker moves it into the sandbox and renames it `ethN`. */
  tempIfName: string;
  /** MTU of both ends. */
  mtu: number;
  /** MAC of the container end (colon hex). Docker applies it again inside the sandbox. */
  containerMac: string;
  /** Container addresses, plain IPs. Each gets a /32 host route via hostIfName. */
  ipv4: string[];
  /** Container addresses, plain IPs. Each gets a /128 host route via hostIfName. */
  ipv6: string[];
}

export interface WiringResult {
  /** Link-local address of the host end: the container's IPv6 gateway (only when ipv6 given). */
  ipv6Gateway?: string;
}

export interface WorkloadRoute {
  /** Destination as CIDR: `a.b.c.d/32` or `x::y/128`. */
  dst: string;
  ifName: string;
}

export interface Dataplane {
  /**
   * Creates the veth pair, configures the host end (MAC ee:ee:ee:ee:ee:ee, MTU, proxy ARP,
   * IPv6 link-local gateway address when ipv6 is non-empty), brings it up and installs the host
   * routes with a routing protocol other than `kernel` so BIRD can learn them.
   * Idempotent: if the host end exists and its peer is still in this namespace it is reused and
   * reconfigured; if the peer is gone (moved into a dead sandbox) the pair is recreated.
   * On failure everything it created is removed before the error is thrown.
   */
  wireEndpoint(w: EndpointWiring): Promise<WiringResult>;
  /** Deletes the host end (the kernel deletes the peer and the routes). Missing is success. */
  unwireEndpoint(hostIfName: string): Promise<void>;
  /** Adds a host route to a workload address if it is missing (reconciliation). */
  ensureRoute(hostIfName: string, ip: string): Promise<void>;
  /** Names of every link in this namespace starting with `cali`. */
  listWorkloadLinks(): Promise<string[]>;
  /** Every /32 and /128 route whose device is a `cali*` link. */
  listWorkloadRoutes(): Promise<WorkloadRoute[]>;
  /** Turns on IPv4 (and, if asked, IPv6) forwarding for the namespace. Idempotent. */
  enableForwarding(ipv6: boolean): Promise<void>;
  /** MTU of the interface that holds the default route, if there is one. */
  uplinkMtu(): Promise<number | undefined>;
  /** First global IPv4 address of the interface holding the default route, if any. */
  uplinkIPv4(): Promise<string | undefined>;
  /** This host's global IPv6 address on the IPv6 default route's interface, if any. */
  uplinkIPv6(): Promise<string | undefined>;
  close(): void;
}
