/**
 * The storage seam everything persistent goes through (host-local's backend.Store, in etcd's
 * terms). Keys are relative to the project's versioned prefix. Multi-key changes are made atomic
 * with `txn`, so no pending/confirmed dance is ever needed. Two implementations: etcd (etcd.ts)
 * and an in-memory store with etcd's revision, watch, compaction and lease semantics
 * (memory.ts), so every consumer can be unit-tested without an etcd. No etcd3 type crosses it.
 */

export interface KVEntry {
  key: string;
  value: string;
  /** Modification revision, a decimal string (etcd int64s do not fit a JS number). */
  mod: string;
}

/** A guard in a transaction: the key is at exactly this revision, does not exist, or exists. */
export type Compare = { key: string; mod: string } | { key: string; absent: true } | { key: string; present: true };

export type Op = { put: string; value: string } | { del: string };

export type WatchEvent = { type: 'put'; entry: KVEntry } | { type: 'delete'; key: string; mod: string };

/**
 * What a watch tells its owner. `reset` gives the whole state of the watched prefixes at one
 * revision: first at the start, and again whenever the watch was lost (a disconnection, a
 * compaction, a member failing) and had to list again, so the owner replaces rather than
 * patches. `changes` gives what happened after the last reset, in revision order per prefix.
 */
export interface WatchListener {
  reset(entries: KVEntry[], revision: string): void;
  changes(events: WatchEvent[]): void;
}

export interface Watch {
  /** Resolves once the first reset was delivered. */
  readonly ready: Promise<void>;
  cancel(): Promise<void>;
}

/** A lease held with automatic keep-alives. Keys put through it vanish when it ends. */
export interface Lease {
  put(key: string, value: string): Promise<void>;
  /** Ends it now, deleting its keys. */
  revoke(): Promise<void>;
  /** Called once if the store says the lease is gone (expired while unreachable, revoked). */
  onLost(fn: (err: Error) => void): void;
}

export interface ListOptions {
  /** Only keys, with empty values: for listings that need names, not records. */
  keysOnly?: boolean;
}

export interface KV {
  get(key: string): Promise<KVEntry | undefined>;
  /**
   * Every key that starts with `prefix`, sorted by key, at one revision. Read in pages, so no
   * single response grows with the prefix (gRPC refuses messages over 4 MB).
   */
  list(prefix: string, opts?: ListOptions): Promise<KVEntry[]>;
  /**
   * Applies every op if every compare holds. Returns the store revision the write produced
   * (the new mod revision of every key it put), or undefined when a compare failed.
   * May be sent again after an ambiguous failure (a member died mid-call): every caller guards
   * its writes with compares or writes idempotent values, so a replay is harmless.
   */
  txn(compares: Compare[], ops: Op[]): Promise<string | undefined>;
  put(key: string, value: string): Promise<void>;
  /** Deleting a missing key is success. */
  del(key: string): Promise<void>;
  /** List-then-watch of several prefixes; see WatchListener. */
  watch(prefixes: string[], listener: WatchListener): Watch;
  lease(ttlSeconds: number): Promise<Lease>;
  close(): Promise<void>;
}
