/**
 * Prefix-size subnets: `docker network create --subnet 0.0.0.0/24` reaches RequestPool as
 * `Pool: "0.0.0.0/24"`, meaning "any free /24". One is picked inside an enabled Calico pool and
 * claimed in etcd under its own key (created only if absent), so no two networks are given the
 * same one; ReleasePool deletes the claim. Other subnets (explicit --subnet, any-pool networks)
 * are not claimed: in Calico they share the pools anyway, addresses never collide.
 */
import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import type { KV } from '../lib/datastore/kv';
import { ConflictError, UnavailableError } from '../lib/errors';
import { type Cidr, bits, cidrFromKey, cidrKey, cidrLast, containsCidr, formatCidr, overlaps, parseCidr } from '../lib/ip';

const PREFIX = 'ipam/subnets/';
const key = (c: Cidr) => PREFIX + cidrKey(c);
/** Claims racing for the same candidate: each loser picks again, a few times at most. */
const ATTEMPTS = 5;

/** `handle` recognises this request's own write when etcd's answer to it was lost. */
const SubnetClaim = z.object({ cidr: z.string(), host: z.string(), handle: z.string(), since: z.string() });

function decode(value: string) {
  try {
    const r = SubnetClaim.safeParse(JSON.parse(value));
    return r.success ? r.data : undefined;
  } catch {
    return undefined;
  }
}

/** `0.0.0.0/N` or `::/N` with N > 0: a size, not a network. */
export function isPrefixRequest(c: Cidr): boolean {
  return c.base === 0n && c.prefix > 0;
}

/**
 * The lowest `prefix`-sized subnet inside one of `pools` (in their order) that overlaps no
 * claim. A candidate inside a larger claim jumps past it, so the walk takes at most one step
 * per claim and pool however large the pool is.
 */
export function pickSubnet(pools: Cidr[], prefix: number, claims: Cidr[]): Cidr | undefined {
  for (const pool of pools) {
    if (pool.prefix > prefix || prefix > bits(pool.family)) continue;
    const step = 1n << BigInt(bits(pool.family) - prefix);
    let base = pool.base;
    while (base <= cidrLast(pool)) {
      const cand: Cidr = { family: pool.family, base, prefix };
      const hit = claims.find((c) => overlaps(c, cand));
      if (!hit) return cand;
      // Past the claim, aligned to the candidate size (a smaller claim blocks one candidate).
      const next = containsCidr(hit, cand) ? cidrLast(hit) + 1n : base + step;
      base = ((next + step - 1n) / step) * step;
    }
  }
  return undefined;
}

export class SubnetClaims {
  constructor(
    private kv: KV,
    private host: string,
  ) {}

  async list(): Promise<Cidr[]> {
    const entries = await this.kv.list(PREFIX);
    // A claim that does not decode still holds its key's subnet: never hand that one out.
    return entries.map((e) => parseCidr(decode(e.value)?.cidr ?? cidrFromKey(e.key.slice(PREFIX.length)), 'claimed subnet'));
  }

  /** Claims a free `prefix`-sized subnet inside `pools`; throws when none is left. */
  async claim(pools: Cidr[], prefix: number, what: string): Promise<Cidr> {
    for (let i = 0; i < ATTEMPTS; i++) {
      const picked = pickSubnet(pools, prefix, await this.list());
      if (!picked) {
        throw new ConflictError(
          `no free /${prefix} is left in the enabled Calico IP pools (${pools.map(formatCidr).join(', ') || 'none'}) for --subnet ${what}; remove unused networks or add a pool with "calico pool add <cidr>"`,
        );
      }
      const rec = { cidr: formatCidr(picked), host: this.host, handle: randomBytes(12).toString('base64url'), since: new Date().toISOString() };
      const won = await this.kv.txn([{ key: key(picked), absent: true }], [{ put: key(picked), value: JSON.stringify(rec) }]);
      if (won !== undefined) return picked;
      const now = await this.kv.get(key(picked));
      if (now && decode(now.value)?.handle === rec.handle) return picked;
    }
    throw new UnavailableError(`could not claim a /${prefix} for --subnet ${what}: other networks kept taking the free ones; try again`);
  }

  async release(c: Cidr): Promise<void> {
    await this.kv.del(key(c));
  }
}
