/**
 * The route agent inside `calico node` (Calico's confd, rebuilt): list-watches hosts, BGP
 * settings, peers, pools and this host's block affinities in etcd, renders BIRD's configuration
 * and applies it when the text changes, debounced. Any watch error, disconnection or compaction
 * leads to a full re-list, and a periodic re-list backs the watches up, so the configuration is
 * never left stale.
 */
import type { Namespace } from 'etcd3';
import { PrefixWatch } from '../lib/datastore/watch';
import type { NodeContext } from '../lib/context';
import { keys } from '../lib/datastore/keys';
import type { HostRecord } from '../lib/datastore/records';
import { cidrFromKey } from '../lib/ip';
import { ApplyLoop } from '../lib/apply-loop';
import { bgpKeys, getSettings, listPeers } from './model';
import type { Bird } from './bird';
import { renderBird } from './render';

export interface RouteAgentOptions {
  debounceMs: number;
  resyncMs: number;
}

export class RouteAgent {
  private watch?: PrefixWatch;
  private loop: ApplyLoop;
  private resync?: NodeJS.Timeout;
  private applied?: string;

  constructor(
    private ctx: NodeContext,
    private ns: Namespace,
    private bird: Bird,
    private opts: RouteAgentOptions = { debounceMs: 300, resyncMs: 30_000 },
  ) {
    // Debounced so a burst (a new host, several blocks claimed) is one render.
    this.loop = new ApplyLoop(() => this.apply(), ctx.log, {
      debounceMs: opts.debounceMs,
      retryMs: 1000,
      retryCapMs: 30_000,
      what: 'the routing configuration',
    });
  }

  async start(): Promise<void> {
    this.watch = new PrefixWatch(
      this.ns,
      [keys.hosts(), bgpKeys.settings(), bgpKeys.peers(), keys.pools(), keys.affinities(this.ctx.host)],
      () => this.loop.schedule(),
      this.ctx.log,
    );
    await this.watch.start();
    this.resync = setInterval(() => this.loop.schedule(), this.opts.resyncMs);
    await this.loop.runNow();
  }

  /** Lists everything, renders, and installs + reconfigures when the text changed. */
  private async apply(): Promise<void> {
    const { kv, host } = this.ctx;
    this.ctx.pools.invalidate();
    const [hostEntries, settings, peers, pools, affinities] = await Promise.all([
      kv.list(keys.hosts()),
      getSettings(kv),
      listPeers(kv),
      this.ctx.pools.list(),
      kv.list(keys.affinities(host)),
    ]);
    const hosts = hostEntries.map((e) => JSON.parse(e.value) as HostRecord);
    const self = hosts.find((h) => h.name === host);
    if (!self?.ipv4) {
      this.ctx.log.warn('no IPv4 address for this host: BGP is off until CALICO_IP is set or an uplink has one', { host });
      return;
    }
    const text = renderBird({
      self,
      hosts,
      settings,
      peers,
      // Disabled pools too: their addresses in use must stay reachable.
      pools: pools.map((p) => ({ cidr: p.cidr })),
      blocks: affinities.map((e) => cidrFromKey(e.key.slice(keys.affinities(host).length))),
    });
    if (text === this.applied && (this.bird.external || this.bird.running)) return;
    await this.bird.install(text);
    if (!this.bird.external && !this.bird.running) this.bird.start();
    else await this.bird.configure();
    this.applied = text;
    this.ctx.log.info('BIRD configuration applied', {
      peers: (text.match(/^protocol bgp /gm) ?? []).length,
      blocks: (text.match(/ blackhole;/g) ?? []).length,
    });
  }

  async stop(): Promise<void> {
    this.loop.stop();
    clearInterval(this.resync);
    await this.watch?.stop();
  }
}
