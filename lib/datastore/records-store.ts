/**
 * Networks and endpoints of this host, cached in memory: Join and Leave must not wait on etcd
 * when the record was written by this process a moment earlier.
 */
import type { KV } from './kv';
import { keys } from './keys';
import type { EndpointRecord, NetworkRecord } from './records';

export class Records {
  private networks = new Map<string, NetworkRecord>();
  private endpoints = new Map<string, EndpointRecord>();
  /** Endpoint records answered to Docker before their etcd write finished (see written()). */
  private writes = new Map<string, Promise<void>>();

  constructor(
    private kv: KV,
    readonly host: string,
  ) {}

  async getNetwork(id: string): Promise<NetworkRecord | undefined> {
    const hit = this.networks.get(id);
    if (hit) return hit;
    const e = await this.kv.get(keys.network(this.host, id));
    if (!e) return undefined;
    const rec = JSON.parse(e.value) as NetworkRecord;
    this.networks.set(id, rec);
    return rec;
  }

  async putNetwork(rec: NetworkRecord): Promise<void> {
    await this.kv.put(keys.network(this.host, rec.id), JSON.stringify(rec));
    this.networks.set(rec.id, rec);
  }

  /** Updates a network that still exists (present-guarded, like updateEndpoint). */
  async updateNetwork(rec: NetworkRecord): Promise<boolean> {
    const key = keys.network(this.host, rec.id);
    const ok = await this.kv.txn([{ key, present: true }], [{ put: key, value: JSON.stringify(rec) }]);
    if (ok) this.networks.set(rec.id, rec);
    return ok !== undefined;
  }

  async deleteNetwork(id: string): Promise<void> {
    await this.kv.del(keys.network(this.host, id));
    this.networks.delete(id);
  }

  async listNetworks(host?: string): Promise<NetworkRecord[]> {
    return (await this.kv.list(keys.networks(host))).map((e) => JSON.parse(e.value) as NetworkRecord);
  }

  endpointKey(id: string): string {
    return keys.endpoint(this.host, id);
  }

  async getEndpoint(id: string): Promise<EndpointRecord | undefined> {
    const hit = this.endpoints.get(id);
    if (hit) return hit;
    const e = await this.kv.get(this.endpointKey(id));
    if (!e) return undefined;
    const rec = JSON.parse(e.value) as EndpointRecord;
    this.endpoints.set(id, rec);
    return rec;
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
    const ok = await this.kv.txn([{ key, present: true }], [{ put: key, value: JSON.stringify(rec) }]);
    if (ok) this.endpoints.set(rec.id, rec);
    return ok !== undefined;
  }

  /** Called after the allocator's transaction wrote the record. */
  rememberEndpoint(rec: EndpointRecord): void {
    this.endpoints.set(rec.id, rec);
  }

  /**
   * Remembers an endpoint whose transaction is still in flight. A failed write forgets it, so
   * the Join that follows reads etcd, finds nothing and fails, and Docker rolls back.
   */
  rememberWriting(rec: EndpointRecord, write: Promise<void>): void {
    this.endpoints.set(rec.id, rec);
    const tracked: Promise<void> = write
      .catch((err: unknown) => {
        if (this.endpoints.get(rec.id) === rec) this.endpoints.delete(rec.id);
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
    this.endpoints.delete(id);
  }

  async listEndpoints(host?: string): Promise<EndpointRecord[]> {
    return (await this.kv.list(keys.endpoints(host))).map((e) => JSON.parse(e.value) as EndpointRecord);
  }
}
