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

  async deleteEndpoint(id: string): Promise<void> {
    await this.kv.del(this.endpointKey(id));
    this.endpoints.delete(id);
  }

  async listEndpoints(host?: string): Promise<EndpointRecord[]> {
    return (await this.kv.list(keys.endpoints(host))).map((e) => JSON.parse(e.value) as EndpointRecord);
  }
}
