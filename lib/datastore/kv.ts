/**
 * The tiny storage seam everything persistent goes through (host-local's backend.Store, in
 * etcd's terms). Keys are relative to the project's versioned prefix. Multi-key changes are
 * made atomic with `txn`, so no pending/confirmed dance is ever needed.
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

export interface KV {
  get(key: string): Promise<KVEntry | undefined>;
  /** Every key that starts with `prefix`, sorted by key. */
  list(prefix: string): Promise<KVEntry[]>;
  /**
   * Applies every op if every compare holds. Returns the store revision the write produced
   * (the new mod revision of every key it put), or undefined when a compare failed.
   */
  txn(compares: Compare[], ops: Op[]): Promise<string | undefined>;
  put(key: string, value: string): Promise<void>;
  /** Deleting a missing key is success. */
  del(key: string): Promise<void>;
  close(): Promise<void>;
}

export function parseJSON<T>(e: KVEntry | undefined): T | undefined {
  return e ? (JSON.parse(e.value) as T) : undefined;
}
