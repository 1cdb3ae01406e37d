/**
 * Records by etcd key, resolved to one record per identity (a policy's or profile's name, a
 * network's host and id). Two keys claiming one identity are settled as the reference does: the
 * smallest JSON text wins. An upsert reports only identities whose winning content changed, so
 * re-upserting an unchanged record costs one JSON.stringify and nothing else.
 */

export interface Held<T> {
  key: string;
  rec: T;
  json: string;
}

export class Registry<T> {
  private readonly byKey = new Map<string, Held<T> & { id: string }>();
  private readonly byId = new Map<string, Map<string, Held<T>>>();
  private readonly winners = new Map<string, Held<T>>();

  constructor(private readonly idOf: (rec: T) => string) {}

  get(id: string): Held<T> | undefined {
    return this.winners.get(id);
  }

  get size(): number {
    return this.byKey.size;
  }

  /** The identities whose record changed. */
  upsert(key: string, rec: T): string[] {
    const json = JSON.stringify(rec);
    const old = this.byKey.get(key);
    if (old && old.json === json) return [];
    const id = this.idOf(rec);
    if (old) this.drop(old.id, key);
    const held = { key, rec, json };
    this.byKey.set(key, { ...held, id });
    let cands = this.byId.get(id);
    if (!cands) this.byId.set(id, (cands = new Map<string, Held<T>>()));
    cands.set(key, held);
    return [id, ...(old && old.id !== id ? [old.id] : [])].filter((x) => this.settle(x));
  }

  remove(key: string): string[] {
    const old = this.byKey.get(key);
    if (!old) return [];
    this.byKey.delete(key);
    this.drop(old.id, key);
    return this.settle(old.id) ? [old.id] : [];
  }

  private drop(id: string, key: string): void {
    const cands = this.byId.get(id)!;
    cands.delete(key);
    if (!cands.size) this.byId.delete(id);
  }

  private settle(id: string): boolean {
    let best: Held<T> | undefined;
    for (const h of this.byId.get(id)?.values() ?? []) if (!best || h.json < best.json || (h.json === best.json && h.key < best.key)) best = h;
    const prev = this.winners.get(id);
    if (!best) {
      this.winners.delete(id);
      return !!prev;
    }
    this.winners.set(id, best);
    return !prev || prev.json !== best.json;
  }
}
