/**
 * This host's liveness: a key on an etcd lease, kept apart from IPAM and endpoint data so a
 * network blip can expire "alive" but never an address or an endpoint. A lost lease (etcd down
 * longer than the TTL) is replaced and the key put again, with bounded, jittered retries.
 */
import type { Lease, Namespace } from 'etcd3';
import { keys } from '../lib/datastore/keys';
import { errorMessage } from '../lib/errors';
import type { Logger } from '../lib/log';
import { jitteredDelay, sleep } from '../lib/retry';

export class Liveness {
  private lease?: Lease;
  private stopped = false;
  private started = false;

  constructor(
    private ns: Namespace,
    private host: string,
    private ttlSeconds: number,
    private log: Logger,
  ) {}

  start(): void {
    void this.keepAlive(0);
  }

  private async keepAlive(failures: number): Promise<void> {
    if (this.stopped) return;
    try {
      const lease = this.ns.lease(this.ttlSeconds, { autoKeepAlive: true });
      lease.on('lost', (err) => {
        if (this.stopped || this.lease !== lease) return;
        this.log.warn('liveness lease lost; renewing', { error: errorMessage(err) });
        void this.keepAlive(0);
      });
      this.lease = lease;
      await lease
        .put(keys.alive(this.host))
        .value(JSON.stringify({ since: new Date().toISOString() }))
        .exec();
      if (failures > 0 || !this.started) this.log.info('liveness key held', { ttlSeconds: this.ttlSeconds });
      this.started = true;
    } catch (err) {
      if (this.stopped) return;
      this.log.debug('could not hold the liveness key; retrying', { error: errorMessage(err) });
      await sleep(500 + jitteredDelay(failures, 500, 10_000));
      return this.keepAlive(failures + 1);
    }
  }

  /** On a clean stop the key goes at once, so peers see the host gone without waiting for the TTL. */
  async stop(): Promise<void> {
    this.stopped = true;
    const lease = this.lease;
    this.lease = undefined;
    await lease?.revoke().catch(() => undefined);
  }
}
