/**
 * This host's liveness: a key on an etcd lease, kept apart from IPAM and endpoint data so a
 * network blip can expire "alive" but never an address or an endpoint. A lost lease (etcd down
 * longer than the TTL) is replaced and the key put again, supervised (bounded, jittered).
 */
import { codecs } from '../lib/datastore/codec';
import type { KV, Lease } from '../lib/datastore/kv';
import { keys } from '../lib/datastore/keys';
import { errorMessage } from '../lib/errors';
import type { Logger } from '../lib/log';
import { Supervisor } from '../lib/supervise';

export class Liveness {
  private lease?: Lease;
  private supervisor: Supervisor;
  private held = false;

  constructor(
    private kv: KV,
    private host: string,
    private ttlSeconds: number,
    private log: Logger,
  ) {
    this.supervisor = new Supervisor('holding the liveness key', log, { baseMs: 500, maxMs: 10_000 });
  }

  start(): void {
    void this.supervisor.run(async () => {
      const lease = await this.kv.lease(this.ttlSeconds);
      if (this.supervisor.stopping) {
        await lease.revoke();
        return 'done';
      }
      lease.onLost((err) => {
        if (this.supervisor.stopping || this.lease !== lease) return;
        this.log.warn('liveness lease lost; renewing', { error: errorMessage(err) });
        this.start();
      });
      this.lease = lease;
      await lease.put(keys.alive(this.host), codecs.alive.encode({ since: new Date().toISOString() }));
      if (!this.held) this.log.info('liveness key held', { ttlSeconds: this.ttlSeconds });
      this.held = true;
      return 'done';
    });
  }

  /** On a clean stop the key goes at once, so peers see the host gone without waiting for the TTL. */
  async stop(): Promise<void> {
    this.supervisor.stop();
    const lease = this.lease;
    this.lease = undefined;
    await lease?.revoke().catch(() => undefined);
  }
}
