/**
 * Cross-checks allocations against endpoints and networks (what `calico ipam check` reports
 * and reconciliation repairs): every address must have a live owner and every endpoint its
 * addresses. Pure: the caller reads the records.
 */
import type { BlockRecord, EndpointRecord, NetworkRecord, Owner } from '../lib/datastore/records';
import { formatIP, parseCidr, parseIP } from '../lib/ip';
import * as blk from './block';

export interface Problem {
  kind:
    'allocation-without-endpoint' | 'allocation-not-listed-by-endpoint' | 'allocation-never-attached' | 'aux-without-network' | 'endpoint-without-allocation';
  ip?: string;
  endpoint?: string;
  host?: string;
  detail: string;
}

export interface CheckReport {
  ok: boolean;
  allocations: number;
  endpoints: number;
  problems: Problem[];
}

/** An endpoint's address in the form allocations use; a value that does not parse stays as written. */
function addressOf(cidr: string): string {
  try {
    return formatIP(parseIP(cidr.split('/')[0]));
  } catch {
    return cidr;
  }
}

export function checkIpam(blocks: BlockRecord[], endpoints: EndpointRecord[], networks: NetworkRecord[], now: Date, graceMs: number): CheckReport {
  const epByKey = new Map(endpoints.map((e) => [`${e.host}/${e.id}`, e]));
  const listed = new Map(endpoints.map((e) => [`${e.host}/${e.id}`, new Set([...e.ipv4, ...e.ipv6].map(addressOf))]));
  const netByKey = new Set(networks.map((n) => `${n.host}/${n.id}`));
  const owners = new Map<string, Owner>();
  const problems: Problem[] = [];
  let allocations = 0;
  for (const b of blocks) {
    const net = parseCidr(b.cidr);
    for (const { ip, owner } of blk.allocations(b, net)) {
      allocations++;
      const addr = formatIP(ip);
      owners.set(addr, owner);
      if (owner.kind === 'endpoint') {
        const key = `${owner.host}/${owner.endpoint}`;
        if (!epByKey.has(key)) {
          problems.push({
            kind: 'allocation-without-endpoint',
            ip: addr,
            endpoint: owner.endpoint,
            host: owner.host,
            detail: `${addr} is held by endpoint ${owner.endpoint?.slice(0, 12)} on ${owner.host}, which no longer exists`,
          });
        } else if (!listed.get(key)?.has(addr)) {
          // The endpoint lives but does not use it (a CreateEndpoint replayed with another
          // address once left this): nothing would ever release it.
          problems.push({
            kind: 'allocation-not-listed-by-endpoint',
            ip: addr,
            endpoint: owner.endpoint,
            host: owner.host,
            detail: `${addr} is held by endpoint ${owner.endpoint.slice(0, 12)} on ${owner.host}, whose record does not list it`,
          });
        }
      } else if (owner.kind === 'aux') {
        if (!netByKey.has(`${owner.host}/${owner.network}`)) {
          problems.push({
            kind: 'aux-without-network',
            ip: addr,
            host: owner.host,
            detail: `${addr} is an aux address of network ${owner.network?.slice(0, 12)} on ${owner.host}, which no longer exists`,
          });
        }
      } else if (now.getTime() - Date.parse(owner.since) > graceMs) {
        problems.push({
          kind: 'allocation-never-attached',
          ip: addr,
          host: owner.host,
          detail: `${addr} was handed out on ${owner.host} at ${owner.since} and never attached to an endpoint`,
        });
      }
    }
  }
  for (const e of endpoints) {
    for (const cidr of [...e.ipv4, ...e.ipv6]) {
      const addr = addressOf(cidr);
      const o = owners.get(addr);
      if (!o || o.kind !== 'endpoint' || o.endpoint !== e.id) {
        problems.push({
          kind: 'endpoint-without-allocation',
          ip: addr,
          endpoint: e.id,
          host: e.host,
          detail: `endpoint ${e.id.slice(0, 12)} on ${e.host} uses ${addr}, which is ${o ? 'allocated to someone else' : 'not allocated'}`,
        });
      }
    }
  }
  return { ok: problems.length === 0, allocations, endpoints: endpoints.length, problems };
}
