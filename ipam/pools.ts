/**
 * IP pools: the address ranges operators configure, from which host-affine blocks are carved.
 * Reads are cached for a short time because every RequestAddress needs them; a pool change
 * reaches every host within that time.
 */
import { codecs } from '../lib/datastore/codec';
import type { KV, KVEntry } from '../lib/datastore/kv';
import { keyName, keys } from '../lib/datastore/keys';
import type { PoolRecord } from '../lib/datastore/records';
import { transact } from '../lib/datastore/transact';
import { BadRequestError, ConflictError, NotFoundError } from '../lib/errors';
import { type Cidr, type Family, type IP, containsCidr, containsIP, formatCidr, overlaps, parseCidr } from '../lib/ip';
import { Blocks } from './blocks';
import { type PoolSettings, type SettingNames, checkSettings, settingsOf, storedSettings, withSettings } from './pool-settings';

export const DEFAULT_BLOCK_SIZE: Record<Family, number> = { 4: 26, 6: 122 };
export const BLOCK_LIMITS: Record<Family, [number, number]> = { 4: [20, 32], 6: [116, 128] };

export interface Pool extends PoolRecord {
  net: Cidr;
  /** etcd mod revision of the pool key: block claims are guarded by it. */
  mod: string;
}

/** The stored form of a pool, without what toPool adds. */
export function poolRecord(p: Pool): PoolRecord {
  return {
    cidr: p.cidr,
    family: p.family,
    blockSize: p.blockSize,
    disabled: p.disabled,
    createdAt: p.createdAt,
    ...(p.name !== undefined ? { name: p.name } : {}),
    ...storedSettings(settingsOf(p)),
  };
}

export type PoolAddOptions = { blockSize?: number; disabled?: boolean } & Partial<PoolSettings>;

function toPool(e: KVEntry): Pool {
  const r = codecs.pool.decode(e);
  return { ...r, net: parseCidr(r.cidr, 'pool'), mod: e.mod };
}

export class Pools {
  private cache?: { at: number; pools: Pool[] };

  constructor(
    private kv: KV,
    private ttlMs = 1000,
  ) {}

  invalidate(): void {
    this.cache = undefined;
  }

  async list(): Promise<Pool[]> {
    if (this.cache && Date.now() - this.cache.at < this.ttlMs) return this.cache.pools;
    const entries = await this.kv.list(keys.pools());
    const pools = entries.map(toPool);
    pools.sort((a, b) => a.family - b.family || (a.net.base < b.net.base ? -1 : 1));
    this.cache = { at: Date.now(), pools };
    return pools;
  }

  async enabled(family: Family): Promise<Pool[]> {
    const found = (await this.list()).filter((p) => p.family === family && !p.disabled);
    if (found.length) return found;
    this.invalidate(); // none cached: make sure before refusing
    return (await this.list()).filter((p) => p.family === family && !p.disabled);
  }

  async containing(ip: IP): Promise<Pool | undefined> {
    return (await this.list()).find((p) => containsIP(p.net, ip));
  }

  /** The enabled pool equal to or containing `subnet`, or a message listing what exists. */
  async covering(subnet: Cidr): Promise<Pool> {
    let all = await this.list();
    let hit = all.find((p) => containsCidr(p.net, subnet));
    if (!hit || hit.disabled) {
      // The cache may predate a `calico pool add` or `enable` made a moment ago: look again.
      this.invalidate();
      all = await this.list();
      hit = all.find((p) => containsCidr(p.net, subnet));
    }
    if (hit && !hit.disabled) return hit;
    const names = all.filter((p) => p.family === subnet.family).map((p) => `${p.cidr}${p.disabled ? ' (disabled)' : ''}`);
    if (hit) {
      throw new BadRequestError(`subnet ${formatCidr(subnet)} is inside pool ${hit.cidr}, which is disabled; enable it with "calico pool enable ${hit.cidr}"`);
    }
    throw new BadRequestError(
      `subnet ${formatCidr(subnet)} is not inside any Calico IP pool (IPv${subnet.family} pools: ${names.join(', ') || 'none'}); ` +
        `pick a subnet inside one of them, or add a pool with "calico pool add ${formatCidr(subnet)}"`,
    );
  }

  async add(cidr: string, opts: PoolAddOptions = {}, names?: SettingNames): Promise<PoolRecord> {
    const net = parseCidr(cidr, 'pool CIDR', true);
    const blockSize = opts.blockSize ?? Math.max(DEFAULT_BLOCK_SIZE[net.family], net.prefix);
    const [min, max] = BLOCK_LIMITS[net.family];
    if (!Number.isInteger(blockSize) || blockSize < min || blockSize > max) {
      throw new BadRequestError(`block size ${blockSize} is out of range for IPv${net.family}: use ${min} to ${max}`);
    }
    if (blockSize < net.prefix) {
      throw new BadRequestError(`block size /${blockSize} is larger than the pool ${formatCidr(net)}; use a block size of at least ${net.prefix}`);
    }
    const settings = checkSettings(net.family, settingsOf(opts), names);
    const record: PoolRecord = {
      cidr: formatCidr(net),
      family: net.family,
      blockSize,
      disabled: opts.disabled ?? false,
      createdAt: new Date().toISOString(),
      ...storedSettings(settings),
    };
    this.invalidate();
    const existing = await this.list();
    const same = existing.find((p) => p.cidr === record.cidr);
    if (same) {
      const now = settingsOf(same);
      if (same.blockSize === record.blockSize && JSON.stringify(now) === JSON.stringify(settings)) return same;
      if (same.blockSize !== record.blockSize) throw new ConflictError(`pool ${record.cidr} already exists with block size ${same.blockSize}`);
      throw new ConflictError(`pool ${record.cidr} already exists with other settings; change them with "calico pool set ${record.cidr}"`);
    }
    const clash = existing.find((p) => overlaps(p.net, net));
    if (clash) throw new ConflictError(`pool ${record.cidr} overlaps existing pool ${clash.cidr}; pools must not overlap`);
    const ok = await this.kv.txn([{ key: keys.pool(record.cidr), absent: true }], [{ put: keys.pool(record.cidr), value: codecs.pool.encode(record) }]);
    this.invalidate();
    if (!ok) return this.get(record.cidr);
    return record;
  }

  async get(cidr: string): Promise<Pool> {
    const canon = formatCidr(parseCidr(cidr, 'pool CIDR', true));
    const e = await this.kv.get(keys.pool(canon));
    if (!e) throw new NotFoundError(`no pool ${canon}; see "calico pool ls"`);
    return toPool(e);
  }

  async setDisabled(cidr: string, disabled: boolean): Promise<PoolRecord> {
    return this.update(cidr, { disabled });
  }

  /**
   * Changes a pool's state and settings in one compare-and-swap; the result is checked as a whole
   * (turning VXLAN on while IP-in-IP is on is refused), so nothing is half-changed.
   */
  async update(cidr: string, patch: { disabled?: boolean } & Partial<PoolSettings>, names?: SettingNames): Promise<PoolRecord> {
    const canon = formatCidr(parseCidr(cidr, 'pool CIDR', true));
    const rec = await transact(
      this.kv,
      async () => {
        const e = await this.kv.get(keys.pool(canon));
        if (!e) throw new NotFoundError(`no pool ${canon}; see "calico pool ls"`);
        const old = codecs.pool.decode(e);
        const defined = Object.fromEntries(Object.entries(patch).filter(([, v]) => v !== undefined));
        const settings = checkSettings(old.family, settingsOf({ ...old, ...defined }), names);
        const next = withSettings({ ...old, disabled: patch.disabled ?? old.disabled }, settings);
        return { compares: [{ key: e.key, mod: e.mod }], ops: [{ put: e.key, value: codecs.pool.encode(next) }], result: next };
      },
      { what: `pool ${canon}` },
    );
    this.invalidate();
    return rec;
  }

  /**
   * Removes a pool with no addresses in use, together with its empty blocks and their
   * affinities, in one transaction so no host is left announcing a block of a deleted pool.
   */
  async remove(cidr: string): Promise<void> {
    const pool = await this.get(cidr);
    const blocks = (await new Blocks(this.kv).list()).filter((b) => containsCidr(pool.net, b.net));
    const used = blocks.reduce((n, b) => n + Object.keys(b.rec.allocations).length, 0);
    if (used > 0) {
      throw new ConflictError(
        `pool ${pool.cidr} still has ${used} address(es) in use; remove those containers (or release the addresses with "calico ipam release") first, or disable the pool with "calico pool disable ${pool.cidr}"`,
      );
    }
    const blockKeys = new Set(blocks.map((b) => keyName(keys.block(b.rec.cidr), keys.blocks())));
    const affinities = (await this.kv.list(keys.affinities(), { keysOnly: true })).filter((e) => blockKeys.has(e.key.slice(e.key.lastIndexOf('/') + 1)));
    // Every block claim rewrites its pool's key, so comparing the pool's revision (read before
    // the blocks) fails this removal if a block was claimed after that read.
    const ok = await this.kv.txn(
      [...blocks.map((b) => ({ key: keys.block(b.rec.cidr), mod: b.mod })), { key: keys.pool(pool.cidr), mod: pool.mod }],
      [...blocks.map((b) => ({ del: keys.block(b.rec.cidr) })), ...affinities.map((a) => ({ del: a.key })), { del: keys.pool(pool.cidr) }],
    );
    this.invalidate();
    if (!ok) throw new ConflictError(`pool ${pool.cidr} changed while being removed (an address may have just been allocated); try again`);
  }

  /** Creates the default pool of a family when etcd holds none of that family. */
  async ensureDefault(family: Family, cidr: string | undefined, settings: Partial<PoolSettings> = {}): Promise<PoolRecord | undefined> {
    if (!cidr) return undefined;
    const net = parseCidr(cidr, `default IPv${family} pool`, true);
    if (net.family !== family) throw new BadRequestError(`default IPv${family} pool ${cidr} is not an IPv${family} network`);
    this.invalidate();
    if ((await this.list()).some((p) => p.family === family)) return undefined;
    return this.add(cidr, settings, { vxlanMode: `CALICO_IPV${family}POOL_VXLAN`, ipipMode: `CALICO_IPV${family}POOL_IPIP` });
  }
}
