/**
 * The policy agent inside `calico node` (Calico's Felix, for this host's containers). One
 * list-then-watch of endpoints (every host's: selectors match remote endpoints too), networks,
 * policies, profiles and network sets feeds the incremental calculator (policy/calc/); each event changes only
 * what it touches, and the backend (firewall/) turns the resulting delta into one kernel change.
 * A re-list happens only when the watch lost its history; then the new state is diffed against
 * the programmed one, so even a resync writes only what differs. Rules stay in the kernel while
 * the node is down and are checked against etcd at start, so a restart never opens a window.
 */
import { ApplyLoop } from '../lib/apply-loop';
import type { FirewallStatus, NodeContext } from '../agent/context';
import { codecs } from '../lib/datastore/codec';
import type { KVEntry, Watch, WatchEvent } from '../lib/datastore/kv';
import { keys } from '../lib/datastore/keys';
import { errorMessage } from '../lib/errors';
import type { NetworkRecord } from '../lib/datastore/records';
import type { Desired, FirewallBackend } from '../firewall/desired';
import type { FirewallCounts, FirewallRecorder } from '../lib/metrics';
import { isEmptyDelta } from '../firewall/desired';
import { diffDesired } from '../firewall/diff';
import { PolicyCalculator } from './calc';
import { ProfileKeeper } from './profile-keeper';

export interface PolicyAgentOptions {
  endpointToHost: 'drop' | 'accept';
  backend: FirewallBackend;
  /** Coalesces a burst of events into one kernel change. */
  debounceMs?: number;
  /** How often the kernel is compared with what was programmed (hand edits, flushes). */
  checkMs?: number;
  /** Counts applies and their duration (metrics on). */
  metrics?: FirewallRecorder;
}

type Kind = 'endpoint' | 'network' | 'policy' | 'profile' | 'netset';
const PREFIXES: Array<[string, Kind]> = [
  [keys.endpoints(), 'endpoint'],
  [keys.networks(), 'network'],
  [keys.policies(), 'policy'],
  [keys.profiles(), 'profile'],
  [keys.networkSets(), 'netset'],
];
const kindOf = (key: string) => PREFIXES.find(([p]) => key.startsWith(p))?.[1];

export class PolicyAgent implements FirewallStatus {
  private watch?: Watch;
  private loop: ApplyLoop;
  private checkTimer?: NodeJS.Timeout;
  private calc: PolicyCalculator;
  private keeper: ProfileKeeper;
  /** What the backend holds, when it is known: a failed apply forgets it, so the next is full. */
  private programmed?: Desired;
  /** Set by a re-list: the calculator was rebuilt, so the next change is a diff against `programmed`. */
  private rebuilt = false;
  private checkDue = false;
  /** Counts watch deliveries, so a check is not run against state that moved on during an apply. */
  private events = 0;
  private covered = new Set<string>();
  private waiters = new Set<{ ifName: string; done: (ok: boolean) => void }>();
  /** Resolves after the first successful apply (start-up completes with rules in place). */
  readonly firstApplied: Promise<void>;
  private markApplied!: () => void;
  /** Why the last apply failed, until one succeeds: the firewall may lag etcd meanwhile. */
  private failing?: string;

  constructor(
    private ctx: Pick<NodeContext, 'kv' | 'host' | 'log'>,
    private opts: PolicyAgentOptions,
  ) {
    this.firstApplied = new Promise((r) => (this.markApplied = r));
    this.calc = this.newCalculator();
    this.keeper = new ProfileKeeper(ctx.kv, ctx.log);
    this.loop = new ApplyLoop(() => this.apply(), ctx.log, { debounceMs: opts.debounceMs ?? 2, retryMs: 500, retryCapMs: 15_000, what: 'the firewall' });
  }

  get backendName(): string {
    return this.opts.backend.name;
  }

  async start(): Promise<void> {
    this.watch = this.ctx.kv.watch(
      PREFIXES.map(([p]) => p),
      { reset: (entries) => this.reset(entries), changes: (events) => this.changes(events) },
    );
    await this.watch.ready;
    // Someone may flush or edit our rules by hand; the periodic check puts them back.
    this.checkTimer = setInterval(() => {
      this.checkDue = true;
      this.loop.schedule();
    }, this.opts.checkMs ?? 60_000);
    await this.loop.runNow();
  }

  private newCalculator(): PolicyCalculator {
    return new PolicyCalculator({
      host: this.ctx.host,
      endpointToHost: this.opts.endpointToHost,
      onBad: (key, err) => this.ctx.log.warn('a policy record cannot be enforced and is skipped; fix or delete it', { key, error: errorMessage(err) }),
    });
  }

  /** The whole state, at start or after the watch lost its history. */
  private reset(entries: KVEntry[]): void {
    const old = this.calc;
    // Changes the old calculator had not handed to the backend yet make a diff unsound: start over.
    if (this.programmed && !isEmptyDelta(old.takeDelta())) this.programmed = undefined;
    this.calc = this.newCalculator();
    const networks: NetworkRecord[] = [];
    const profiles: KVEntry[] = [];
    for (const e of entries) {
      const rec = this.upsert(e);
      if (rec?.kind === 'network') networks.push(rec.rec);
      if (kindOf(e.key) === 'profile') profiles.push(e);
    }
    this.keeper.reset(networks, profiles);
    this.rebuilt = true;
    this.loop.schedule();
  }

  private changes(events: WatchEvent[]): void {
    this.events++;
    for (const ev of events) {
      if (ev.type === 'put') {
        const rec = this.upsert(ev.entry);
        if (kindOf(ev.entry.key) === 'network') this.keeper.network(ev.entry.key, rec?.kind === 'network' ? rec.rec : undefined);
        if (kindOf(ev.entry.key) === 'profile') this.keeper.profile(ev.entry.key.slice(keys.profiles().length), ev.entry);
      } else {
        this.remove(ev.key);
        if (kindOf(ev.key) === 'network') this.keeper.network(ev.key, undefined);
        if (kindOf(ev.key) === 'profile') this.keeper.profile(ev.key.slice(keys.profiles().length), undefined);
      }
    }
    this.loop.schedule();
  }

  /** Feeds one record to the calculator; an unreadable one counts as gone, and is reported. */
  private upsert(e: KVEntry): { kind: 'network'; rec: NetworkRecord } | { kind: Exclude<Kind, 'network'> } | undefined {
    const kind = kindOf(e.key);
    try {
      switch (kind) {
        case 'endpoint':
          this.calc.upsertEndpoint(e.key, codecs.endpoint.decode(e));
          return { kind };
        case 'network': {
          const rec = codecs.network.decode(e);
          this.calc.upsertNetwork(e.key, rec);
          return { kind, rec };
        }
        case 'policy':
          this.calc.upsertPolicy(e.key, codecs.policy.decode(e));
          return { kind };
        case 'profile':
          this.calc.upsertProfile(e.key, codecs.profile.decode(e));
          return { kind };
        case 'netset':
          this.calc.upsertNetworkSet(e.key, codecs.networkSet.decode(e));
          return { kind };
        default:
          return undefined;
      }
    } catch (err) {
      this.ctx.log.warn('skipped an unreadable record', { key: e.key, error: errorMessage(err) });
      this.remove(e.key);
      return undefined;
    }
  }

  private remove(key: string): void {
    const kind = kindOf(key);
    if (kind === 'endpoint') this.calc.removeEndpoint(key);
    else if (kind === 'network') this.calc.removeNetwork(key);
    else if (kind === 'policy') this.calc.removePolicy(key);
    else if (kind === 'profile') this.calc.removeProfile(key);
    else if (kind === 'netset') this.calc.removeNetworkSet(key);
  }

  /** Null when the rules are in place and the last apply worked, else what is wrong (for /readyz). */
  problem(): string | null {
    if (this.failing !== undefined) return `the last firewall apply failed (${this.failing}); it is being retried`;
    if (!this.programmed) return 'the firewall has not been applied yet';
    return null;
  }

  /** What the kernel holds, counted from what was last programmed (read on scrape, never per request). */
  counts(): FirewallCounts | undefined {
    const d = this.programmed;
    if (!d) return undefined;
    let rules = 0;
    for (const specs of [d.policies, d.profiles]) for (const p of specs.values()) for (const f of [p.ingress, p.egress]) rules += f[4].length + f[6].length;
    let setMembers = 0;
    for (const set of d.sets.values()) setMembers += set.members.size;
    return { backend: this.opts.backend.name, rules, sets: d.sets.size, setMembers, policies: d.policies.size, localEndpoints: d.endpoints.size };
  }

  /** One pass, timed and counted; the work is in applyOnce. */
  private async apply(): Promise<void> {
    const t0 = performance.now();
    try {
      const how = await this.applyOnce();
      this.failing = undefined;
      this.opts.metrics?.firewallApplied(this.opts.backend.name, how.how, (performance.now() - t0) / 1000, how.objects);
    } catch (err) {
      this.failing = errorMessage(err);
      this.opts.metrics?.firewallFailed(this.opts.backend.name, (performance.now() - t0) / 1000);
      throw err;
    }
  }

  /** One pass, run by the loop one at a time: hand the backend what changed since the last. */
  private async applyOnce(): Promise<{ how: 'full' | 'delta' | 'resync'; objects: number }> {
    const backend = this.opts.backend;
    const t0 = Date.now();
    const desired = this.calc.desired();
    const delta = this.calc.takeDelta();
    const check = this.checkDue;
    this.checkDue = false;
    const seen = this.events;
    const prev = this.programmed;
    // Until this apply succeeds the backend's state is unknown.
    this.programmed = undefined;
    let how: 'full' | 'delta' | 'resync';
    let objects = 0;
    if (!prev) {
      objects = (await backend.apply(desired)).objects;
      how = 'full';
    } else {
      const d = this.rebuilt ? diffDesired(prev, desired) : delta;
      if (!isEmptyDelta(d)) objects = (await backend.apply(desired, d)).objects;
      how = this.rebuilt ? 'resync' : 'delta';
    }
    this.rebuilt = false;
    // The check compares the kernel with what was just applied. Events that came in meanwhile
    // have moved the calculator on (its sets change in place), so then the check waits a pass.
    const stale = this.events !== seen;
    if (check && stale) this.checkDue = true;
    const repaired = check && !stale ? await backend.check(desired) : false;
    this.programmed = desired;
    this.covered = new Set(this.calc.localInterfaces());
    for (const w of this.waiters) if (this.covered.has(w.ifName)) w.done(true);
    if (repaired)
      this.ctx.log.warn('the firewall in the kernel differed from what was programmed (edited or flushed by hand?); repaired', { backend: backend.name });
    if (objects || how === 'full') {
      // A policy or profile change is a state change worth a line; endpoints come and go per request.
      const rules = delta.policies.upsert.length + delta.policies.remove.length + delta.profiles.upsert.length + delta.profiles.remove.length;
      const level = how !== 'delta' || rules ? 'info' : 'debug';
      this.ctx.log.log(level, 'firewall applied', { backend: backend.name, how, objects, ...this.calc.stats(), ms: Date.now() - t0 });
    }
    this.markApplied();
    return { how, objects };
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
    this.keeper.stop();
    this.loop.stop();
    clearInterval(this.checkTimer);
    await this.watch?.cancel();
  }
}
