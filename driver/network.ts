/**
 * Network lifecycle. Docker calls CreateNetwork after IPAM has reserved the pools (and aux
 * addresses), DeleteNetwork after releasing them; neither is replayed after a restart, so the
 * network is persisted here. DeleteNetwork errors are only logged by Docker: it must not fail
 * for a network that is already gone.
 */
import type { NodeContext } from '../agent/context';
import type { NetworkRecord } from '../lib/datastore/records';
import { parseRequest } from '../lib/validate';
import { checkGateways, checkIpamData } from './ipam-data';
import { parseNetworkOptions } from './options';
import { AllocateNetworkRequest, CreateNetworkRequest, DeleteNetworkRequest, GwAllocCheckRequest, NetworkRequest } from './protocol';

export class NetworkHandlers {
  constructor(private ctx: NodeContext) {}

  async createNetwork(body: unknown) {
    const req = parseRequest(CreateNetworkRequest, body, 'NetworkDriver.CreateNetwork');
    const opts = parseNetworkOptions(req.Options);
    const v4 = req.IPv4Data ?? [];
    const v6 = req.IPv6Data ?? [];
    checkGateways(v4, v6);
    await this.ctx.ready();
    // Everything is checked before the first write: a refused network leaves nothing in etcd.
    const data = await checkIpamData(this.ctx, v4, v6);
    for (const ip of data.aux) await this.ctx.allocator.markAux(ip, req.NetworkID);
    const rec: NetworkRecord = {
      id: req.NetworkID,
      host: this.ctx.host,
      ipv4Pools: data.ipv4Pools,
      ipv6Pools: data.ipv6Pools,
      ipv6: opts.ipv6 || v6.length > 0,
      options: opts.generic,
      createdAt: new Date().toISOString(),
      ...(opts.mtu !== undefined ? { mtu: opts.mtu } : {}),
      ...(opts.internal ? { internal: true } : {}),
    };
    const existing = await this.ctx.records.getNetwork(req.NetworkID);
    if (existing?.name) rec.name = existing.name;
    await this.ctx.records.putNetwork(rec);
    this.ctx.log.info('network created', { network: rec.id, ipv4: rec.ipv4Pools, ipv6: rec.ipv6Pools, mtu: rec.mtu });
    return {};
  }

  async deleteNetwork(body: unknown) {
    const req = parseRequest(DeleteNetworkRequest, body, 'NetworkDriver.DeleteNetwork');
    await this.ctx.ready();
    await this.ctx.records.deleteNetwork(req.NetworkID);
    this.ctx.log.info('network deleted', { network: req.NetworkID });
    return {};
  }

  /**
   * Docker 28+, before IPAM: no calico network uses a gateway from its subnet (containers route
   * through the link-local one), so Docker need reserve none, in either family.
   */
  gwAllocCheck(body: unknown) {
    parseRequest(GwAllocCheckRequest, body, 'NetworkDriver.GwAllocCheck');
    return { SkipIPv4: true, SkipIPv6: true };
  }

  /** Swarm managers only (Scope "global"); echo the options so workers receive them. */
  allocateNetwork(body: unknown) {
    const req = parseRequest(AllocateNetworkRequest, body, 'NetworkDriver.AllocateNetwork');
    return { Options: req.Options ?? {} };
  }

  freeNetwork(body: unknown) {
    parseRequest(NetworkRequest, body, 'NetworkDriver.FreeNetwork');
    return {};
  }
}
