/**
 * Address use per pool and host, for the IPAM gauges. Pure: the caller reads blocks and pools
 * (one listing each). Nothing in etcd keeps running totals (they would be one more key every
 * allocation writes and contends on), so the summary is recomputed, at most every
 * SUMMARY_MIN_INTERVAL_MS, however often Prometheus scrapes.
 */
import type { BlockRecord } from '../lib/datastore/records';
import { type Cidr, cidrSize, containsCidr } from '../lib/ip';
import type { IpamRow } from '../lib/metrics';

export const SUMMARY_MIN_INTERVAL_MS = 15_000;
/** Blocks whose pool was deleted are reported under this pool label. */
export const NO_POOL = 'none';

export interface IpamSummary {
  rows: IpamRow[];
  poolSizes: Array<{ pool: string; size: number }>;
}

/**
 * In use: addresses a host holds in a block affine to it; borrowed: addresses a host holds in a
 * block affine to another host or to none. Free addresses and blocks count for the host the block
 * is affine to ("" when none).
 */
export function summariseIpam(blocks: Array<{ rec: BlockRecord; net: Cidr }>, pools: Array<{ cidr: string; net: Cidr }>): IpamSummary {
  const rows = new Map<string, IpamRow>();
  const row = (pool: string, host: string) => {
    const k = `${pool}\0${host}`;
    let r = rows.get(k);
    if (!r) rows.set(k, (r = { pool, host, inUse: 0, borrowed: 0, free: 0, blocks: 0 }));
    return r;
  };
  for (const b of blocks) {
    const pool = pools.find((p) => containsCidr(p.net, b.net))?.cidr ?? NO_POOL;
    const affinity = b.rec.affinity ?? '';
    const own = row(pool, affinity);
    own.blocks++;
    own.free += b.rec.unallocated.length;
    for (const owner of Object.values(b.rec.allocations)) {
      if (owner.host === affinity) own.inUse++;
      else row(pool, owner.host).borrowed++;
    }
  }
  return {
    rows: [...rows.values()].sort((a, b) => (a.pool + a.host < b.pool + b.host ? -1 : 1)),
    poolSizes: pools.map((p) => ({ pool: p.cidr, size: Number(cidrSize(p.net)) })),
  };
}

/** Wraps a summary read so scrapes closer together than `minIntervalMs` reuse the last one. */
export function throttled(read: () => Promise<IpamSummary>, minIntervalMs = SUMMARY_MIN_INTERVAL_MS): () => Promise<IpamSummary> {
  let last: { at: number; value: IpamSummary } | undefined;
  let pending: Promise<IpamSummary> | undefined;
  return () => {
    if (last && Date.now() - last.at < minIntervalMs) return Promise.resolve(last.value);
    pending ??= read()
      .then((value) => {
        last = { at: Date.now(), value };
        return value;
      })
      .finally(() => (pending = undefined));
    return pending;
  };
}
