/**
 * A watch kept as a map: the current entries of some prefixes, replaced on every reset and
 * patched by every change. For agents that render from the whole state (the route agent), so a
 * change costs a render from memory, not a listing.
 */
import type { KVEntry, WatchEvent, WatchListener } from './kv';

export class WatchedEntries implements WatchListener {
  private entries = new Map<string, KVEntry>();

  constructor(private onChange: () => void) {}

  reset(entries: KVEntry[]): void {
    this.entries = new Map(entries.map((e) => [e.key, e]));
    this.onChange();
  }

  changes(events: WatchEvent[]): void {
    for (const ev of events) {
      if (ev.type === 'put') this.entries.set(ev.entry.key, ev.entry);
      else this.entries.delete(ev.key);
    }
    this.onChange();
  }

  get(key: string): KVEntry | undefined {
    return this.entries.get(key);
  }

  /** Entries under `prefix`, sorted by key. */
  under(prefix: string): KVEntry[] {
    return [...this.entries.values()].filter((e) => e.key.startsWith(prefix)).sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }
}
