/** What every handler of one `calico node` shares: who this host is and the seams it acts through. */
import type { Allocator } from '../ipam/allocator';
import type { Pools } from '../ipam/pools';
import type { Encapsulation } from '../ipam/pool-settings';
import type { Dataplane } from '../lib/dataplane/types';
import type { KV } from '../lib/datastore/kv';
import type { EndpointRecord } from '../lib/datastore/records';
import type { Records } from '../lib/datastore/records-store';
import type { Logger } from '../lib/log';

export interface NodeContext {
  host: string;
  kv: KV;
  pools: Pools;
  allocator: Allocator;
  records: Records;
  dataplane: Dataplane;
  log: Logger;
  /**
   * MTU for a network that sets none: CALICO_MTU as given, else the uplink's (or 1500) less what
   * the endpoint's encapsulation adds (VXLAN 50, IP-in-IP 20).
   */
  defaultMtu(encapsulation?: Encapsulation): Promise<number>;
  /**
   * Resolves once start-up (etcd reachable, default pools present) is done. Waits a bounded
   * time, then rejects with an UnavailableError that says what is missing.
   */
  ready(): Promise<void>;
  /** The policy agent, when policy is on: Join waits (bounded) for a new endpoint's rules. */
  firewall?: FirewallStatus;
  /** The published-ports agent, once started: ProgramExternalConnectivity waits (bounded) for its rules. */
  ports?: PortsStatus;
}

export interface PortsStatus {
  /** Resolves true once the kernel has this endpoint's published-port rules as recorded, false after `timeoutMs`. */
  covers(ep: EndpointRecord, timeoutMs: number): Promise<boolean>;
}

export interface FirewallStatus {
  /** Resolves true once the kernel has rules for this host interface, false after `timeoutMs`. */
  covers(ifName: string, timeoutMs: number): Promise<boolean>;
}
