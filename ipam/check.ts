/**
 * Cross-checks allocations against endpoints and networks (what `calico ipam check` reports
 * and reconciliation repairs): every address must have a live owner and every endpoint its
 * addresses. Pure: the caller reads the records.
 */
import type { BlockRecord, EndpointRecord, NetworkRecord, Owner } from '../lib/datastore/records';
import { formatIP, parseCidr, parseIP } from '../lib/ip';
import * as blk from './block';

export interface Problem {
  kind: 'allocation-without-endpoint' | 'allocation-never-attached' | 'aux-without-network' | 'endpoint-without-allocation';
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

export function checkIpam(blocks: BlockRecord[], endpoints: EndpointRecord[], networks: NetworkRecord[], now: Date, graceMs: number): CheckReport {
  const epByKey = new Map(endpoints.map((e) => [`${e.host}/${e.id}`, e]));
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
        if (!epByKey.has(`${owner.host}/${owner.endpoint}`)) {
          problems.push({
            kind: 'allocation-without-endpoint',
            ip: addr,
            endpoint: owner.endpoint,
            host: owner.host,
            detail: `${addr} is held by endpoint ${owner.endpoint?.slice(0, 12)} on ${owner.host}, which no longer exists`,
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
      const addr = formatIP(parseIP(cidr.split('/')[0]));
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
