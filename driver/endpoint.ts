/**
 * Endpoint lifecycle. Docker calls CreateEndpoint after IPAM RequestAddress (addresses already
 * in Interface), DeleteEndpoint after Leave, on rollbacks and during stale-sandbox cleanup at
 * daemon start, sometimes twice: deleting a missing endpoint is success.
 */
import { createHash } from 'node:crypto';
import type { NodeContext } from '../agent/context';
import type { EndpointRecord } from '../lib/datastore/records';
import { BadRequestError, ConflictError, NotFoundError, errorMessage } from '../lib/errors';
import { type IP, hostCidr, parseAddressWithPrefix } from '../lib/ip';
import { KeyedMutex } from '../lib/retry';
import { parseRequest } from '../lib/validate';
import { IFNAME_OPTION, containerIfName, hostIfName } from './names';
import { claimInterface, mayRemoveInterface } from './ownership';
import { CreateEndpointRequest, DeleteEndpointRequest, EndpointRequest } from './protocol';
import type { Sandboxes } from './sandboxes';
import type { PortHandlers } from './ports';
import { sameRequest } from '../ports/request';

/**
 * A locally administered unicast MAC derived from the endpoint ID: containers never share one
 * (Calico's fixed ee:ee:... caused trouble), and a replayed CreateEndpoint answers the same
 * MAC without reading anything back.
 */
export function endpointMac(endpointId: string): string {
  const b = createHash('sha256').update(endpointId).digest().subarray(0, 6);
  b[0] = (b[0] & 0xfe) | 0x02;
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join(':');
}

export function normaliseMac(mac: string): string {
  const m = mac.trim().toLowerCase();
  if (!/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/.test(m)) throw new BadRequestError(`invalid MAC address "${mac}": expected six colon-separated hex bytes`);
  return m;
}

/** Why a replayed CreateEndpoint differs from the endpoint already recorded, if it does. */
function replayConflict(existing: EndpointRecord, network: string, ipv4: string[], ipv6: string[]): string | undefined {
  const same = (a: string[], b: string[]) => a.length === b.length && [...a].sort().every((x, i) => x === [...b].sort()[i]);
  if (existing.network !== network) return `it belongs to network ${existing.network.slice(0, 12)}`;
  if (!same(existing.ipv4, ipv4) || !same(existing.ipv6, ipv6)) return `it holds ${[...existing.ipv4, ...existing.ipv6].join(', ') || 'no address'}`;
  return undefined;
}

export class EndpointHandlers {
  /** Per host interface name: the check "who holds it" and the claim are one step. */
  private locks = new KeyedMutex();

  constructor(
    private ctx: NodeContext,
    private sandboxes: Sandboxes,
    private ports: PortHandlers,
  ) {}

  async createEndpoint(body: unknown) {
    const req = parseRequest(CreateEndpointRequest, body, 'NetworkDriver.CreateEndpoint');
    return this.locks.run(hostIfName(req.EndpointID), () => this.create(req));
  }

  private async create(req: CreateEndpointRequest) {
    const iface = req.Interface ?? {};
    const ifName = hostIfName(req.EndpointID);
    const dstName = containerIfName(req.Options?.[IFNAME_OPTION]);
    const addrs: IP[] = [];
    for (const [field, value, family] of [
      ['Interface.Address', iface.Address, 4],
      ['Interface.AddressIPv6', iface.AddressIPv6, 6],
    ] as const) {
      if (!value) continue;
      const { ip } = parseAddressWithPrefix(value, field);
      if (ip.family !== family)
        throw new BadRequestError(`invalid NetworkDriver.CreateEndpoint request: field "${field}": ${value} is not an IPv${family} address`);
      addrs.push(ip);
    }
    if (addrs.length === 0) {
      throw new BadRequestError('endpoint has no address: calico networks need addresses from calico-ipam (--ipam-driver calico-ipam)');
    }
    // Refused before anything is written: a bad -p leaves nothing behind.
    const requested = this.ports.requested(req.Options);
    await this.ctx.ready();
    const network = await this.ctx.records.getNetwork(req.NetworkID);
    if (!network) {
      throw new NotFoundError(
        `network ${req.NetworkID.slice(0, 12)} is not known to calico on host ${this.ctx.host}; it was created while calico's datastore was reset or on another host: remove and recreate the network`,
      );
    }
    await claimInterface(this.ctx, req.EndpointID, ifName);
    // This process's memory holds every endpoint of this host (claimInterface made sure): a new
    // endpoint costs no read, and a replay keeps its labels.
    const existing = this.ctx.records.cachedEndpoint(req.EndpointID);
    const mac = iface.MacAddress ? normaliseMac(iface.MacAddress) : endpointMac(req.EndpointID);
    const ipv4 = addrs.filter((a) => a.family === 4).map(hostCidr);
    const ipv6 = addrs.filter((a) => a.family === 6).map(hostCidr);
    // A replay must be the same endpoint: taking other addresses would leave the first ones
    // owned by an endpoint whose record no longer lists them, where nothing releases them.
    const differs = existing && replayConflict(existing, req.NetworkID, ipv4, ipv6);
    if (differs) {
      throw new ConflictError(
        `endpoint ${req.EndpointID.slice(0, 12)} already exists and ${differs}; a CreateEndpoint for it with ${[...ipv4, ...ipv6].join(', ')} on network ${req.NetworkID.slice(0, 12)} is refused: remove the endpoint first`,
      );
    }
    const rec: EndpointRecord = {
      id: req.EndpointID,
      host: this.ctx.host,
      network: req.NetworkID,
      ifName,
      mac,
      ipv4,
      ipv6,
      labels: existing?.labels ?? {},
      // A replay asking for the same ports keeps them as published; other ports start unpublished.
      ...(requested ? { ports: existing?.ports && sameRequest(existing.ports, requested) ? existing.ports : requested } : {}),
      ...(dstName !== undefined ? { dstName } : {}),
      createdAt: existing?.createdAt ?? new Date().toISOString(),
      ...(existing?.containerId ? { containerId: existing.containerId } : {}),
      ...(existing?.containerName ? { containerName: existing.containerName } : {}),
      ...(existing?.sandbox ? { sandbox: existing.sandbox } : {}),
    };
    // Answering before the transaction lands lets it overlap Docker's work up to Join, which
    // waits for it before the container gets its interface. Crash-safe: the addresses are
    // already durably owned by this host, so if the record never lands Join fails and Docker
    // releases them (or reconciliation does). Anything that could be refused answers here.
    const early = await this.ctx.allocator.attachable(addrs, rec);
    const write = this.ctx.allocator.attachEndpoint(addrs, rec, this.ctx.records.endpointKey(rec.id));
    if (early) {
      this.ctx.records.rememberWriting(rec, write);
      write.catch((err: unknown) =>
        this.ctx.log.warn('could not record the endpoint; its Join will fail and Docker will roll it back', { endpoint: rec.id, error: errorMessage(err) }),
      );
    } else {
      await write;
      this.ctx.records.rememberEndpoint(rec);
    }
    this.ctx.log.info('endpoint created', { endpoint: rec.id, network: rec.network, ipv4: rec.ipv4, ipv6: rec.ipv6, interface: ifName });
    // Only fields that arrived empty may be filled in; the addresses came from IPAM already.
    return iface.MacAddress ? {} : { Interface: { MacAddress: mac } };
  }

  async deleteEndpoint(body: unknown) {
    const req = parseRequest(DeleteEndpointRequest, body, 'NetworkDriver.DeleteEndpoint');
    const ifName = hostIfName(req.EndpointID);
    return this.locks.run(ifName, () => this.delete(req.EndpointID, ifName));
  }

  private async delete(id: string, ifName: string) {
    const req = { EndpointID: id };
    // The record's write must land (or fail) before the delete, or it would come back.
    await this.ctx.records.written(req.EndpointID).catch(() => undefined);
    // Rollback after a failed Join comes here without a Leave: the veth must go too, unless
    // it is another endpoint's (an unknown ID sharing its first 11 characters).
    if (await mayRemoveInterface(this.ctx, req.EndpointID, ifName, 'DeleteEndpoint')) await this.ctx.dataplane.unwireEndpoint(ifName);
    this.sandboxes.left(req.EndpointID);
    await this.ctx.ready();
    // Deleting the record unpublishes its ports too (the ports agent watches the records).
    await this.ctx.records.deleteEndpoint(req.EndpointID);
    this.ctx.log.info('endpoint deleted', { endpoint: req.EndpointID });
    return {};
  }

  endpointOperInfo(body: unknown) {
    parseRequest(EndpointRequest, body, 'NetworkDriver.EndpointOperInfo');
    return { Value: {} };
  }
}
