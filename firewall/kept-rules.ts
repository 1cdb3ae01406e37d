/**
 * Rules of ours beside the firewall that are rewritten whole from one etcd prefix: outgoing NAT
 * (nat/, from the pools) and published ports (ports/, from this host's endpoints). One
 * list-watch; each change re-plans, and an unchanged plan only checks that the kernel still holds
 * it (the periodic pass), rewriting what someone edited or flushed. The backend not in use loses
 * its rules at start, so a switch of CALICO_FIREWALL never translates twice.
 */
import type { NodeContext } from '../agent/context';
import { ApplyLoop } from '../lib/apply-loop';
import type { Watch } from '../lib/datastore/kv';
import { WatchedEntries } from '../lib/datastore/watched';
import { errorMessage } from '../lib/errors';

export interface RulesBackend<Plan> {
  readonly name: 'nftables' | 'iptables';
  apply(plan: Plan): Promise<void>;
  /** Whether the kernel still holds what the last apply wrote (false before any apply). */
  intact(): Promise<boolean>;
  /** Removes every rule of ours; nothing there is success. */
  remove(): Promise<void>;
}

export interface KeptRulesSpec<Plan> {
  /** How logs name the rules: "the outgoing NAT rules". */
  what: string;
  /** The etcd prefix the plan is made from. */
  prefix: string;
  plan(state: WatchedEntries): Plan;
  /** After each apply; `changed` false when it only repaired the kernel. */
  applied(plan: Plan, changed: boolean): void;
}

export interface KeptRulesOptions {
  debounceMs: number;
  resyncMs: number;
  retryMs: number;
}

export class KeptRules<Plan> {
  private watch?: Watch;
  private state: WatchedEntries;
  private loop: ApplyLoop;
  private resync?: NodeJS.Timeout;
  private applied?: string;

  constructor(
    private ctx: Pick<NodeContext, 'kv' | 'log'>,
    readonly backend: RulesBackend<Plan>,
    private other: RulesBackend<Plan>,
    private spec: KeptRulesSpec<Plan>,
    private opts: KeptRulesOptions,
  ) {
    this.state = new WatchedEntries(() => this.loop.schedule());
    this.loop = new ApplyLoop(() => this.apply(), ctx.log, { debounceMs: opts.debounceMs, retryMs: opts.retryMs, retryCapMs: 30_000, what: spec.what });
  }

  async start(): Promise<void> {
    await this.other.remove().catch((err) => {
      // A backend whose tools are missing has nothing in the kernel to remove.
      this.ctx.log.debug(`could not remove ${this.spec.what} of the backend not in use`, { backend: this.other.name, error: errorMessage(err) });
    });
    this.watch = this.ctx.kv.watch([this.spec.prefix], this.state);
    await this.watch.ready;
    this.resync = setInterval(() => this.loop.schedule(), this.opts.resyncMs);
    await this.loop.runNow();
  }

  private async apply(): Promise<void> {
    const plan = this.spec.plan(this.state);
    const text = JSON.stringify(plan);
    if (text === this.applied) {
      if (await this.backend.intact()) return;
      this.ctx.log.warn(`${this.spec.what} were changed outside calico node; rewriting them`, { backend: this.backend.name });
    }
    await this.backend.apply(plan);
    const changed = text !== this.applied;
    this.applied = text;
    this.spec.applied(plan, changed);
  }

  async stop(): Promise<void> {
    this.loop.stop();
    clearInterval(this.resync);
    await this.watch?.cancel();
  }
}
