/**
 * CreateNetwork's IPv4Data/IPv6Data, checked the way RequestPool checks a subnet: every pool a
 * CIDR of its list's family inside an enabled Calico pool, every aux address an address of that
 * family inside its pool, and the gateway the marker RequestPool answered. Docker only sends
 * what calico-ipam gave it, so anything else is refused naming the field, before anything is
 * written.
 */
import type { NodeContext } from '../agent/context';
import { BadRequestError, errorMessage } from '../lib/errors';
import { type Cidr, type IP, containsIP, formatCidr, formatIP, parseAddressWithPrefix, parseCidr, shown } from '../lib/ip';
import { ANY_POOL } from '../ipam/poolid';
import type { CreateNetworkRequest } from './protocol';

type IpamData = NonNullable<CreateNetworkRequest['IPv4Data']>[number];

const NOT_CALICO_IPAM =
  'calico networks need the calico IPAM driver, which hands out /32 addresses and the link-local gateway: add --ipam-driver calico-ipam (for the managed plugin: --ipam-driver <plugin name:tag>)';

const METHOD = 'invalid NetworkDriver.CreateNetwork request';

export interface CheckedIpamData {
  ipv4Pools: string[];
  ipv6Pools: string[];
  aux: IP[];
}

/** The gateway check needs no datastore, so it runs before anything waits for etcd. */
export function checkGateways(v4: IpamData[], v6: IpamData[]): void {
  // RequestPool answered the gateway marker; any other gateway means another IPAM driver ran.
  // None at all: Docker 28+ reserved none because GwAllocCheck said to skip it.
  const other = (d: IpamData, family: 4 | 6) => !!d.Gateway && d.Gateway !== ANY_POOL[family];
  if (v4.some((d) => other(d, 4)) || v6.some((d) => other(d, 6))) throw new BadRequestError(NOT_CALICO_IPAM);
}

const named = (field: string, err: unknown) =>
  err instanceof BadRequestError ? new BadRequestError(`${METHOD}: field "${field}": ${errorMessage(err)}`) : err;

/** Parses a value, naming the field in the error. */
function at<T>(field: string, parse: () => T): T {
  try {
    return parse();
  } catch (err) {
    throw named(field, err);
  }
}

export async function checkIpamData(ctx: NodeContext, v4: IpamData[], v6: IpamData[]): Promise<CheckedIpamData> {
  checkGateways(v4, v6);
  const out: CheckedIpamData = { ipv4Pools: [], ipv6Pools: [], aux: [] };
  for (const [family, list, entries] of [
    [4, 'IPv4Data', v4],
    [6, 'IPv6Data', v6],
  ] as const) {
    for (const [i, d] of entries.entries()) {
      const field = `${list}.${i}`;
      let pool: Cidr | undefined;
      if (d.Pool && d.Pool !== ANY_POOL[family]) {
        const p = at(`${field}.Pool`, () => parseCidr(d.Pool!, 'pool', true));
        if (p.family !== family)
          throw new BadRequestError(`${METHOD}: field "${field}.Pool": ${shown(d.Pool)} is an IPv${p.family} network in the IPv${family} list`);
        await ctx.pools.covering(p).catch((err: unknown) => {
          throw named(`${field}.Pool`, err);
        });
        pool = p;
      }
      (family === 4 ? out.ipv4Pools : out.ipv6Pools).push(pool ? formatCidr(pool) : ANY_POOL[family]);
      for (const [name, value] of Object.entries(d.AuxAddresses ?? {})) {
        const f = `${field}.AuxAddresses.${shown(name)}`;
        const { ip } = at(f, () => parseAddressWithPrefix(value, 'aux address'));
        if (ip.family !== family) throw new BadRequestError(`${METHOD}: field "${f}": ${shown(value)} is not an IPv${family} address`);
        const inside = pool ? containsIP(pool, ip) : (await ctx.pools.containing(ip)) !== undefined;
        if (!inside) {
          throw new BadRequestError(
            `${METHOD}: field "${f}": ${formatIP(ip)} is outside ${pool ? `the network's subnet ${formatCidr(pool)}` : 'every Calico IP pool'}; give an aux address inside it`,
          );
        }
        out.aux.push(ip);
      }
    }
  }
  return out;
}
