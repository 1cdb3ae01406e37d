/**
 * Network lifecycle. Docker calls CreateNetwork after IPAM has reserved the pools (and aux
 * addresses), DeleteNetwork after releasing them; neither is replayed after a restart, so the
 * network is persisted here. DeleteNetwork errors are only logged by Docker: it must not fail
 * for a network that is already gone.
 */
import type { NodeContext } from '../lib/context';
import type { NetworkRecord } from '../lib/datastore/records';
import { BadRequestError } from '../lib/errors';
import { parseIP } from '../lib/ip';
import { parseRequest } from '../lib/validate';
import { ANY_POOL } from '../ipam/poolid';
import { parseNetworkOptions } from './options';
import { AllocateNetworkRequest, CreateNetworkRequest, NetworkRequest } from './protocol';

const NOT_CALICO_IPAM =
  'calico networks need the calico IPAM driver, which hands out /32 addresses and the link-local gateway: add --ipam-driver calico-ipam (for the managed plugin: --ipam-driver <plugin name:tag>)';

export class NetworkHandlers {
  constructor(private ctx: NodeContext) {}

  async createNetwork(body: unknown) {
    const req = parseRequest(CreateNetworkRequest, body, 'NetworkDriver.CreateNetwork');
    const opts = parseNetworkOptions(req.Options);
    const v4 = req.IPv4Data ?? [];
    const v6 = req.IPv6Data ?? [];
    // RequestPool answered the gateway marker; any other gateway means another IPAM driver ran.
    if (v4.some((d) => d.Gateway !== ANY_POOL[4]) || v6.some((d) => d.Gateway !== ANY_POOL[6])) {
      throw new BadRequestError(NOT_CALICO_IPAM);
    }
    await this.ctx.ready();
    const auxIps = [...v4, ...v6].flatMap((d) => Object.values(d.AuxAddresses ?? {})).map((a) => parseIP(a.split('/')[0], 'aux address'));
    for (const ip of auxIps) await this.ctx.allocator.markAux(ip, req.NetworkID);
    const rec: NetworkRecord = {
      id: req.NetworkID,
      host: this.ctx.host,
      ipv4Pools: v4.map((d) => d.Pool ?? ANY_POOL[4]),
      ipv6Pools: v6.map((d) => d.Pool ?? ANY_POOL[6]),
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
    const req = parseRequest(NetworkRequest, body, 'NetworkDriver.DeleteNetwork');
    await this.ctx.ready();
    await this.ctx.records.deleteNetwork(req.NetworkID);
    this.ctx.log.info('network deleted', { network: req.NetworkID });
    return {};
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
