/**
 * What reconciliation should repair, decided from snapshots of the three views of one host:
 * Docker's (live endpoint IDs, if Docker answered), etcd's records and allocations, and the
 * kernel's links and routes. Pure, so every rule is unit-tested; agent/reconciler.ts gathers
 * the views and carries the plan out.
 */
import type { EndpointRecord, NetworkRecord, Owner } from '../lib/datastore/records';
import type { WorkloadRoute } from '../lib/dataplane/types';

export interface HostViews {
  host: string;
  now: number;
  /** Endpoint IDs of running containers; undefined when Docker did not answer. */
  dockerEndpoints?: Set<string>;
  endpoints: EndpointRecord[];
  networks: NetworkRecord[];
  /** Addresses this host allocated. */
  allocations: Array<{ ip: string; owner: Owner }>;
  links: string[];
  routes: WorkloadRoute[];
  /** Allocations found orphaned by the previous pass (ip → handle). */
  suspects: Map<string, string>;
  graceMs: number;
}

export type Repair =
  | { kind: 'add-route'; ifName: string; ip: string; why: string }
  | { kind: 'remove-link'; ifName: string; why: string }
  | { kind: 'remove-endpoint'; endpoint: EndpointRecord; why: string }
  | { kind: 'release'; ip: string; handle: string; why: string };

export interface Plan {
  repairs: Repair[];
  /** Orphaned allocations to confirm on the next pass before releasing them. */
  suspects: Map<string, string>;
}

export function planRepairs(v: HostViews): Plan {
  const repairs: Repair[] = [];
  const old = (iso: string) => v.now - Date.parse(iso) > v.graceMs;
  // Endpoints no running container owns (Docker crashed, or missed Leave/DeleteEndpoint).
  const gone = new Set<string>();
  if (v.dockerEndpoints) {
    for (const e of v.endpoints) {
      if (!v.dockerEndpoints.has(e.id) && old(e.createdAt)) {
        gone.add(e.id);
        repairs.push({ kind: 'remove-endpoint', endpoint: e, why: 'no running container uses it' });
      }
    }
  }
  const live = v.endpoints.filter((e) => !gone.has(e.id));
  const byIf = new Map(live.map((e) => [e.ifName, e]));
  for (const link of v.links) {
    if (!byIf.has(link) && !v.endpoints.some((e) => e.ifName === link)) repairs.push({ kind: 'remove-link', ifName: link, why: 'no endpoint owns it' });
  }
  const routed = new Set(v.routes.map((r) => `${r.ifName} ${r.dst}`));
  for (const e of live) {
    if (!v.links.includes(e.ifName)) continue; // not joined (yet), or its container is gone
    for (const cidr of [...e.ipv4, ...e.ipv6]) {
      if (!routed.has(`${e.ifName} ${cidr}`))
        repairs.push({ kind: 'add-route', ifName: e.ifName, ip: cidr.split('/')[0], why: 'the host route to a live endpoint was missing' });
    }
  }
  const endpointIds = new Set(live.map((e) => e.id));
  const networkIds = new Set(v.networks.map((n) => n.id));
  const suspects = new Map<string, string>();
  for (const { ip, owner } of v.allocations) {
    if (owner.host !== v.host) continue;
    let why: string | undefined;
    if (owner.kind === 'pending' && old(owner.since)) why = 'handed out but never attached to an endpoint';
    else if (owner.kind === 'endpoint' && owner.endpoint && !endpointIds.has(owner.endpoint))
      why = `its endpoint ${owner.endpoint.slice(0, 12)} no longer exists`;
    else if (owner.kind === 'aux' && owner.network && !networkIds.has(owner.network)) why = `its network ${owner.network.slice(0, 12)} no longer exists`;
    if (!why) continue;
    // An endpoint being removed right now leaves its address for an instant before Docker's
    // ReleaseAddress: only an orphan seen on two passes in a row is released.
    if (v.suspects.get(ip) === owner.handle || (owner.kind === 'endpoint' && gone.has(owner.endpoint)))
      repairs.push({ kind: 'release', ip, handle: owner.handle, why });
    else suspects.set(ip, owner.handle);
  }
  return { repairs, suspects };
}
