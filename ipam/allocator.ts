/**
 * Host-affine address allocation over the KV seam (Calico's auto-assign, on etcd v3
 * transactions): use this host's blocks first, then claim a new block (block and affinity
 * created in one transaction), then borrow a free address from another host's block.
 * Block writes go through BlockWriter: compare-and-swap, grouped per block, retried bounded
 * and jittered when another host wins.
 */
import { randomBytes } from 'node:crypto';
import { codecs } from '../lib/datastore/codec';
import type { KV, Op } from '../lib/datastore/kv';
import { keyName, keys } from '../lib/datastore/keys';
import type { BlockRecord, EndpointRecord, Owner, PendingOwner } from '../lib/datastore/records';
import { CAS_ATTEMPTS, transact } from '../lib/datastore/transact';
import { BadRequestError, ConflictError, UnavailableError } from '../lib/errors';
import { type Cidr, type Family, type IP, cidrFromKey, containsCidr, containsIP, enclosing, formatCidr, formatIP, overlaps, parseCidr } from '../lib/ip';
import type { Logger } from '../lib/log';
import { KeyedMutex, jitteredDelay, sleep } from '../lib/retry';
import * as blk from './block';
import { BlockWriter } from './block-writer';
import { Blocks } from './blocks';
import { pickUnclaimedBlock } from './placement';
import { type Pool, type Pools, poolRecord } from './pools';
/** How long this host's list of affine blocks is trusted before it is read again. */
const AFFINITY_TTL_MS = 5000;
/**
 * How long a copy of one of this host's blocks that showed it full is trusted, even when looking
 * "fresh" before claiming a new block. Only this host allocates from its blocks, so a full block
 * gains a free address only by a release (often by this host too, which updates the copy). Without
 * this every claim re-read every full block: reads grew with the square of the blocks per host.
 */
const FULL_TRUST_MS = 30_000;
/**
 * How long the set of claimed block CIDRs is reused between claims. A stale set can only make a
 * claim pick a block another host took meanwhile; its transaction then fails on the block's
 * absence compare and the next attempt lists afresh. Listing every block key on every claim made
 * each claim cost more the more blocks the cluster had.
 */
const TAKEN_TTL_MS = 10_000;

export function describeOwner(o: Owner): string {
  const named = o.name !== undefined ? `${o.name}'s ` : '';
  if (o.kind === 'endpoint') return `${named}endpoint ${o.endpoint.slice(0, 12)} on network ${o.network.slice(0, 12)} (host ${o.host})`;
  if (o.kind === 'aux') return `an aux address of network ${o.network.slice(0, 12)} (host ${o.host})`;
  return `a request${o.name !== undefined ? ` for ${o.name}` : ''} on host ${o.host} that is not yet attached to an endpoint (since ${o.since})`;
}

export class Allocator {
  private writer: BlockWriter;
  readonly blocks: Blocks;
  private mutex = new KeyedMutex();
  private taken?: { at: number; bases: Set<bigint> };
  /** Parsed once: every RequestAddress walks this list. */
  private affinity?: { at: number; blocks: Array<{ cidr: string; net: Cidr }> };

  constructor(
    private kv: KV,
    private pools: Pools,
    readonly host: string,
    private log: Logger,
  ) {
    this.writer = new BlockWriter(kv);
    this.blocks = new Blocks(kv);
  }

  /** A fresh owner for one request; its handle recognises the request's own writes on a replay. */
  newOwner(pool: string, name?: string): PendingOwner {
    const owner: PendingOwner = { kind: 'pending', host: this.host, pool, handle: randomBytes(12).toString('base64url'), since: new Date().toISOString() };
    if (name !== undefined) owner.name = name;
    return owner;
  }

  /** Blocks affine to this host, cached briefly: only this host claims them. */
  async affineBlocks(family: Family, fresh = false): Promise<string[]> {
    return (await this.affineBlockNets(family, fresh)).map((b) => b.cidr);
  }

  private async affineBlockNets(family: Family, fresh: boolean): Promise<Array<{ cidr: string; net: Cidr }>> {
    if (fresh || !this.affinity || Date.now() - this.affinity.at > AFFINITY_TTL_MS) {
      const prefix = keys.affinities(this.host);
      const entries = await this.kv.list(prefix, { keysOnly: true });
      this.affinity = { at: Date.now(), blocks: entries.map((e) => cidrFromKey(keyName(e.key, prefix))).map((cidr) => ({ cidr, net: parseCidr(cidr) })) };
    }
    return this.affinity.blocks.filter((b) => b.net.family === family);
  }

  private rememberAffinity(cidr: string): void {
    if (this.affinity && !this.affinity.blocks.some((b) => b.cidr === cidr)) this.affinity.blocks.push({ cidr, net: parseCidr(cidr) });
  }

  private usable(net: Cidr, pools: Pool[], within?: Cidr[]): boolean {
    return pools.some((p) => containsCidr(p.net, net)) && (!within || within.some((w) => overlaps(w, net)));
  }

  private async fromAffineBlocks(family: Family, pools: Pool[], owner: Owner, within: Cidr[] | undefined, fresh: boolean): Promise<IP | undefined> {
    for (const { cidr, net } of await this.affineBlockNets(family, fresh)) {
      if (!this.usable(net, pools, within)) continue;
      const cached = this.writer.cached(cidr);
      // Skip blocks known to be full without a round trip; before a claim ("fresh") only when the
      // copy is recent, so a stale view is corrected within FULL_TRUST_MS.
      const trusted = cached && (!fresh || (cached.at !== undefined && Date.now() - cached.at < FULL_TRUST_MS));
      if (trusted && !cached.rec.unallocated.some((o) => !within || within.some((w) => containsIP(w, blk.ipAt(cached.net, o))))) continue;
      const ip = await this.tryAllocate(cidr, owner, within, true);
      if (ip) return ip;
    }
    return undefined;
  }

  /** Picks any free address of `family` from enabled pools, restricted to `within` if given. */
  async autoAssign(family: Family, owner: Owner, within?: Cidr[]): Promise<IP> {
    const pools = (await this.pools.enabled(family)).filter((p) => !within || within.some((w) => overlaps(p.net, w)));
    if (pools.length === 0) {
      throw new BadRequestError(
        within
          ? `no enabled Calico IP pool covers ${within.map(formatCidr).join(', ')}; see "calico pool ls"`
          : `no enabled IPv${family} pool; add one with "calico pool add <cidr>"`,
      );
    }
    // 1. Blocks already affine to this host (concurrent requests share one write per block).
    const quick = await this.fromAffineBlocks(family, pools, owner, within, false);
    if (quick) return quick;
    // 2. and 3. are serialised per family on this host, so a burst of requests that finds the
    // blocks full claims one new block, not one each.
    return this.mutex.run(`claim/${family}`, async () => {
      const again = await this.fromAffineBlocks(family, pools, owner, within, true);
      if (again) return again;
      let current = pools;
      for (let attempt = 0; attempt < CAS_ATTEMPTS; attempt++) {
        if (attempt > 0) {
          this.pools.invalidate();
          current = (await this.pools.enabled(family)).filter((p) => !within || within.some((w) => overlaps(p.net, w)));
          await sleep(jitteredDelay(attempt, 2, 50));
        }
        // Block keys alone: a claim must not read every block document (at thousands of blocks
        // that listing is megabytes, and it ran on every new block of every host).
        const taken = await this.takenBlocks(attempt > 0);
        let lostRace = false;
        for (const pool of current) {
          const candidate = pickUnclaimedBlock(pool.net, pool.blockSize, taken, this.host, within);
          if (!candidate) continue;
          const ip = await this.claimAndAllocate(pool, candidate, owner, within);
          if (ip) return ip;
          lostRace = true;
          break;
        }
        // Someone claimed first (or the pool changed): look at the blocks again, theirs included.
        if (lostRace) continue;
        // The pools have no unclaimed block left: borrow from another host's block.
        for (const b of await this.blocks.list()) {
          if (b.net.family !== family || b.rec.unallocated.length === 0 || !this.usable(b.net, current, within)) continue;
          const ip = await this.tryAllocate(b.rec.cidr, owner, within, false);
          if (ip) {
            this.log.info("borrowed an address from another host's block", { ip: formatIP(ip), block: b.rec.cidr, affinity: b.rec.affinity });
            return ip;
          }
        }
        break;
      }
      throw new ConflictError(
        `no free IPv${family} address in ${within ? within.map(formatCidr).join(', ') : current.map((p) => p.cidr).join(', ')}; ` +
          `remove unused containers, release leaked addresses ("calico ipam check"), or use a larger subnet or another pool`,
      );
    });
  }

  private async takenBlocks(fresh: boolean): Promise<Set<bigint>> {
    if (fresh || !this.taken || Date.now() - this.taken.at > TAKEN_TTL_MS) {
      this.taken = { at: Date.now(), bases: new Set((await this.blocks.cidrs()).map((c) => c.base)) };
    }
    return this.taken.bases;
  }

  private tryAllocate(cidr: string, owner: Owner, within: Cidr[] | undefined, mustBeMine: boolean): Promise<IP | undefined> {
    return this.writer.change<IP | undefined>(cidr, (c) => {
      if (!c) return { done: undefined };
      const mine = blk.heldBy(c.rec, c.net, owner.handle);
      if (mine) return { done: mine };
      if (mustBeMine && c.rec.affinity !== this.host) return { done: undefined };
      const got = blk.allocate(c.rec, c.net, owner, within);
      return got ? { write: got.rec, result: got.ip } : { done: undefined };
    });
  }

  /**
   * Creates a block and this host's affinity in one transaction, guarded by the pool's revision
   * and bumping it, so a pool being removed or disabled meanwhile cannot gain a block.
   */
  private async claim(pool: Pool, net: Cidr, rec: BlockRecord): Promise<boolean> {
    const cidr = formatCidr(net);
    const aff = { state: 'confirmed' as const, since: new Date().toISOString() };
    const rev = await this.kv.txn(
      [
        { key: keys.block(cidr), absent: true },
        { key: keys.affinity(this.host, cidr), absent: true },
        { key: keys.pool(pool.cidr), mod: pool.mod },
      ],
      [
        { put: keys.block(cidr), value: codecs.block.encode(rec) },
        { put: keys.affinity(this.host, cidr), value: codecs.affinity.encode(aff) },
        // Rewriting the pool unchanged bumps its revision, which `calico pool rm` compares.
        { put: keys.pool(pool.cidr), value: codecs.pool.encode(poolRecord(pool)) },
      ],
    );
    this.pools.invalidate();
    if (!rev) {
      // A failed compare may be our own claim, applied although its reply was lost.
      const now = await this.writer.read(cidr);
      const handles = Object.values(rec.allocations).map((o) => o.handle);
      this.taken?.bases.add(net.base);
      if (!now || now.rec.affinity !== this.host || !handles.every((h) => blk.heldBy(now.rec, now.net, h))) return false;
      this.rememberAffinity(cidr);
      return true;
    }
    this.writer.remember(cidr, rec, rev);
    this.rememberAffinity(cidr);
    this.taken?.bases.add(net.base);
    this.log.info('claimed block', { block: cidr, host: this.host });
    return true;
  }

  /** Creates a block affine to this host and takes an address from it, in one transaction. */
  private async claimAndAllocate(pool: Pool, net: Cidr, owner: Owner, within?: Cidr[]): Promise<IP | undefined> {
    const got = blk.allocate(blk.newBlock(net, this.host), net, owner, within);
    if (!got) return undefined;
    return (await this.claim(pool, net, got.rec)) ? got.ip : undefined;
  }

  async blockOf(ip: IP): Promise<{ pool: Pool; cidr: string; net: Cidr } | undefined> {
    const pool = await this.pools.containing(ip);
    if (!pool) return undefined;
    const net = enclosing(ip, pool.blockSize);
    return { pool, cidr: formatCidr(net), net };
  }

  /** Takes one chosen address (`--ip`, `--aux-address`); a clash names the holder. */
  async assign(ip: IP, owner: Owner): Promise<void> {
    const found = await this.blockOf(ip);
    if (!found) throw new BadRequestError(`address ${formatIP(ip)} is not inside any Calico IP pool; see "calico pool ls"`);
    const b = { ...found };
    if (b.pool.disabled)
      throw new BadRequestError(`address ${formatIP(ip)} is in pool ${b.pool.cidr}, which is disabled; enable it with "calico pool enable ${b.pool.cidr}"`);
    for (let attempt = 0; attempt < CAS_ATTEMPTS; attempt++) {
      const exists = await this.writer.change<boolean | Owner>(b.cidr, (c) => {
        if (!c) return { done: false };
        const r = blk.assign(c.rec, c.net, ip, owner);
        if ('heldBy' in r) return { done: r.heldBy };
        return { write: r.rec, result: true };
      });
      if (typeof exists === 'object')
        throw new ConflictError(
          `address ${formatIP(ip)} is already in use by ${await this.holderName(exists)}; choose another address or remove that container`,
        );
      if (exists) return;
      // The block does not exist yet: claim it for this host with the address taken.
      const rec = blk.assign(blk.newBlock(b.net, this.host), b.net, ip, owner);
      if ('rec' in rec && (await this.claim(b.pool, b.net, rec.rec))) return;
      // Someone created the block (or changed the pool) meanwhile: look again.
      this.writer.forget(b.cidr);
      this.pools.invalidate();
      await sleep(jitteredDelay(attempt, 2, 50));
      const again = await this.blockOf(ip);
      if (!again || again.pool.disabled)
        throw new BadRequestError(`address ${formatIP(ip)} is no longer inside an enabled Calico IP pool; see "calico pool ls"`);
      b.pool = again.pool;
    }
    throw new UnavailableError(`could not take address ${formatIP(ip)}: its block kept changing; try again`);
  }

  /** The holder as a user knows it: the container's name once the Docker watcher learned it. */
  private async holderName(o: Owner): Promise<string> {
    if (o.kind === 'endpoint') {
      const e = await this.kv.get(keys.endpoint(o.host, o.endpoint)).catch(() => undefined);
      const rec = e ? codecs.endpoint.decode(e) : undefined;
      if (rec?.containerName) return `container ${rec.containerName} (endpoint ${o.endpoint.slice(0, 12)}, host ${o.host})`;
    }
    return describeOwner(o);
  }

  /**
   * Frees an address. Missing is success (Docker releases gateways and replays). An address
   * whose endpoint still exists is kept: a replayed release must never free a live container's
   * address; the endpoint's deletion comes first in Docker's order.
   */
  async release(ip: IP, opts: { force?: boolean; handle?: string } = {}): Promise<'released' | 'not-allocated' | 'in-use'> {
    const b = await this.blockOf(ip);
    const cidr = b?.cidr ?? (await this.blocks.find(ip))?.rec.cidr;
    if (!cidr) return 'not-allocated';
    const current = this.writer.cached(cidr) ?? (await this.writer.read(cidr));
    const owner = current && blk.ownerOf(current.rec, current.net, ip);
    if (!owner) {
      // The cached view may be stale (another host allocated it): confirm before answering.
      const fresh = await this.writer.read(cidr);
      if (!fresh || !blk.ownerOf(fresh.rec, fresh.net, ip)) return 'not-allocated';
      return this.release(ip, opts);
    }
    // Reconciliation frees exactly the allocation it judged leaked, not a later one.
    if (opts.handle && owner.handle !== opts.handle) return 'not-allocated';
    if (owner.kind === 'endpoint' && !opts.force && (await this.kv.get(keys.endpoint(owner.host, owner.endpoint)))) return 'in-use';
    return this.writer.change<'released' | 'not-allocated' | 'in-use'>(cidr, (c) => {
      const now = c && blk.ownerOf(c.rec, c.net, ip);
      // Only the allocation we looked at: if it changed hands meanwhile, it is not ours to free,
      // and if an endpoint took it since we checked, that endpoint is live.
      if (!c || !now || now.handle !== owner.handle) return { done: 'not-allocated' };
      if (!opts.force && (now.kind !== owner.kind || (now.kind === 'endpoint' && owner.kind === 'endpoint' && now.endpoint !== owner.endpoint)))
        return { done: 'in-use' };
      const next = blk.release(c.rec, c.net, ip)!;
      // A block that belongs to nobody and holds nothing is deleted rather than kept.
      return { write: next.affinity === null && blk.isEmpty(next) ? null : next, result: 'released' };
    });
  }

  /**
   * Records that an address RequestAddress handed out is a network's `--aux-address`, so it is
   * owned by the network rather than looking leaked. Addresses calico-ipam never gave are left.
   */
  async markAux(ip: IP, network: string): Promise<void> {
    const b = await this.blockOf(ip);
    if (!b) return;
    await this.writer.change<void>(b.cidr, (c) => {
      const owner = c && blk.ownerOf(c.rec, c.net, ip);
      if (!c || !owner || owner.kind === 'endpoint' || (owner.kind === 'aux' && owner.network === network)) return { done: undefined };
      return {
        write: blk.setOwner(c.rec, c.net, ip, {
          kind: 'aux',
          host: owner.host,
          pool: owner.pool,
          handle: owner.handle,
          since: owner.since,
          network,
          ...(owner.name !== undefined ? { name: owner.name } : {}),
        }),
        result: undefined,
      };
    });
  }

  /** Makes each address's owner the endpoint; throws if one is not ours to take. */
  private claimOwner(rec: BlockRecord, net: Cidr, ip: IP, ep: EndpointRecord): BlockRecord {
    const owner = blk.ownerOf(rec, net, ip);
    if (!owner) throw new BadRequestError(`address ${formatIP(ip)} was not allocated by calico-ipam: create the network with --ipam-driver calico-ipam`);
    if (owner.kind === 'endpoint' && owner.endpoint !== ep.id) throw new ConflictError(`address ${formatIP(ip)} is already in use by ${describeOwner(owner)}`);
    return blk.setOwner(rec, net, ip, {
      kind: 'endpoint',
      host: owner.host,
      pool: owner.pool,
      handle: owner.handle,
      since: owner.since,
      ...(owner.name !== undefined ? { name: owner.name } : {}),
      network: ep.network,
      endpoint: ep.id,
    });
  }

  /**
   * Whether attachEndpoint can only fail by the datastore failing: every address sits in a
   * cached block, was handed out by this host, and no other endpoint holds it, and the block's
   * last write went through. Reads nothing from etcd.
   */
  async attachable(ips: IP[], ep: EndpointRecord): Promise<boolean> {
    for (const ip of ips) {
      const b = await this.blockOf(ip);
      const c = b && this.writer.cached(b.cidr);
      if (!b || !c || !this.writer.healthy(b.cidr)) return false;
      const owner = blk.ownerOf(c.rec, c.net, ip);
      if (!owner || owner.host !== this.host) return false;
      if (owner.kind === 'aux' || (owner.kind === 'endpoint' && owner.endpoint !== ep.id)) return false;
    }
    return ips.length > 0;
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
    const put: Op = { put: endpointKey, value: codecs.endpoint.encode(ep) };
    if (cidrs.length === 1) {
      // The common case: one block, so the write joins that block's group commit.
      let stale = true;
      for (let attempt = 0; attempt < 2 && stale; attempt++) {
        stale = false;
        await this.writer
          .change<void>(cidrs[0], (c) => {
            if (!c)
              throw new BadRequestError(
                `address ${formatIP(located[0].ip)} was not allocated by calico-ipam: create the network with --ipam-driver calico-ipam`,
              );
            let rec = c.rec;
            for (const l of located) rec = this.claimOwner(rec, c.net, l.ip, ep);
            return { write: rec, ops: [put], result: undefined };
          })
          .catch(async (err) => {
            if (attempt > 0) throw err;
            stale = true; // the cached block may predate another host's write: read and try once more
            await this.writer.read(cidrs[0]);
          });
      }
      return;
    }
    // Several blocks (dual stack): one transaction over all of them, guarded by each.
    let next = new Map<string, BlockRecord>();
    await transact(
      this.kv,
      async () => {
        const current = new Map<string, NonNullable<ReturnType<BlockWriter['cached']>>>();
        for (const cidr of cidrs) {
          const c = await this.writer.read(cidr);
          if (c) current.set(cidr, c);
        }
        next = new Map<string, BlockRecord>();
        for (const l of located) {
          const c = current.get(l.cidr);
          if (!c) throw new BadRequestError(`address ${formatIP(l.ip)} was not allocated by calico-ipam: create the network with --ipam-driver calico-ipam`);
          next.set(l.cidr, this.claimOwner(next.get(l.cidr) ?? c.rec, c.net, l.ip, ep));
        }
        return {
          compares: cidrs.map((cidr) => ({ key: keys.block(cidr), mod: current.get(cidr)!.mod })),
          ops: [...[...next].map(([cidr, rec]) => ({ put: keys.block(cidr), value: codecs.block.encode(rec) })), put],
          result: undefined,
        };
      },
      { what: `the address blocks of endpoint ${ep.id.slice(0, 12)}`, onCommit: (rev) => next.forEach((rec, cidr) => this.writer.remember(cidr, rec, rev)) },
    );
  }
}
