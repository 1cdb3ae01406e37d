/**
 * Host-affine address allocation over the KV seam (Calico's auto-assign, on etcd v3
 * transactions): use this host's blocks first, then claim a new block (block and affinity
 * created in one transaction), then borrow a free address from another host's block.
 * Every write is a compare-and-swap; losers re-read and retry, bounded and jittered.
 */
import { randomUUID } from 'node:crypto';
import type { Compare, KV, KVEntry, Op } from '../lib/datastore/kv';
import { keys } from '../lib/datastore/keys';
import type { AffinityRecord, BlockRecord, EndpointRecord, Owner } from '../lib/datastore/records';
import { BadRequestError, ConflictError, UnavailableError } from '../lib/errors';
import { type Cidr, type Family, type IP, containsCidr, enclosing, formatCidr, formatIP, overlaps, parseCidr } from '../lib/ip';
import type { Logger } from '../lib/log';
import { KeyedMutex, jitteredDelay, sleep } from '../lib/retry';
import * as blk from './block';
import { pickUnclaimedBlock } from './placement';
import type { Pool, Pools } from './pools';

const MAX_ATTEMPTS = 20;

interface Cached {
  rec: BlockRecord;
  mod: string;
  net: Cidr;
}

export function describeOwner(o: Owner): string {
  if (o.kind === 'endpoint') return `endpoint ${o.endpoint?.slice(0, 12)} on network ${o.network?.slice(0, 12)} (host ${o.host})`;
  if (o.kind === 'aux') return `an aux address of network ${o.network?.slice(0, 12) ?? '?'} (host ${o.host})`;
  return `a request on host ${o.host} that is not yet attached to an endpoint (since ${o.since})`;
}

export class Allocator {
  private blocks = new Map<string, Cached>();
  private mutex = new KeyedMutex();

  constructor(
    private kv: KV,
    private pools: Pools,
    readonly host: string,
    private log: Logger,
  ) {}

  newOwner(pool: string, extra: Partial<Owner> = {}): Owner {
    return { host: this.host, pool, kind: 'pending', handle: randomUUID(), since: new Date().toISOString(), ...extra };
  }

  private async readBlock(cidr: string): Promise<Cached | undefined> {
    const e = await this.kv.get(keys.block(cidr));
    if (!e) {
      this.blocks.delete(cidr);
      return undefined;
    }
    return this.remember(e);
  }

  private remember(e: KVEntry): Cached {
    const rec = JSON.parse(e.value) as BlockRecord;
    const c = { rec, mod: e.mod, net: parseCidr(rec.cidr) };
    this.blocks.set(rec.cidr, c);
    return c;
  }

  /** Blocks affine to this host. Read fresh: another host's `calico node rm` may change them. */
  async affineBlocks(family: Family): Promise<string[]> {
    const entries = await this.kv.list(keys.affinities(this.host));
    return entries.map((e) => e.key.slice(keys.affinities(this.host).length)).map((k) => k.replace(/-(\d+)$/, '/$1')).filter((c) => parseCidr(c).family === family);
  }

  /**
   * Read-modify-write of one block under a compare-and-swap. `fn` returns the new record (or
   * null to delete it), extra guarded ops, and a result; or `done` to stop without writing.
   */
  private async mutate<T>(
    cidr: string,
    fn: (c: Cached | undefined) => { write: BlockRecord | null; compares?: Compare[]; ops?: Op[]; result: T } | { done: T },
  ): Promise<T> {
    return this.mutex.run(cidr, async () => {
      let cur = this.blocks.get(cidr);
      for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
        if (!cur || attempt > 0) cur = await this.readBlock(cidr);
        const step = fn(cur);
        if ('done' in step) return step.done;
        const key = keys.block(cidr);
        const compares: Compare[] = [cur ? { key, mod: cur.mod } : { key, absent: true }, ...(step.compares ?? [])];
        const ops: Op[] = [step.write ? { put: key, value: JSON.stringify(step.write) } : { del: key }, ...(step.ops ?? [])];
        const rev = await this.kv.txn(compares, ops);
        if (rev) {
          // The write's revision is the block's new mod revision: the next change to this block
          // needs no read unless another host wrote it meanwhile (then the CAS fails and we read).
          if (step.write) this.blocks.set(cidr, { rec: step.write, mod: rev, net: parseCidr(step.write.cidr) });
          else this.blocks.delete(cidr);
          return step.result;
        }
        await sleep(jitteredDelay(attempt, 2, 50));
      }
      throw new UnavailableError(`block ${cidr} kept changing under concurrent writers (${MAX_ATTEMPTS} attempts); try again`);
    });
  }

  /** Picks any free address of `family` from enabled pools, restricted to `within` if given. */
  async autoAssign(family: Family, owner: Owner, within?: Cidr[]): Promise<IP> {
    return this.mutex.run(`auto/${family}`, async () => {
      const pools = (await this.pools.enabled(family)).filter((p) => !within || within.some((w) => overlaps(p.net, w)));
      if (pools.length === 0) {
        throw new BadRequestError(
          within
            ? `no enabled Calico IP pool covers ${within.map(formatCidr).join(', ')}; see "calico pool ls"`
            : `no enabled IPv${family} pool; add one with "calico pool add <cidr>"`,
        );
      }
      // 1. Blocks already affine to this host.
      for (const cidr of await this.affineBlocks(family)) {
        const net = parseCidr(cidr);
        if (!pools.some((p) => containsCidr(p.net, net)) || (within && !within.some((w) => overlaps(w, net)))) continue;
        const ip = await this.tryAllocate(cidr, owner, within, true);
        if (ip) return ip;
      }
      // 2. Claim a new block, 3. borrow from others' blocks.
      for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
        const all = await this.kv.list(keys.blocks());
        const taken = new Set(all.map((e) => parseCidr((JSON.parse(e.value) as BlockRecord).cidr).base));
        for (const pool of pools) {
          const candidate = pickUnclaimedBlock(pool.net, pool.blockSize, taken, this.host, within);
          if (!candidate) continue;
          const ip = await this.claimAndAllocate(candidate, owner, within);
          if (ip) return ip;
          taken.add(candidate.base);
        }
        if (!pools.some((p) => pickUnclaimedBlock(p.net, p.blockSize, taken, this.host, within))) {
          for (const e of all) {
            const rec = JSON.parse(e.value) as BlockRecord;
            const net = parseCidr(rec.cidr);
            if (net.family !== family || rec.unallocated.length === 0) continue;
            if (!pools.some((p) => containsCidr(p.net, net)) || (within && !within.some((w) => overlaps(w, net)))) continue;
            const ip = await this.tryAllocate(rec.cidr, owner, within, false);
            if (ip) {
              this.log.info('borrowed an address from another host\'s block', { ip: formatIP(ip), block: rec.cidr, affinity: rec.affinity });
              return ip;
            }
          }
          break;
        }
      }
      throw new ConflictError(
        `no free IPv${family} address in ${within ? within.map(formatCidr).join(', ') : pools.map((p) => p.cidr).join(', ')}; ` +
          `remove unused containers, release leaked addresses ("calico ipam check"), or use a larger subnet or another pool`,
      );
    });
  }

  private async tryAllocate(cidr: string, owner: Owner, within: Cidr[] | undefined, mustBeMine: boolean): Promise<IP | undefined> {
    return this.mutate<IP | undefined>(cidr, (c) => {
      if (!c || (mustBeMine && c.rec.affinity !== this.host)) return { done: undefined };
      const got = blk.allocate(c.rec, c.net, owner, within);
      if (!got) return { done: undefined };
      return { write: got.rec, result: got.ip };
    });
  }

  /** Creates a block affine to this host and takes an address from it, in one transaction. */
  private async claimAndAllocate(net: Cidr, owner: Owner, within?: Cidr[]): Promise<IP | undefined> {
    const cidr = formatCidr(net);
    const got = blk.allocate(blk.newBlock(net, this.host), net, owner, within);
    if (!got) return undefined;
    const aff: AffinityRecord = { state: 'confirmed', since: new Date().toISOString() };
    const ok = await this.kv.txn(
      [{ key: keys.block(cidr), absent: true }, { key: keys.affinity(this.host, cidr), absent: true }],
      [{ put: keys.block(cidr), value: JSON.stringify(got.rec) }, { put: keys.affinity(this.host, cidr), value: JSON.stringify(aff) }],
    );
    if (!ok) return undefined;
    this.log.info('claimed block', { block: cidr, host: this.host });
    return got.ip;
  }

  async blockOf(ip: IP): Promise<{ pool: Pool; cidr: string; net: Cidr } | undefined> {
    const pool = await this.pools.containing(ip);
    if (!pool) return undefined;
    const net = enclosing(ip, pool.blockSize);
    return { pool, cidr: formatCidr(net), net };
  }

  /** Takes one chosen address (`--ip`, `--aux-address`); a clash names the holder. */
  async assign(ip: IP, owner: Owner): Promise<void> {
    const b = await this.blockOf(ip);
    if (!b) throw new BadRequestError(`address ${formatIP(ip)} is not inside any Calico IP pool; see "calico pool ls"`);
    if (b.pool.disabled) throw new BadRequestError(`address ${formatIP(ip)} is in pool ${b.pool.cidr}, which is disabled; enable it with "calico pool enable ${b.pool.cidr}"`);
    const exists = await this.mutate<boolean>(b.cidr, (c) => {
      if (!c) return { done: false };
      const r = blk.assign(c.rec, c.net, ip, owner);
      if ('heldBy' in r) throw new ConflictError(`address ${formatIP(ip)} is already in use by ${describeOwner(r.heldBy)}; choose another address or remove that container`);
      return { write: r.rec, result: true };
    });
    if (exists) return;
    // The block does not exist yet: claim it for this host with the address taken.
    const rec = blk.assign(blk.newBlock(b.net, this.host), b.net, ip, owner);
    if ('heldBy' in rec) throw new ConflictError(`address ${formatIP(ip)} is already in use`);
    const aff: AffinityRecord = { state: 'confirmed', since: new Date().toISOString() };
    const ok = await this.kv.txn(
      [{ key: keys.block(b.cidr), absent: true }, { key: keys.affinity(this.host, b.cidr), absent: true }],
      [{ put: keys.block(b.cidr), value: JSON.stringify(rec.rec) }, { put: keys.affinity(this.host, b.cidr), value: JSON.stringify(aff) }],
    );
    if (!ok) return this.assign(ip, owner); // someone created the block meanwhile: go through the CAS path
    this.log.info('claimed block', { block: b.cidr, host: this.host, for: formatIP(ip) });
  }

  /**
   * Frees an address. Missing is success (Docker releases gateways and replays). An address
   * whose endpoint still exists is kept: a replayed release must never free a live container's
   * address; the endpoint's deletion comes first in Docker's order.
   */
  async release(ip: IP, opts: { force?: boolean } = {}): Promise<'released' | 'not-allocated' | 'in-use'> {
    const b = await this.blockOf(ip);
    const cidr = b?.cidr ?? (await this.findBlockCidr(ip));
    if (!cidr) return 'not-allocated';
    let liveKey: string | undefined;
    const probe = await this.readBlock(cidr);
    const owner = probe && blk.ownerOf(probe.rec, probe.net, ip);
    if (owner?.kind === 'endpoint' && owner.endpoint && !opts.force) {
      liveKey = keys.endpoint(owner.host, owner.endpoint);
      if (await this.kv.get(liveKey)) return 'in-use';
    }
    return this.mutate<'released' | 'not-allocated'>(cidr, (c) => {
      if (!c) return { done: 'not-allocated' as const };
      const next = blk.release(c.rec, c.net, ip);
      if (!next) return { done: 'not-allocated' as const };
      // A block that belongs to nobody and holds nothing is deleted rather than kept.
      const write = next.affinity === null && blk.isEmpty(next) ? null : next;
      return { write, compares: liveKey ? [{ key: liveKey, absent: true }] : [], result: 'released' as const };
    });
  }

  /** An address outside every pool (its pool was removed) can still sit in a block. */
  private async findBlockCidr(ip: IP): Promise<string | undefined> {
    const all = await this.kv.list(keys.blocks());
    const e = all.find((x) => {
      const net = parseCidr((JSON.parse(x.value) as BlockRecord).cidr);
      return net.family === ip.family && ip.value >= net.base && ip.value < net.base + (1n << BigInt((ip.family === 4 ? 32 : 128) - net.prefix));
    });
    return e ? (JSON.parse(e.value) as BlockRecord).cidr : undefined;
  }

  /**
   * Records that an address RequestAddress handed out is a network's `--aux-address`, so it is
   * owned by the network rather than looking leaked. Addresses calico-ipam never gave are left.
   */
  async markAux(ip: IP, network: string): Promise<void> {
    const b = await this.blockOf(ip);
    if (!b) return;
    await this.mutate<void>(b.cidr, (c) => {
      const owner = c && blk.ownerOf(c.rec, c.net, ip);
      if (!c || !owner || owner.kind === 'endpoint' || (owner.kind === 'aux' && owner.network === network)) return { done: undefined };
      return { write: blk.setOwner(c.rec, c.net, ip, { ...owner, kind: 'aux', network }), result: undefined };
    });
  }

  /**
   * CreateEndpoint's single transaction: every address's owner becomes the endpoint and the
   * endpoint record is written, or nothing is. Replays of the same endpoint succeed.
   */
  async attachEndpoint(ips: IP[], ep: EndpointRecord, endpointKey: string): Promise<void> {
    const located = await Promise.all(
      ips.map(async (ip) => {
        const b = await this.blockOf(ip);
        if (!b) throw new BadRequestError(`address ${formatIP(ip)} is not inside any Calico IP pool: the network must use --ipam-driver calico-ipam`);
        return { ip, ...b };
      }),
    );
    const cidrs = [...new Set(located.map((l) => l.cidr))].sort();
    await this.mutex.runAll(cidrs, async () => {
      for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
        const current = new Map<string, Cached>();
        for (const cidr of cidrs) {
          const c = (attempt === 0 ? this.blocks.get(cidr) : undefined) ?? (await this.readBlock(cidr));
          if (c) current.set(cidr, c);
        }
        const next = new Map<string, BlockRecord>();
        let staleView = false;
        for (const l of located) {
          const c = current.get(l.cidr);
          const rec = next.get(l.cidr) ?? c?.rec;
          const owner = rec && c && blk.ownerOf(rec, c.net, l.ip);
          if ((!rec || !c || !owner || (owner.kind === 'endpoint' && owner.endpoint !== ep.id)) && attempt === 0) {
            staleView = true; // the cached block may predate a write by another host: read again
            break;
          }
          if (!rec || !c || !owner) {
            throw new BadRequestError(`address ${formatIP(l.ip)} was not allocated by calico-ipam: create the network with --ipam-driver calico-ipam`);
          }
          if (owner.kind === 'endpoint' && owner.endpoint !== ep.id) {
            throw new ConflictError(`address ${formatIP(l.ip)} is already in use by ${describeOwner(owner)}`);
          }
          next.set(l.cidr, blk.setOwner(rec, c.net, l.ip, { ...owner, kind: 'endpoint', network: ep.network, endpoint: ep.id }));
        }
        if (staleView) continue;
        const compares: Compare[] = cidrs.map((cidr) => ({ key: keys.block(cidr), mod: current.get(cidr)!.mod }));
        const ops: Op[] = [...[...next].map(([cidr, rec]) => ({ put: keys.block(cidr), value: JSON.stringify(rec) })), { put: endpointKey, value: JSON.stringify(ep) }];
        const rev = await this.kv.txn(compares, ops);
        if (rev) {
          for (const [cidr, rec] of next) this.blocks.set(cidr, { rec, mod: rev, net: parseCidr(rec.cidr) });
          return;
        }
        await sleep(jitteredDelay(attempt, 2, 50));
      }
      throw new UnavailableError(`could not record endpoint ${ep.id.slice(0, 12)}: its address blocks kept changing; try again`);
    });
  }
}
