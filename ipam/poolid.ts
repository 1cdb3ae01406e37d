/**
 * PoolIDs are opaque to Docker, which stores them and sends them back verbatim, so they carry
 * everything RequestAddress needs: family, the network's subnet and its ip-range. No lookup and
 * no per-network state is needed to allocate, and a replayed RequestPool gets the same ID.
 */
import { BadRequestError } from '../lib/errors';
import { type Cidr, type Family, containsCidr, formatCidr, parseCidr, shown } from '../lib/ip';

export interface PoolRef {
  family: Family;
  /** `--subnet`; absent means "any enabled pool of the family". */
  subnet?: Cidr;
  /** `--ip-range`, inside subnet. */
  range?: Cidr;
  /** The subnet was picked for a prefix-size request (`--subnet 0.0.0.0/24`): ReleasePool frees it. */
  claimed?: boolean;
}

const CLAIMED = 'claimed';

const PREFIX: Record<Family, string> = { 4: 'CalicoPoolIPv4', 6: 'CalicoPoolIPv6' };

export function encodePoolId(ref: PoolRef): string {
  const parts = [PREFIX[ref.family], ...(ref.subnet ? [formatCidr(ref.subnet)] : []), ...(ref.range ? [formatCidr(ref.range)] : [])];
  // A claimed subnet has no ip-range (RequestPool refuses one), so the marker takes its place.
  if (ref.claimed && ref.subnet && !ref.range) parts.push(CLAIMED);
  return parts.join('|');
}

export function decodePoolId(id: string): PoolRef {
  const [head, subnet, ...tail] = id.split('|');
  let range: string | undefined = tail[0];
  const rest = tail.slice(1);
  const family: Family | undefined = head === PREFIX[4] ? 4 : head === PREFIX[6] ? 6 : undefined;
  if (!family || rest.length) {
    throw new BadRequestError(`PoolID "${shown(id)}" was not issued by calico-ipam; the network must be created with --ipam-driver calico-ipam`);
  }
  const ref: PoolRef = { family };
  if (range === CLAIMED && subnet) {
    ref.claimed = true;
    range = undefined;
  }
  // Every part is checked as RequestPool made it: a forged PoolID must not widen what it scopes.
  if (subnet) ref.subnet = parseCidr(subnet, 'PoolID subnet', true);
  if (range) ref.range = parseCidr(range, 'PoolID ip-range', true);
  const forged = (why: string) => new BadRequestError(`PoolID "${shown(id)}" was not issued by calico-ipam (${why}); use the PoolID RequestPool returned`);
  if (ref.subnet && ref.subnet.family !== family) throw forged(`its subnet is not IPv${family}`);
  if (ref.range && (!ref.subnet || !containsCidr(ref.subnet, ref.range))) throw forged('its ip-range is not inside its subnet');
  return ref;
}

/** Where addresses for this pool may come from: the ip-range, else the subnet, else anywhere. */
export function allocationScope(ref: PoolRef): Cidr[] | undefined {
  if (ref.range) return [ref.range];
  if (ref.subnet) return [ref.subnet];
  return undefined;
}

/** The "pool" Docker records for a network without --subnet: every address, like Calico. */
export const ANY_POOL: Record<Family, string> = { 4: '0.0.0.0/0', 6: '::/0' };
