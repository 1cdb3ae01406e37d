/**
 * The policy agent inside `calico node` (Calico's Felix, for this host's containers): watches
 * endpoints (every host's: selectors match remote endpoints too), networks and policies,
 * renders this host's firewall and applies it when it changed, debounced briefly so a policy
 * takes effect well within a second. Rules stay in the kernel while the node is down and are
 * rebuilt from etcd at start, so a restart never opens a window.
 */
import type { Namespace } from 'etcd3';
import type { FirewallStatus, NodeContext } from '../lib/context';
import { keys } from '../lib/datastore/keys';
import type { NetworkRecord } from '../lib/datastore/records';
import { PrefixWatch } from '../lib/datastore/watch';
import { errorMessage } from '../lib/errors';
import { jitteredDelay } from '../lib/retry';
import { Firewall } from './iptables';
import { listPolicies, policyKeys } from './model';
import { type ProfileRecord, profileKeys, syncProfiles } from './profiles';
import { renderPolicy } from './render';

export interface PolicyAgentOptions {
  endpointToHost: 'drop' | 'accept';
  debounceMs?: number;
  resyncMs?: number;
}

export class PolicyAgent implements FirewallStatus {
  private watch?: PrefixWatch;
  private timer?: NodeJS.Timeout;
  private resync?: NodeJS.Timeout;
  private applied?: string;
  private busy = false;
  private again = false;
  private stopped = false;
  private failures = 0;
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
    private ns: Namespace,
    private opts: PolicyAgentOptions,
  ) {
    this.firstApplied = new Promise((r) => (this.markApplied = r));
  }

  async start(): Promise<void> {
    this.watch = new PrefixWatch(this.ns, [keys.endpoints(), keys.networks(), policyKeys.policies(), profileKeys.profiles()], () => this.schedule(), this.ctx.log);
    await this.watch.start();
    // Someone may flush or edit our rules by hand; a periodic full apply puts them back.
    this.resync = setInterval(() => {
      this.fullNext = true;
      this.schedule();
    }, this.opts.resyncMs ?? 60_000);
    await this.apply();
  }

  /**
   * Coalesces changes arriving within the debounce window into one apply. A pending apply is
   * never pushed back: with containers starting back to back, each Join would otherwise
   * postpone the rules every earlier Join is waiting for.
   */
  schedule(now = false): void {
    if (this.stopped) return;
    if (now) {
      // A Join is waiting: its record is already in etcd (Join waited for it), so apply at once.
      clearTimeout(this.timer);
      this.timer = undefined;
      void this.apply();
      return;
    }
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.apply();
    }, this.opts.debounceMs ?? 10);
  }

  async apply(): Promise<void> {
    if (this.busy) {
      this.again = true;
      return;
    }
    this.busy = true;
    try {
      const [endpoints, networkEntries, policies, profileEntries] = await Promise.all([
        this.ctx.records.listEndpoints(),
        this.ctx.kv.list(keys.networks()),
        listPolicies(this.ctx.kv),
        this.ctx.kv.list(profileKeys.profiles()),
      ]);
      const networks = networkEntries.map((e) => JSON.parse(e.value) as NetworkRecord);
      // Changes come back through the watch and trigger another pass with the stored profiles.
      const changed = await syncProfiles(this.ctx.kv, networks, profileEntries);
      if (changed) this.ctx.log.info('profiles updated', { changes: changed });
      const profiles = profileEntries.map((e) => JSON.parse(e.value) as ProfileRecord);
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
        this.ctx.log.log(changedRules ? 'info' : 'debug', 'firewall applied', { endpoints: endpoints.filter((e) => e.host === this.ctx.host).length, policies: policies.length, chainsWritten: written.chains, setsWritten: written.sets, full, ms: Date.now() - t0 });
      }
      this.failures = 0;
      this.markApplied();
    } catch (err) {
      const level = this.failures === 0 ? 'warn' : 'debug';
      this.ctx.log.log(level, 'could not apply the firewall; retrying', { error: errorMessage(err) });
      setTimeout(() => this.schedule(), 500 + jitteredDelay(this.failures++, 500, 15_000)).unref();
    } finally {
      this.busy = false;
      if (this.again) {
        this.again = false;
        this.schedule(this.waiters.size > 0);
      }
    }
  }

  covers(ifName: string, timeoutMs: number): Promise<boolean> {
    if (this.covered.has(ifName)) return Promise.resolve(true);
    this.schedule(true);
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
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    clearInterval(this.resync);
    await this.watch?.stop();
  }
}
