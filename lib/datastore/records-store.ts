/**
 * Networks and endpoints of this host, cached in memory: Join and Leave must not wait on etcd
 * when the record was written by this process a moment earlier. Only this host's calico node
 * writes its endpoints, so once they were listed (at start-up) the cache holds all of them and
 * answers "which endpoint owns interface caliX" without a read.
 */
import { KeyedMutex } from '../retry';
import { codecs } from './codec';
import type { KV } from './kv';
import { keys } from './keys';
import type { EndpointRecord, NetworkRecord } from './records';

/** A corrupt record must not stop the listing of every other one: it is left out here (the policy agent, which watches the same keys, logs it). */
const skip = () => undefined;

export class Records {
  private networks = new Map<string, NetworkRecord>();
  private endpoints = new Map<string, EndpointRecord>();
  /** Host interface name to the IDs of the cached endpoints that use it (one, unless corrupt). */
  private byIfName = new Map<string, Set<string>>();
  /** Endpoint records answered to Docker before their etcd write finished (see written()). */
  private writes = new Map<string, Promise<void>>();
  /** Every endpoint of this host is cached (listed once, and kept since). */
  private complete = false;
  /** Endpoints deleted while a listing was in flight, so its (older) result cannot bring them back. */
  private deletedAt = new Map<string, number>();
  private seq = 0;
  private listings = 0;
  /** Read-modify-writes of one endpoint, one at a time (see modifyEndpoint). */
  private modifying = new KeyedMutex();

  constructor(
    private kv: KV,
    readonly host: string,
  ) {}

  async getNetwork(id: string): Promise<NetworkRecord | undefined> {
    const hit = this.networks.get(id);
    if (hit) return hit;
    const e = await this.kv.get(keys.network(this.host, id));
    if (!e) return undefined;
    const rec = codecs.network.decode(e);
    this.networks.set(id, rec);
    return rec;
  }

  async putNetwork(rec: NetworkRecord): Promise<void> {
    await this.kv.put(keys.network(this.host, rec.id), codecs.network.encode(rec));
    this.networks.set(rec.id, rec);
  }

  /** Updates a network that still exists (present-guarded, like updateEndpoint). */
  async updateNetwork(rec: NetworkRecord): Promise<boolean> {
    const key = keys.network(this.host, rec.id);
    const ok = await this.kv.txn([{ key, present: true }], [{ put: key, value: codecs.network.encode(rec) }]);
    if (ok) this.networks.set(rec.id, rec);
    return ok !== undefined;
  }

  async deleteNetwork(id: string): Promise<void> {
    await this.kv.del(keys.network(this.host, id));
    this.networks.delete(id);
  }

  async listNetworks(host?: string): Promise<NetworkRecord[]> {
    return codecs.network.decodeAll(await this.kv.list(keys.networks(host)), skip);
  }

  endpointKey(id: string): string {
    return keys.endpoint(this.host, id);
  }

  async getEndpoint(id: string): Promise<EndpointRecord | undefined> {
    const hit = this.endpoints.get(id);
    if (hit) return hit;
    const e = await this.kv.get(this.endpointKey(id));
    if (!e) return undefined;
    const rec = codecs.endpoint.decode(e);
    this.cache(rec);
    return rec;
  }

  private cache(rec: EndpointRecord): void {
    const old = this.endpoints.get(rec.id);
    if (old && old.ifName !== rec.ifName) this.byIfName.get(old.ifName)?.delete(rec.id);
    this.endpoints.set(rec.id, rec);
    const ids = this.byIfName.get(rec.ifName) ?? new Set<string>();
    ids.add(rec.id);
    this.byIfName.set(rec.ifName, ids);
  }

  private uncache(id: string): void {
    const old = this.endpoints.get(id);
    if (!old) return;
    this.endpoints.delete(id);
    const ids = this.byIfName.get(old.ifName);
    ids?.delete(id);
    if (ids && ids.size === 0) this.byIfName.delete(old.ifName);
  }

  /**
   * The endpoints of this host whose host interface is `ifName` (by record, not by kernel):
   * before anything deletes or routes through a `cali` interface, its owner is asked here.
   * Reads etcd only until this host's endpoints were listed once.
   */
  async endpointsUsing(ifName: string): Promise<EndpointRecord[]> {
    if (!this.complete) await this.listEndpoints(this.host);
    return [...(this.byIfName.get(ifName) ?? [])].flatMap((id) => this.endpoints.get(id) ?? []);
  }

  cachedEndpoint(id: string): EndpointRecord | undefined {
    return this.endpoints.get(id);
  }

  /**
   * Updates an endpoint that still exists; returns false (writing nothing) once it is deleted,
   * so a late update can never bring back an endpoint DeleteEndpoint removed.
   */
  async updateEndpoint(rec: EndpointRecord): Promise<boolean> {
    const key = this.endpointKey(rec.id);
    const ok = await this.kv.txn([{ key, present: true }], [{ put: key, value: codecs.endpoint.encode(rec) }]);
    if (ok) this.cache(rec);
    return ok !== undefined;
  }

  /**
   * Changes one endpoint's record from its latest version: `change` returns the new record, or
   * undefined for "nothing to change" (no write). Modifications of one endpoint run one at a
   * time, so Join's sandbox, Docker's names and published ports, written close together, never
   * undo each other. Answers the record as it is afterwards, or undefined once it is deleted.
   */
  modifyEndpoint(id: string, change: (rec: EndpointRecord) => EndpointRecord | undefined): Promise<EndpointRecord | undefined> {
    return this.modifying.run(id, async () => {
      const rec = await this.getEndpoint(id);
      if (!rec) return undefined;
      const next = change(rec);
      if (!next) return rec;
      return (await this.updateEndpoint(next)) ? next : undefined;
    });
  }

  /** Every endpoint of this host, from memory once they were listed. */
  async hostEndpoints(): Promise<EndpointRecord[]> {
    if (!this.complete) await this.listEndpoints(this.host);
    return [...this.endpoints.values()];
  }

  /** Called after the allocator's transaction wrote the record. */
  rememberEndpoint(rec: EndpointRecord): void {
    this.cache(rec);
  }

  /**
   * Remembers an endpoint whose transaction is still in flight. A failed write forgets it, so
   * the Join that follows reads etcd, finds nothing and fails, and Docker rolls back.
   */
  rememberWriting(rec: EndpointRecord, write: Promise<void>): void {
    this.cache(rec);
    const tracked: Promise<void> = write
      .catch((err: unknown) => {
        if (this.endpoints.get(rec.id) === rec) this.uncache(rec.id);
        throw err;
      })
      .finally(() => {
        if (this.writes.get(rec.id) === tracked) this.writes.delete(rec.id);
      });
    // The failure is reported by written() to the Join that needs it, not as an unhandled one.
    tracked.catch(() => undefined);
    this.writes.set(rec.id, tracked);
  }

  /** Endpoints answered to Docker whose record is still being written (not yet listable in etcd). */
  writingEndpoints(): EndpointRecord[] {
    return [...this.writes.keys()].flatMap((id) => this.endpoints.get(id) ?? []);
  }

  /** Settles once the endpoint's record is in etcd; rejects with the write's error if it failed. */
  async written(id: string): Promise<void> {
    await this.writes.get(id);
  }

  async deleteEndpoint(id: string): Promise<void> {
    await this.kv.del(this.endpointKey(id));
    this.uncache(id);
    if (this.listings > 0) this.deletedAt.set(id, ++this.seq);
  }

  /** Listing this host's endpoints also fills the cache with any it lacks (never older ones). */
  async listEndpoints(host?: string): Promise<EndpointRecord[]> {
    const mine = host === this.host;
    const start = this.seq;
    if (mine) this.listings++;
    try {
      const recs = codecs.endpoint.decodeAll(await this.kv.list(keys.endpoints(host)), skip);
      if (mine) {
        for (const r of recs) {
          const deleted = this.deletedAt.get(r.id);
          if (!this.endpoints.has(r.id) && !(deleted !== undefined && deleted > start)) this.cache(r);
        }
        this.complete = true;
      }
      return recs;
    } finally {
      if (mine && --this.listings === 0) this.deletedAt.clear();
    }
  }
}
