/**
 * The encapsulation agent inside `calico node`: list-watches hosts, pools and every block
 * affinity in etcd, plans the tunnels and routes this host needs (encap/plan.ts) and keeps the
 * kernel in line (encap/kernel.ts), debounced. A pool switched between Always, CrossSubnet and
 * Never moves the routes of its blocks on every host within a debounce, with the containers'
 * addresses untouched. The periodic pass re-reads the kernel and repairs what was changed.
 */
import type { NodeContext } from '../agent/context';
import { ApplyLoop } from '../lib/apply-loop';
import { codecs } from '../lib/datastore/codec';
import type { Watch } from '../lib/datastore/kv';
import { keyName, keys } from '../lib/datastore/keys';
import { WatchedEntries } from '../lib/datastore/watched';
import { cidrFromKey } from '../lib/ip';
import { type EncapPlan, encapPlan } from './plan';
import { type KernelChanges, applyEncap } from './kernel';

export interface EncapAgentOptions {
  debounceMs: number;
  resyncMs: number;
  /** Applies a plan to the kernel; the real one unless a test gives another. */
  apply?: (plan: EncapPlan) => Promise<KernelChanges>;
  /** Whether BIRD runs here: IP-in-IP's routes are BGP's, so without it they never come. */
  bgp?: boolean;
}

export class EncapAgent {
  private watch?: Watch;
  private state: WatchedEntries;
  private loop: ApplyLoop;
  private resync?: NodeJS.Timeout;
  private lastSkipped = '';
  private warnedNoBgp = false;
  private applied = '';
  /** The last plan applied, for status and tests. */
  current?: EncapPlan;

  constructor(
    private ctx: Pick<NodeContext, 'kv' | 'host' | 'log' | 'dataplane'>,
    private opts: EncapAgentOptions = { debounceMs: 100, resyncMs: 30_000 },
  ) {
    this.state = new WatchedEntries(() => this.loop.schedule());
    this.loop = new ApplyLoop(() => this.apply(), ctx.log, {
      debounceMs: opts.debounceMs,
      retryMs: 1000,
      retryCapMs: 30_000,
      what: 'the encapsulation routes',
    });
  }

  async start(): Promise<void> {
    this.watch = this.ctx.kv.watch([keys.hosts(), keys.pools(), keys.affinities()], this.state);
    await this.watch.ready;
    this.resync = setInterval(() => this.loop.schedule(), this.opts.resyncMs);
    await this.loop.runNow();
  }

  private async apply(): Promise<void> {
    const { log, host } = this.ctx;
    const bad = (key: string, err: Error) => log.warn('skipped an unreadable record', { key, error: err.message });
    const hosts = codecs.host.decodeAll(this.state.under(keys.hosts()), bad);
    const self = hosts.find((h) => h.name === host);
    if (!self) return; // registered at start; the watch brings it
    const pools = codecs.pool.decodeAll(this.state.under(keys.pools()), bad);
    const affinities = this.state.under(keys.affinities()).flatMap((e) => {
      const rest = keyName(e.key, keys.affinities());
      const slash = rest.indexOf('/');
      return slash > 0 ? [{ host: rest.slice(0, slash), cidr: cidrFromKey(rest.slice(slash + 1)) }] : [];
    });
    const uplinkMtu = (await this.ctx.dataplane.uplinkMtu()) ?? 1500;
    const plan = encapPlan({ self, hosts, pools, affinities, uplinkMtu });
    const skipped = plan.skipped.join('; ');
    if (skipped && skipped !== this.lastSkipped) log.warn('some blocks cannot be routed through a tunnel yet', { blocks: plan.skipped });
    this.lastSkipped = skipped;
    if (plan.ipip && this.opts.bgp === false && !this.warnedNoBgp)
      log.warn(
        "an IP-in-IP pool needs BGP for its routes, and CALICO_BIRD=off: other hosts' blocks in it stay unreachable; use --vxlan-mode instead or turn BIRD on",
        {},
      );
    this.warnedNoBgp = !!plan.ipip && this.opts.bgp === false;
    const changes = await (this.opts.apply ?? applyEncap)(plan);
    this.current = plan;
    const text = JSON.stringify({ ...plan, skipped: [] });
    if (text !== this.applied) {
      log.info('encapsulation applied', {
        vxlan: plan.vxlan ? `${plan.vxlan.mac} mtu ${plan.vxlan.mtu}` : 'off',
        ipip: plan.ipip ? `mtu ${plan.ipip.mtu}` : 'off',
        routes: plan.routes.filter((r) => !r.bird).length,
        changed: changes,
      });
    } else if (changes.devices + changes.routes + changes.neighbours + changes.fdb > 0) {
      log.warn('encapsulation state was changed outside calico node; repaired', { ...changes });
    }
    this.applied = text;
  }

  async stop(): Promise<void> {
    this.loop.stop();
    clearInterval(this.resync);
    await this.watch?.cancel();
  }
}
