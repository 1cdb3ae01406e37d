/**
 * Group commit for block documents. Changes to one block are queued; while a transaction is in
 * flight, new changes wait, and the next transaction applies all of them at once. With eight
 * containers starting together on a host that is one etcd write instead of eight serialised
 * ones. A lost compare-and-swap (another host wrote the block) re-reads and re-applies the
 * whole batch; each change is a pure function of the block, so re-applying is safe.
 */
import { codecs } from '../lib/datastore/codec';
import type { KV, KVEntry, Op } from '../lib/datastore/kv';
import { keys } from '../lib/datastore/keys';
import type { BlockRecord } from '../lib/datastore/records';
import { transact } from '../lib/datastore/transact';
import { type Cidr, parseCidr } from '../lib/ip';

export interface CachedBlock {
  rec: BlockRecord;
  mod: string;
  net: Cidr;
  /** When this copy was read from etcd or written there (Date.now()); unset for copies being decided. */
  at?: number;
}

/** One change: return the new record (null deletes it) with extra ops, or `done` to write nothing. */
export type BlockChange<T> = (c: CachedBlock | undefined) => { write: BlockRecord | null; ops?: Op[]; result: T } | { done: T };

interface Pending {
  change: BlockChange<unknown>;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
}

export class BlockWriter {
  private cache = new Map<string, CachedBlock>();
  private queues = new Map<string, Pending[]>();
  /** Blocks whose last transaction failed (etcd down, a deadline): callers stop guessing ahead. */
  private failing = new Set<string>();

  constructor(private kv: KV) {}

  cached(cidr: string): CachedBlock | undefined {
    return this.cache.get(cidr);
  }

  /** The block's last transaction succeeded (or none was tried yet). */
  healthy(cidr: string): boolean {
    return !this.failing.has(cidr);
  }

  forget(cidr: string): void {
    this.cache.delete(cidr);
  }

  remember(cidr: string, rec: BlockRecord, mod: string): void {
    this.cache.set(cidr, { rec, mod, net: this.netOf(rec), at: Date.now() });
  }

  /** A block's CIDR never changes, so its parsed form is reused (parsing is most of a small change's cost). */
  private netOf(rec: BlockRecord): Cidr {
    const known = this.cache.get(rec.cidr);
    return known && known.rec.cidr === rec.cidr ? known.net : parseCidr(rec.cidr);
  }

  async read(cidr: string): Promise<CachedBlock | undefined> {
    const e: KVEntry | undefined = await this.kv.get(keys.block(cidr));
    if (!e) {
      this.cache.delete(cidr);
      return undefined;
    }
    const rec = codecs.block.decode(e);
    const c = { rec, mod: e.mod, net: this.netOf(rec), at: Date.now() };
    this.cache.set(cidr, c);
    return c;
  }

  change<T>(cidr: string, change: BlockChange<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const item: Pending = { change: change, resolve: resolve as (v: unknown) => void, reject };
      const q = this.queues.get(cidr);
      if (q) {
        q.push(item);
        return;
      }
      this.queues.set(cidr, [item]);
      void this.drain(cidr);
    });
  }

  private async drain(cidr: string): Promise<void> {
    for (;;) {
      const batch = this.queues.get(cidr)!.splice(0);
      if (batch.length === 0) {
        this.queues.delete(cidr);
        return;
      }
      try {
        await this.commit(cidr, batch);
        this.failing.delete(cidr);
      } catch (err) {
        this.failing.add(cidr);
        for (const p of batch) p.reject(err);
      }
    }
  }

  /** Applies every change of the batch in one compare-and-swap, re-read and re-applied when another host wins. */
  private async commit(cidr: string, batch: Pending[]): Promise<void> {
    const key = keys.block(cidr);
    type Outcome = { ok: true; value: unknown } | { ok: false; err: unknown };
    let written: CachedBlock | undefined;
    const outcomes = await transact<Outcome[]>(
      this.kv,
      async (attempt) => {
        const decide = (start: CachedBlock | undefined) => {
          let cur = start;
          let wrote = false;
          let refusedOrDone = false;
          const ops: Op[] = [];
          const outs: Outcome[] = [];
          for (const p of batch) {
            try {
              const step = p.change(cur);
              if ('done' in step) {
                refusedOrDone = true;
                outs.push({ ok: true, value: step.done });
                continue;
              }
              wrote = true;
              cur = step.write
                ? { rec: step.write, mod: cur?.mod ?? '0', net: cur && cur.rec.cidr === step.write.cidr ? cur.net : parseCidr(step.write.cidr) }
                : undefined;
              ops.push(...(step.ops ?? []));
              outs.push({ ok: true, value: step.result });
            } catch (err) {
              refusedOrDone = true;
              outs.push({ ok: false, err });
            }
          }
          return { start, cur, wrote, refusedOrDone, ops, outs };
        };
        const cached = attempt === 0 ? this.cache.get(cidr) : undefined;
        let d = decide(cached ?? (await this.read(cidr)));
        // A write is checked by its compare-and-swap; a refusal or "nothing to do" is not, so one
        // decided on a cached copy (maybe older than another host's write) is decided again fresh.
        if (cached && (!d.wrote || d.refusedOrDone)) d = decide(await this.read(cidr));
        if (!d.wrote) return { done: d.outs };
        written = d.cur;
        return {
          compares: [d.start ? { key, mod: d.start.mod } : { key, absent: true }],
          ops: [d.cur ? { put: key, value: codecs.block.encode(d.cur.rec) } : { del: key }, ...d.ops],
          result: d.outs,
        };
      },
      {
        what: `block ${cidr}`,
        // The write's revision is the block's new mod revision, so the next change needs no read
        // unless another host wrote the block meanwhile (then the compare fails and we read).
        onCommit: (rev) => (written ? this.remember(cidr, written.rec, rev) : this.cache.delete(cidr)),
      },
    );
    batch.forEach((p, i) => {
      const o = outcomes[i];
      if (o.ok) p.resolve(o.value);
      else p.reject(o.err);
    });
  }
}
