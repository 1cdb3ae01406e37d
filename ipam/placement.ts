/**
 * Which unclaimed block a host claims next. Like Calico, the search starts at a point seeded by
 * a hash of the host name: concurrent requests on one host converge on the same candidate and
 * different hosts spread out, so their blocks (and BGP aggregates) rarely interleave.
 */
import { type Cidr, bits, cidrLast, overlaps } from '../lib/ip';

/** 64-bit FNV-1a of the host name. */
export function hostSeed(host: string): bigint {
  let h = 0xcbf29ce484222325n;
  for (const byte of Buffer.from(host, 'utf8')) {
    h ^= BigInt(byte);
    h = (h * 0x100000001b3n) & 0xffffffffffffffffn;
  }
  return h;
}

/** Index ranges [first, last] of the pool's blocks that overlap the constraint. */
function candidateRanges(pool: Cidr, blockPrefix: number, within?: Cidr[]): Array<[bigint, bigint]> {
  const shift = BigInt(bits(pool.family) - blockPrefix);
  const count = 1n << BigInt(blockPrefix - pool.prefix);
  if (!within) return [[0n, count - 1n]];
  const ranges: Array<[bigint, bigint]> = [];
  for (const c of within) {
    if (!overlaps(pool, c)) continue;
    const lo = (c.base > pool.base ? c.base : pool.base) - pool.base;
    const hiAbs = cidrLast(c) < cidrLast(pool) ? cidrLast(c) : cidrLast(pool);
    ranges.push([lo >> shift, (hiAbs - pool.base) >> shift]);
  }
  return ranges;
}

/**
 * The first block of `pool` (blocks of `blockPrefix` bits) not in `taken` (block base values),
 * overlapping `within` when given; undefined when every candidate is taken. Probes at most
 * |taken| + 1 candidates per range, so huge IPv6 pools cost nothing extra.
 */
export function pickUnclaimedBlock(pool: Cidr, blockPrefix: number, taken: Set<bigint>, host: string, within?: Cidr[]): Cidr | undefined {
  const shift = BigInt(bits(pool.family) - blockPrefix);
  const seed = hostSeed(host);
  for (const [first, last] of candidateRanges(pool, blockPrefix, within)) {
    const len = last - first + 1n;
    const start = seed % len;
    const probes = BigInt(taken.size) + 1n < len ? BigInt(taken.size) + 1n : len;
    for (let i = 0n; i < probes; i++) {
      const idx = first + ((start + i) % len);
      const base = pool.base + (idx << shift);
      if (!taken.has(base)) return { family: pool.family, base, prefix: blockPrefix };
    }
  }
  return undefined;
}
