/**
 * The policy agent inside `calico node` (Calico's Felix, for this host's containers): watches
 * endpoints (every host's: selectors match remote endpoints too), networks and policies,
 * renders this host's firewall and applies it when it changed, debounced briefly so a policy
 * takes effect well within a second. Rules stay in the kernel while the node is down and are
 * rebuilt from etcd at start, so a restart never opens a window.
 */
import type { FirewallStatus, NodeContext } from '../lib/context';
import { codecs } from '../lib/datastore/codec';
import type { Watch } from '../lib/datastore/kv';
import { keys } from '../lib/datastore/keys';
import { ApplyLoop } from '../lib/apply-loop';
import { Firewall } from './iptables';
import { listPolicies } from './model';
import { syncProfiles } from './profiles';
import { renderPolicy } from './render';

export interface PolicyAgentOptions {
  endpointToHost: 'drop' | 'accept';
  debounceMs?: number;
  resyncMs?: number;
}

export class PolicyAgent implements FirewallStatus {
  private watch?: Watch;
  private loop: ApplyLoop;
  private resync?: NodeJS.Timeout;
  private applied?: string;
  private firewall = new Firewall();
  /** Set by the periodic resync: rewrite everything of ours and re-check the kernel's jumps. */
  private fullNext = false;
  /** Host interfaces the applied rules cover, and Joins waiting for theirs. */
  private covered = new Set<string>();
  private waiters = new Set<{ ifName: string; done: (ok: boolean) => void }>();
  /** Resolves after the first successful apply (start-up completes with rules in place). */
  readonly firstApplied: Promise<void>;
  private markApplied!: () => void;

  constructor(
    private ctx: NodeContext,
    private opts: PolicyAgentOptions,
  ) {
    this.firstApplied = new Promise((r) => (this.markApplied = r));
    this.loop = new ApplyLoop(() => this.apply(), ctx.log, { debounceMs: opts.debounceMs ?? 10, retryMs: 500, retryCapMs: 15_000, what: 'the firewall' });
  }

  async start(): Promise<void> {
    const schedule = () => this.loop.schedule();
    this.watch = this.ctx.kv.watch([keys.endpoints(), keys.networks(), keys.policies(), keys.profiles()], { reset: schedule, changes: schedule });
    await this.watch.ready;
    // Someone may flush or edit our rules by hand; a periodic full apply puts them back.
    this.resync = setInterval(() => {
      this.fullNext = true;
      this.loop.schedule();
    }, this.opts.resyncMs ?? 60_000);
    await this.loop.runNow();
  }

  /** One pass: list, render, apply what changed. Run by the loop, one at a time. */
  private async apply(): Promise<void> {
    const [endpoints, networkEntries, policies, profileEntries] = await Promise.all([
      this.ctx.records.listEndpoints(),
      this.ctx.kv.list(keys.networks()),
      listPolicies(this.ctx.kv),
      this.ctx.kv.list(keys.profiles()),
    ]);
    const networks = codecs.network.decodeAll(networkEntries);
    // Changes come back through the watch and trigger another pass with the stored profiles.
    const changed = await syncProfiles(this.ctx.kv, networks, profileEntries);
    if (changed) this.ctx.log.info('profiles updated', { changes: changed });
    const profiles = codecs.profile.decodeAll(profileEntries);
    const rendered = renderPolicy({ host: this.ctx.host, endpoints, networks, policies, profiles, endpointToHost: this.opts.endpointToHost });
    const text = JSON.stringify(rendered);
    const full = this.fullNext;
    if (text !== this.applied || full) {
      const t0 = Date.now();
      this.fullNext = false;
      // A failed apply leaves the Firewall without a known state: its next apply is full.
      const changedRules = text !== this.applied;
      this.applied = undefined;
      const written = await this.firewall.apply(rendered, full);
      this.applied = text;
      this.covered = new Set(endpoints.filter((e) => e.host === this.ctx.host).map((e) => e.ifName));
      for (const w of this.waiters) if (this.covered.has(w.ifName)) w.done(true);
      this.ctx.log.log(changedRules ? 'info' : 'debug', 'firewall applied', {
        endpoints: endpoints.filter((e) => e.host === this.ctx.host).length,
        policies: policies.length,
        chainsWritten: written.chains,
        setsWritten: written.sets,
        full,
        ms: Date.now() - t0,
      });
    }
    this.markApplied();
  }

  covers(ifName: string, timeoutMs: number): Promise<boolean> {
    if (this.covered.has(ifName)) return Promise.resolve(true);
    // The Join waiting here has its record in etcd already: apply at once, not after the debounce.
    this.loop.schedule(true);
    return new Promise((resolve) => {
      const w = {
        ifName,
        done: (ok: boolean) => {
          clearTimeout(t);
          this.waiters.delete(w);
          resolve(ok);
        },
      };
      const t = setTimeout(() => w.done(false), timeoutMs);
      this.waiters.add(w);
    });
  }

  async stop(): Promise<void> {
    for (const w of this.waiters) w.done(false);
    this.loop.stop();
    clearInterval(this.resync);
    await this.watch?.cancel();
  }
}
