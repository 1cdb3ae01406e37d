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
import { errorMessage } from '../lib/errors';
import { jitteredDelay } from '../lib/retry';
import { bgpKeys, getSettings, listPeers } from './model';
import type { Bird } from './bird';
import { renderBird } from './render';

export interface RouteAgentOptions {
  debounceMs: number;
  resyncMs: number;
}

export class RouteAgent {
  private watch?: PrefixWatch;
  private timer?: NodeJS.Timeout;
  private resync?: NodeJS.Timeout;
  private applied?: string;
  private stopped = false;
  private busy = false;
  private again = false;
  private failures = 0;

  constructor(
    private ctx: NodeContext,
    private ns: Namespace,
    private bird: Bird,
    private opts: RouteAgentOptions = { debounceMs: 300, resyncMs: 30_000 },
  ) {}

  async start(): Promise<void> {
    this.watch = new PrefixWatch(this.ns, [keys.hosts(), bgpKeys.settings(), bgpKeys.peers(), keys.pools(), keys.affinities(this.ctx.host)], () => this.schedule(), this.ctx.log);
    await this.watch.start();
    this.resync = setInterval(() => this.schedule(), this.opts.resyncMs);
    await this.apply();
  }

  /** Debounces bursts (a new host, several blocks claimed) into one render. */
  schedule(): void {
    if (this.stopped) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.apply(), this.opts.debounceMs);
  }

  /** Lists everything, renders, and installs + reconfigures when the text changed. */
  async apply(): Promise<void> {
    if (this.busy) {
      this.again = true;
      return;
    }
    this.busy = true;
    try {
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
      this.failures = 0;
      this.ctx.log.info('BIRD configuration applied', { peers: (text.match(/^protocol bgp /gm) ?? []).length, blocks: (text.match(/ blackhole;/g) ?? []).length });
    } catch (err) {
      // Warn once per streak, then retry quietly with a growing, jittered delay.
      const log = this.failures === 0 ? 'warn' : 'debug';
      this.ctx.log.log(log, 'could not apply the routing configuration; retrying', { error: errorMessage(err) });
      setTimeout(() => this.schedule(), 1000 + jitteredDelay(this.failures++, 1000, 30_000)).unref();
    } finally {
      this.busy = false;
      if (this.again) {
        this.again = false;
        this.schedule();
      }
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    clearInterval(this.resync);
    await this.watch?.stop();
  }
}
