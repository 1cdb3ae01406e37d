/**
 * In-memory KV with etcd's semantics, for unit tests of everything above the seam: one revision
 * counter, a mod revision per key, history kept for watches until compacted, watches that can
 * be dropped or cancelled by compaction, and leases that expire when told to. Tests use the
 * hooks to inject a competing writer, lose every watch, compact, or expire leases.
 */
import type { Compare, KV, KVEntry, Lease, ListOptions, Op, Watch, WatchEvent, WatchListener } from './kv';
import { type LostReason, type WatchSource, listWatch } from './list-watch';
import { silentLogger } from '../log';

interface ActiveWatch {
  prefixes: string[];
  onEvents: (events: WatchEvent[]) => void;
  onLost: (reason: LostReason) => void;
}

export class MemoryKV implements KV {
  private data = new Map<string, { value: string; mod: bigint; lease?: number }>();
  private revision = 0n;
  /** Every event since `compacted`, in revision order. */
  private history: Array<{ rev: bigint; event: WatchEvent }> = [];
  private compacted = 0n;
  private watches = new Set<ActiveWatch>();
  private leases = new Map<number, { keys: Set<string>; lost: Array<(err: Error) => void> }>();
  private nextLease = 1;
  /** Called before each txn; tests use it to inject a competing writer. */
  beforeTxn?: () => void;

  get(key: string): Promise<KVEntry | undefined> {
    const v = this.data.get(key);
    return Promise.resolve(v ? { key, value: v.value, mod: v.mod.toString() } : undefined);
  }

  private entries(prefix: string, keysOnly = false): KVEntry[] {
    return [...this.data.entries()]
      .filter(([k]) => k.startsWith(prefix))
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([key, v]) => ({ key, value: keysOnly ? '' : v.value, mod: v.mod.toString() }));
  }

  list(prefix: string, opts: ListOptions = {}): Promise<KVEntry[]> {
    return Promise.resolve(this.entries(prefix, opts.keysOnly));
  }

  /** The store's current revision (what a write made last). */
  currentRevision(): string {
    return this.revision.toString();
  }

  txn(compares: Compare[], ops: Op[]): Promise<string | undefined> {
    this.beforeTxn?.();
    for (const c of compares) {
      const cur = this.data.get(c.key);
      const holds = 'absent' in c ? cur === undefined : 'present' in c ? cur !== undefined : cur !== undefined && cur.mod.toString() === c.mod;
      if (!holds) return Promise.resolve(undefined);
    }
    return Promise.resolve(this.write(ops).toString());
  }

  private write(ops: Op[], lease?: number): bigint {
    this.revision++;
    const events: WatchEvent[] = [];
    for (const op of ops) {
      if ('put' in op) {
        this.data.set(op.put, { value: op.value, mod: this.revision, ...(lease ? { lease } : {}) });
        if (lease) this.leases.get(lease)?.keys.add(op.put);
        events.push({ type: 'put', entry: { key: op.put, value: op.value, mod: this.revision.toString() } });
      } else if (this.data.delete(op.del)) {
        events.push({ type: 'delete', key: op.del, mod: this.revision.toString() });
      }
    }
    for (const event of events) this.history.push({ rev: this.revision, event });
    // Delivered asynchronously, as etcd's would be: never inside the writer's call.
    for (const w of this.watches) {
      const mine = events.filter((e) => w.prefixes.some((p) => (e.type === 'put' ? e.entry.key : e.key).startsWith(p)));
      if (mine.length) queueMicrotask(() => this.watches.has(w) && w.onEvents(mine));
    }
    return this.revision;
  }

  async put(key: string, value: string): Promise<void> {
    await this.txn([], [{ put: key, value }]);
  }

  async del(key: string): Promise<void> {
    await this.txn([], [{ del: key }]);
  }

  private source: WatchSource = {
    snapshot: (prefixes) => Promise.resolve({ entries: prefixes.flatMap((p) => this.entries(p)), revision: this.revision.toString() }),
    watchFrom: (prefixes, from, onEvents, onLost) => {
      if (from <= this.compacted) return Promise.reject(Object.assign(new Error(`revision ${from} has been compacted`), { compacted: true }));
      const w: ActiveWatch = { prefixes, onEvents, onLost };
      const backlog = this.history.filter(
        (h) => h.rev >= from && prefixes.some((p) => (h.event.type === 'put' ? h.event.entry.key : h.event.key).startsWith(p)),
      );
      this.watches.add(w);
      if (backlog.length) queueMicrotask(() => this.watches.has(w) && onEvents(backlog.map((h) => h.event)));
      return Promise.resolve(() => {
        this.watches.delete(w);
        return Promise.resolve();
      });
    },
  };

  watch(prefixes: string[], listener: WatchListener): Watch {
    return listWatch(this.source, prefixes, listener, silentLogger(), { retryMs: 1, maxRetryMs: 5 });
  }

  /** Test hook: every watch is lost as if the connection to etcd dropped. */
  dropWatches(): void {
    const all = [...this.watches];
    this.watches.clear();
    for (const w of all) w.onLost('disconnected');
  }

  /** Test hook: history up to `rev` (default: now) is gone; watches behind it are cancelled. */
  compact(rev: bigint = this.revision): void {
    this.compacted = rev;
    this.history = this.history.filter((h) => h.rev > rev);
    const all = [...this.watches];
    this.watches.clear();
    for (const w of all) w.onLost('compacted');
  }

  lease(_ttlSeconds: number): Promise<Lease> {
    const id = this.nextLease++;
    const state = { keys: new Set<string>(), lost: [] as Array<(err: Error) => void> };
    this.leases.set(id, state);
    const gone = () => {
      if (!this.leases.delete(id)) return false;
      const dels = [...state.keys].filter((k) => this.data.get(k)?.lease === id).map((k) => ({ del: k }));
      if (dels.length) this.write(dels);
      return true;
    };
    return Promise.resolve({
      put: (key: string, value: string) => {
        if (!this.leases.has(id)) return Promise.reject(new Error(`lease ${id} not found`));
        this.write([{ put: key, value }], id);
        return Promise.resolve();
      },
      revoke: () => {
        gone();
        return Promise.resolve();
      },
      onLost: (fn: (err: Error) => void) => void state.lost.push(fn),
    });
  }

  /** Test hook: every lease expires now (as after an outage longer than its TTL). */
  expireLeases(): void {
    for (const [id, state] of [...this.leases]) {
      this.leases.delete(id);
      const dels = [...state.keys].filter((k) => this.data.get(k)?.lease === id).map((k) => ({ del: k }));
      if (dels.length) this.write(dels);
      for (const fn of state.lost) fn(new Error(`lease ${id} expired`));
    }
  }

  /** Watches just stop (their owners cancel them first); nothing is retried against a closed store. */
  close(): Promise<void> {
    this.watches.clear();
    return Promise.resolve();
  }
}
