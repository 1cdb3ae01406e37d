/**
 * The outgoing-NAT agent inside `calico node`: list-watches the pools in etcd and keeps the
 * kernel's masquerade rules (nat/rules.ts) in line with their natOutgoing settings, so
 * `calico pool set --nat-outgoing` takes effect on every host within a debounce. Independent of
 * CALICO_POLICY: a host without our firewall still needs its containers to reach the outside.
 * The periodic pass checks the kernel and rewrites what someone edited or flushed.
 */
import type { NodeContext } from '../agent/context';
import { ApplyLoop } from '../lib/apply-loop';
import { codecs } from '../lib/datastore/codec';
import type { Watch } from '../lib/datastore/kv';
import { keys } from '../lib/datastore/keys';
import { WatchedEntries } from '../lib/datastore/watched';
import { errorMessage } from '../lib/errors';
import type { NatBackend } from './backends';
import { natPlan } from './rules';

export interface NatAgentOptions {
  debounceMs: number;
  resyncMs: number;
}

export class NatAgent {
  private watch?: Watch;
  private state: WatchedEntries;
  private loop: ApplyLoop;
  private resync?: NodeJS.Timeout;
  private applied?: string;

  constructor(
    private ctx: Pick<NodeContext, 'kv' | 'log'>,
    readonly backend: NatBackend,
    /** The backend not in use: its rules go at start, so a switch never translates twice. */
    private other: NatBackend,
    private opts: NatAgentOptions = { debounceMs: 100, resyncMs: 30_000 },
  ) {
    this.state = new WatchedEntries(() => this.loop.schedule());
    this.loop = new ApplyLoop(() => this.apply(), ctx.log, { debounceMs: opts.debounceMs, retryMs: 1000, retryCapMs: 30_000, what: 'the outgoing NAT rules' });
  }

  async start(): Promise<void> {
    await this.other.remove().catch((err) => {
      // A backend whose tools are missing has nothing in the kernel to remove.
      this.ctx.log.debug('could not remove the outgoing NAT rules of the backend not in use', { backend: this.other.name, error: errorMessage(err) });
    });
    this.watch = this.ctx.kv.watch([keys.pools()], this.state);
    await this.watch.ready;
    this.resync = setInterval(() => this.loop.schedule(), this.opts.resyncMs);
    await this.loop.runNow();
  }

  private async apply(): Promise<void> {
    const { log } = this.ctx;
    const pools = codecs.pool.decodeAll(this.state.under(keys.pools()), (key, err) =>
      log.warn('skipped an unreadable pool record', { key, error: err.message }),
    );
    const plan = natPlan(pools);
    const text = JSON.stringify(plan);
    if (text === this.applied) {
      if (await this.backend.intact()) return;
      log.warn('the outgoing NAT rules were changed outside calico node; rewriting them', { backend: this.backend.name });
    }
    await this.backend.apply(plan);
    const changed = text !== this.applied;
    this.applied = text;
    if (changed) log.info('outgoing NAT rules applied', { backend: this.backend.name, natPools: [...plan.nat[4], ...plan.nat[6]] });
  }

  async stop(): Promise<void> {
    this.loop.stop();
    clearInterval(this.resync);
    await this.watch?.cancel();
  }
}
