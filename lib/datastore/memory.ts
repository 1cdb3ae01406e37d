/** In-memory KV with etcd's revision semantics, for unit tests of pure logic. */
import type { Compare, KV, KVEntry, Op } from './kv';

export class MemoryKV implements KV {
  private data = new Map<string, { value: string; mod: bigint }>();
  private revision = 0n;
  /** Called before each txn; tests use it to inject a competing writer. */
  beforeTxn?: () => void;

  get(key: string): Promise<KVEntry | undefined> {
    const v = this.data.get(key);
    return Promise.resolve(v ? { key, value: v.value, mod: v.mod.toString() } : undefined);
  }

  list(prefix: string): Promise<KVEntry[]> {
    return Promise.resolve(
      [...this.data.entries()]
        .filter(([k]) => k.startsWith(prefix))
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
        .map(([key, v]) => ({ key, value: v.value, mod: v.mod.toString() })),
    );
  }

  txn(compares: Compare[], ops: Op[]): Promise<string | undefined> {
    this.beforeTxn?.();
    for (const c of compares) {
      const cur = this.data.get(c.key);
      const holds = 'absent' in c ? cur === undefined : 'present' in c ? cur !== undefined : cur !== undefined && cur.mod.toString() === c.mod;
      if (!holds) return Promise.resolve(undefined);
    }
    this.revision++;
    for (const op of ops) {
      if ('put' in op) this.data.set(op.put, { value: op.value, mod: this.revision });
      else this.data.delete(op.del);
    }
    return Promise.resolve(this.revision.toString());
  }

  async put(key: string, value: string): Promise<void> {
    await this.txn([], [{ put: key, value }]);
  }

  async del(key: string): Promise<void> {
    await this.txn([], [{ del: key }]);
  }

  async close(): Promise<void> {}
}
