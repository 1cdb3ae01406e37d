/**
 * Watches key prefixes in etcd for an agent that re-lists everything it needs on each change
 * (list-then-render, like Calico's syncers). A reconnect may have skipped events and an error
 * (compaction) ends a watch, so both only trigger another re-list; watches that fail are made
 * again. Callers also re-list periodically, so a lost watch can never leave them stale.
 */
import type { Namespace, Watcher } from 'etcd3';
import { errorMessage } from '../errors';
import type { Logger } from '../log';

export class PrefixWatch {
  private watchers: Watcher[] = [];
  private stopped = false;

  constructor(
    private ns: Namespace,
    private prefixes: string[],
    private onChange: () => void,
    private log: Logger,
  ) {}

  async start(): Promise<void> {
    for (const p of this.prefixes) {
      const w = await this.ns.watch().prefix(p).create();
      w.on('put', () => this.onChange());
      w.on('delete', () => this.onChange());
      w.on('connected', () => this.onChange());
      w.on('error', (err) => {
        this.log.warn('etcd watch failed; re-listing and watching again', { prefix: p, error: errorMessage(err) });
        void this.restart();
      });
      this.watchers.push(w);
    }
  }

  private async restart(): Promise<void> {
    await Promise.all(this.watchers.splice(0).map((w) => w.cancel().catch(() => undefined)));
    if (this.stopped) return;
    try {
      await this.start();
    } catch (err) {
      this.log.warn('could not watch etcd; the periodic re-list keeps this agent current', { error: errorMessage(err) });
    }
    this.onChange();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.watchers.splice(0).map((w) => w.cancel().catch(() => undefined)));
  }
}
