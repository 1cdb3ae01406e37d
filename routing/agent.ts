/**
 * The route agent inside `calico node` (Calico's confd, rebuilt): list-watches hosts, BGP
 * settings, peers, pools and this host's block affinities in etcd, keeps them in memory, renders
 * BIRD's configuration from there and applies it when the text changes, debounced, except for a
 * host that appears and a block this host claims, which are rendered at once. The watch
 * resumes after a disconnection and lists again after a compaction (lib/datastore/list-watch.ts);
 * a periodic render backs up BIRD itself.
 */
import type { NodeContext } from '../agent/context';
import { codecs } from '../lib/datastore/codec';
import type { KVEntry, Watch, WatchEvent, WatchListener } from '../lib/datastore/kv';
import { keyName, keys } from '../lib/datastore/keys';
import { WatchedEntries } from '../lib/datastore/watched';
import { errorMessage } from '../lib/errors';
import { cidrFromKey } from '../lib/ip';
import { ApplyLoop } from '../lib/apply-loop';
import { DEFAULT_ASN } from './model';
import { encapsulationOf } from '../ipam/pool-settings';
import type { Bird } from './bird';

/** What the agent needs of BIRD (routing/bird.ts), so it can be tested without one. */
export type BirdControl = Pick<Bird, 'install' | 'start' | 'configure' | 'external' | 'running'>;
import { renderBird } from './render';

/**
 * Whether `events` hold a change worth rendering at once rather than after the debounce: a host
 * that was not there (its peers should dial it now; it is timing its join) or a block that
 * became this host's (its first container waits to be reached). Other changes (a host's
 * restart, a pool, settings) can wait the debounce and coalesce. `known` says whether a key is
 * in the state before these events.
 */
export function needsPromptRender(events: WatchEvent[], known: (key: string) => boolean, host: string): boolean {
  return events.some(
    (ev) => ev.type === 'put' && !known(ev.entry.key) && (ev.entry.key.startsWith(keys.hosts()) || ev.entry.key.startsWith(keys.affinities(host))),
  );
}

export interface RouteAgentOptions {
  debounceMs: number;
  resyncMs: number;
}

export class RouteAgent {
  private watch?: Watch;
  private state: WatchedEntries;
  private loop: ApplyLoop;
  private resync?: NodeJS.Timeout;
  private applied?: string;
  private prompt = false;

  constructor(
    private ctx: Pick<NodeContext, 'kv' | 'host' | 'log'>,
    private bird: BirdControl,
    private opts: RouteAgentOptions = { debounceMs: 300, resyncMs: 30_000 },
  ) {
    // Debounced so a burst is one render, except a new host or own block (needsPromptRender):
    // rendered at once, and what follows it within the render still coalesces into one more.
    this.state = new WatchedEntries(() => {
      const now = this.prompt;
      this.prompt = false;
      this.loop.schedule(now);
    });
    this.loop = new ApplyLoop(() => this.apply(), ctx.log, {
      debounceMs: opts.debounceMs,
      retryMs: 1000,
      retryCapMs: 30_000,
      what: 'the routing configuration',
    });
  }

  async start(): Promise<void> {
    const listener: WatchListener = {
      reset: (entries: KVEntry[]) => this.state.reset(entries),
      changes: (events: WatchEvent[]) => {
        this.prompt ||= needsPromptRender(events, (k) => this.state.get(k) !== undefined, this.ctx.host);
        this.state.changes(events);
      },
    };
    this.watch = this.ctx.kv.watch([keys.hosts(), keys.bgpSettings(), keys.peers(), keys.pools(), keys.affinities(this.ctx.host)], listener);
    await this.watch.ready;
    this.resync = setInterval(() => this.loop.schedule(), this.opts.resyncMs);
    await this.loop.runNow();
  }

  /** Renders from the watched state, and installs + reconfigures when the text changed. */
  private async apply(): Promise<void> {
    const { host, log } = this.ctx;
    const bad = (key: string, err: Error) => log.warn('skipped an unreadable record', { key, error: errorMessage(err) });
    const hosts = codecs.host.decodeAll(this.state.under(keys.hosts()), bad);
    const settingsEntry = this.state.get(keys.bgpSettings());
    const settings = { asn: DEFAULT_ASN, nodeMesh: true, ...(settingsEntry ? codecs.bgpSettings.decodeAll([settingsEntry], bad)[0] : {}) };
    const peers = codecs.peer.decodeAll(this.state.under(keys.peers()), bad);
    const pools = codecs.pool.decodeAll(this.state.under(keys.pools()), bad);
    const blocks = this.state.under(keys.affinities(host)).map((e) => cidrFromKey(keyName(e.key, keys.affinities(host))));
    const self = hosts.find((h) => h.name === host);
    if (!self?.ipv4) {
      log.warn('no IPv4 address for this host: BGP is off until CALICO_IP is set or an uplink has one', { host });
      return;
    }
    // Disabled pools too: their addresses in use must stay reachable.
    const text = renderBird({
      self,
      hosts,
      settings,
      peers,
      pools: pools.map((p) => {
        const e = encapsulationOf(p);
        return { cidr: p.cidr, encapsulated: e.kind === 'vxlan', ...(e.kind === 'ipip' && e.mode !== 'Never' ? { ipip: e.mode } : {}) };
      }),
      blocks,
    });
    if (text === this.applied && (this.bird.external || this.bird.running)) return;
    await this.bird.install(text);
    if (!this.bird.external && !this.bird.running) this.bird.start();
    else await this.bird.configure();
    this.applied = text;
    log.info('BIRD configuration applied', { peers: (text.match(/^protocol bgp /gm) ?? []).length, blocks: (text.match(/ blackhole;/g) ?? []).length });
  }

  async stop(): Promise<void> {
    this.loop.stop();
    clearInterval(this.resync);
    await this.watch?.cancel();
  }
}
