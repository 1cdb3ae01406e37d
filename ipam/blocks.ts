/**
 * Reading blocks. Every consumer that needs blocks (the allocator, reconciliation, the CLI, pool
 * and host removal) reads them here, decoded, and never more than it needs: the CIDRs alone
 * come from a keys-only listing (a few dozen bytes a block), one block from its key. Listings
 * are paged by the store, so they work at any number of blocks.
 */
import type { KV, KVEntry } from '../lib/datastore/kv';
import { codecs } from '../lib/datastore/codec';
import { keyName, keys } from '../lib/datastore/keys';
import type { BlockRecord } from '../lib/datastore/records';
import { type Cidr, type IP, cidrFromKey, containsIP, formatCidr, parseCidr } from '../lib/ip';

export interface StoredBlock {
  rec: BlockRecord;
  net: Cidr;
  /** The key's mod revision: what a compare-and-swap on the block guards. */
  mod: string;
}

export class Blocks {
  constructor(private kv: KV) {}

  decode(e: KVEntry): StoredBlock {
    const rec = codecs.block.decode(e);
    return { rec, net: parseCidr(rec.cidr), mod: e.mod };
  }

  /** Every block, decoded. */
  async list(): Promise<StoredBlock[]> {
    return (await this.kv.list(keys.blocks())).map((e) => this.decode(e));
  }

  /** The CIDR of every block, from its key: no block document is read. */
  async cidrs(): Promise<Cidr[]> {
    return (await this.kv.list(keys.blocks(), { keysOnly: true })).map((e) => parseCidr(cidrFromKey(keyName(e.key, keys.blocks()))));
  }

  async get(cidr: string): Promise<StoredBlock | undefined> {
    const e = await this.kv.get(keys.block(cidr));
    return e ? this.decode(e) : undefined;
  }

  /** The block holding `ip`, whatever pool it came from (its pool may since have been removed). */
  async find(ip: IP): Promise<StoredBlock | undefined> {
    const net = (await this.cidrs()).find((c) => containsIP(c, ip));
    return net ? this.get(formatCidr(net)) : undefined;
  }
}
