/**
 * IpamDriver handlers: translate Docker's IPAM calls into allocator calls. Docker calls
 * RequestPool at `docker network create` (and again for every network on some restarts),
 * RequestAddress before CreateEndpoint and for aux addresses, ReleaseAddress after
 * DeleteEndpoint and at network removal, ReleasePool last. All are safe to replay.
 */
import type { NodeContext } from '../agent/context';
import { BadRequestError } from '../lib/errors';
import { type Cidr, containsCidr, containsIP, formatCidr, formatIP, hostCidr, parseAddressWithPrefix, parseCidr, parseIP, shown } from '../lib/ip';
import type { Routes } from '../lib/server';
import { parseRequest, printable } from '../lib/validate';
import { ANY_POOL, type PoolRef, allocationScope, decodePoolId, encodePoolId } from './poolid';
import { SubnetClaims, isPrefixRequest } from './subnets';
import { ReleaseAddressRequest, ReleasePoolRequest, RequestAddressRequest, RequestPoolRequest } from './protocol';

export const LOCAL_ADDRESS_SPACE = 'CalicoLocalAddressSpace';
export const GLOBAL_ADDRESS_SPACE = 'CalicoGlobalAddressSpace';
const GATEWAY_KEY = 'com.docker.network.gateway';
/** Docker 29+ names the endpoint (the container) an address is for. */
const ENDPOINT_NAME_KEY = 'com.docker.network.endpoint.name';
const MAX_NAME = 256;
/** IPAM options Docker itself may add; anything else is a user `--ipam-opt` we do not know. */
const KNOWN_IPAM_OPTIONS = new Set(['com.docker.network.ipam.serial']);

/** The endpoint name Docker sent, if it is one worth recording (a name, not any text). */
export function endpointName(value: string | undefined): string | undefined {
  if (value === undefined || value === '') return undefined;
  if (value.length > MAX_NAME || !printable(value)) {
    throw new BadRequestError(`invalid IpamDriver.RequestAddress request: field "Options.${ENDPOINT_NAME_KEY}": ${shown(value)} is no endpoint name`);
  }
  return value;
}

export class IpamHandlers {
  private subnets: SubnetClaims;

  constructor(private ctx: NodeContext) {
    this.subnets = new SubnetClaims(ctx.kv, ctx.host);
  }

  capabilities() {
    // Allocations live in etcd, so Docker need not replay them after a restart.
    return { RequiresMACAddress: false, RequiresRequestReplay: false };
  }

  addressSpaces() {
    return { LocalDefaultAddressSpace: LOCAL_ADDRESS_SPACE, GlobalDefaultAddressSpace: GLOBAL_ADDRESS_SPACE };
  }

  async requestPool(body: unknown) {
    const req = parseRequest(RequestPoolRequest, body, 'IpamDriver.RequestPool');
    const unknown = Object.keys(req.Options ?? {})
      .filter((k) => !KNOWN_IPAM_OPTIONS.has(k))
      .sort();
    if (unknown.length) {
      const named = unknown.slice(0, 5).map(shown).join(', ') + (unknown.length > 5 ? ` and ${unknown.length - 5} more` : '');
      throw new BadRequestError(`calico-ipam does not support the IPAM option(s) ${named}; remove --ipam-opt (no IPAM options are supported)`);
    }
    if (!req.Pool && req.SubPool) throw new BadRequestError('--ip-range needs --subnet: give the subnet the range lies in');
    await this.ctx.ready();
    let ref: PoolRef;
    if (!req.Pool) {
      ref = { family: req.V6 ? 6 : 4 };
      if ((await this.ctx.pools.enabled(ref.family)).length === 0) {
        throw new BadRequestError(`there is no enabled IPv${ref.family} Calico IP pool; add one with "calico pool add <cidr>"`);
      }
    } else {
      let subnet = parseCidr(req.Pool, '--subnet');
      if (req.V6 != null && (subnet.family === 6) !== req.V6) {
        throw new BadRequestError(`--subnet ${req.Pool} is not an IPv${req.V6 ? 6 : 4} network`);
      }
      const claimed = isPrefixRequest(subnet);
      if (claimed) {
        if (req.SubPool) throw new BadRequestError(`--ip-range needs a real --subnet, not the size ${req.Pool}: give the subnet itself`);
        const pools = (await this.ctx.pools.enabled(subnet.family)).map((p) => p.net);
        subnet = await this.subnets.claim(pools, subnet.prefix, req.Pool);
        this.ctx.log.info('claimed a subnet', { subnet: formatCidr(subnet), asked: req.Pool });
      } else {
        await this.ctx.pools.covering(subnet);
      }
      ref = { family: subnet.family, subnet, ...(claimed ? { claimed } : {}) };
      if (req.SubPool) {
        const range = parseCidr(req.SubPool, '--ip-range');
        if (!containsCidr(subnet, range)) throw new BadRequestError(`--ip-range ${req.SubPool} is not inside --subnet ${formatCidr(subnet)}`);
        ref.range = range;
      }
    }
    // The gateway in Data tells Docker not to reserve one from the subnet: containers use the
    // link-local gateway. 0.0.0.0/0 (::/0) is also what Docker shows for "any pool" networks.
    return {
      PoolID: encodePoolId(ref),
      Pool: ref.subnet ? formatCidr(ref.subnet) : ANY_POOL[ref.family],
      Data: { [GATEWAY_KEY]: ANY_POOL[ref.family] },
    };
  }

  async releasePool(body: unknown) {
    const req = parseRequest(ReleasePoolRequest, body, 'IpamDriver.ReleasePool');
    const ref = decodePoolId(req.PoolID);
    // Pools are configured by operators, not created per network: only a claimed subnet is freed.
    if (ref.claimed && ref.subnet) {
      await this.ctx.ready();
      await this.subnets.release(ref.subnet);
      this.ctx.log.info('released a claimed subnet', { subnet: formatCidr(ref.subnet) });
    }
    return {};
  }

  async requestAddress(body: unknown) {
    const req = parseRequest(RequestAddressRequest, body, 'IpamDriver.RequestAddress');
    if (req.Options?.RequestAddressType === GATEWAY_KEY) {
      throw new BadRequestError(
        'calico networks do not take --gateway: every container routes through the link-local gateway 169.254.1.1 (IPv6: the host end of its veth), answered by its own host; remove --gateway',
      );
    }
    const ref = decodePoolId(req.PoolID);
    await this.ctx.ready();
    const owner = this.ctx.allocator.newOwner(req.PoolID, endpointName(req.Options?.[ENDPOINT_NAME_KEY]));
    if (req.Address) {
      const ip = parseIP(req.Address, 'Address');
      if (ip.family !== ref.family) throw new BadRequestError(`requested address ${req.Address} is not an IPv${ref.family} address`);
      const scope: Cidr | undefined = ref.subnet;
      if (scope && !containsIP(scope, ip)) throw new BadRequestError(`requested address ${req.Address} is outside the network's subnet ${formatCidr(scope)}`);
      await this.ctx.allocator.assign(ip, owner);
      this.ctx.log.info('assigned requested address', { ip: formatIP(ip), pool: req.PoolID });
      return { Address: hostCidr(ip), Data: {} };
    }
    const ip = await this.ctx.allocator.autoAssign(ref.family, owner, allocationScope(ref));
    this.ctx.log.debug('assigned address', { ip: formatIP(ip), pool: req.PoolID });
    return { Address: hostCidr(ip), Data: {} };
  }

  async releaseAddress(body: unknown) {
    const req = parseRequest(ReleaseAddressRequest, body, 'IpamDriver.ReleaseAddress');
    if (!req.Address) return {};
    if (!req.PoolID) throw new BadRequestError('invalid IpamDriver.ReleaseAddress request: field "PoolID": must be the PoolID RequestPool returned');
    const ref = decodePoolId(req.PoolID);
    // Docker sends a plain address; a prefix, if any, must at least be a possible one.
    const ip = req.Address.includes('/') ? parseAddressWithPrefix(req.Address, 'Address').ip : parseIP(req.Address, 'Address');
    if (ip.family !== ref.family) throw new BadRequestError(`ReleaseAddress: Address ${formatIP(ip)} is not an IPv${ref.family} address of pool ${req.PoolID}`);
    // The gateway markers from RequestPool come back here at network removal.
    if (ip.value === 0n) return {};
    if (ref.subnet && !containsIP(ref.subnet, ip)) {
      throw new BadRequestError(`ReleaseAddress: Address ${formatIP(ip)} is outside the subnet ${formatCidr(ref.subnet)} of its PoolID; nothing was released`);
    }
    await this.ctx.ready();
    const outcome = await this.ctx.allocator.release(ip);
    if (outcome === 'in-use') this.ctx.log.warn('kept an address whose endpoint still exists', { ip: formatIP(ip) });
    else this.ctx.log.debug('release address', { ip: formatIP(ip), outcome });
    return {};
  }

  routes(): Routes {
    return {
      '/IpamDriver.GetCapabilities': { hasBody: false, handler: () => this.capabilities() },
      '/IpamDriver.GetDefaultAddressSpaces': { hasBody: false, handler: () => this.addressSpaces() },
      '/IpamDriver.RequestPool': { hasBody: true, handler: (b) => this.requestPool(b) },
      '/IpamDriver.ReleasePool': { hasBody: true, handler: (b) => this.releasePool(b) },
      '/IpamDriver.RequestAddress': { hasBody: true, handler: (b) => this.requestAddress(b) },
      '/IpamDriver.ReleaseAddress': { hasBody: true, handler: (b) => this.releaseAddress(b) },
    };
  }
}
