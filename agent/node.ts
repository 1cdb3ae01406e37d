/**
 * `calico node`: the per-host daemon. Sockets come first and answer Activate and
 * GetCapabilities at once; everything that needs etcd (embedded etcd start, default pools,
 * host registration) runs in the background, retried with jittered backoff, and handlers that
 * need it wait a bounded time for it.
 */
import fs from 'node:fs';
import type http from 'node:http';
import path from 'node:path';
import { networkDriverRoutes } from '../driver/handlers';
import { Sandboxes } from '../driver/sandboxes';
import { IpamHandlers } from '../ipam/handlers';
import { Allocator } from '../ipam/allocator';
import { Pools } from '../ipam/pools';
import { type Config, embeddedEndpointFile } from '../lib/config';
import type { NodeContext } from './context';
import { createHybridDataplane } from '../lib/dataplane/hybrid';
import type { Dataplane } from '../lib/dataplane/types';
import { codecs } from '../lib/datastore/codec';
import { EtcdKV } from '../lib/datastore/etcd';
import { keys } from '../lib/datastore/keys';
import type { HostRecord } from '../lib/datastore/records';
import { Records } from '../lib/datastore/records-store';
import { ConfigError, UnavailableError, errorMessage } from '../lib/errors';
import type { Logger } from '../lib/log';
import { type Routes, closeUnix, createPluginApp, listenUnix } from '../lib/server';
import { withDeadline } from '../lib/retry';
import { Supervisor } from '../lib/supervise';
import { DockerWatcher } from './docker-watcher';
import { EmbeddedEtcd } from './embedded-etcd';
import { Liveness } from './liveness';
import { RouteAgent } from '../routing/agent';
import { PolicyAgent } from '../policy/agent';
import { firewallKind, forwardWithoutPolicy, prepareFirewall, removeOtherFirewalls } from '../firewall/select';
import { NatAgent } from '../nat/agent';
import { NftablesBackend } from '../firewall/nftables/backend';
import { IptablesBackend } from '../firewall/iptables/backend';
import { EncapAgent } from '../encap/agent';
import { subnetOf } from '../encap/host';
import { OVERHEAD, vtepMac } from '../encap/plan';
import { IptablesNat, NftNat } from '../nat/backends';
import { PortsAgent } from '../ports/agent';
import { IptablesPorts, NftPorts } from '../ports/backends';
import { Bird } from '../routing/bird';
import { Reconciler } from './reconciler';
import { Metrics } from '../lib/metrics';
import { StatusServer, createStatusApp } from './metrics-server';
import { summariseIpam, throttled } from '../ipam/summary';
import { sessionState } from '../routing/bird';

const FIREWALL_START_MS = 10_000;
export const VERSION: string = (JSON.parse(fs.readFileSync(path.join(__dirname, '../../package.json'), 'utf8')) as { version: string }).version;
const READY_WAIT_MS = 10_000;
/** How long /readyz waits for etcd and BIRD to answer before it calls them down. */
const READY_CHECK_MS = 2000;

export interface NodeOptions {
  config: Config;
  log: Logger;
  /** Injected by tests; the real one acts on this process's network namespace. */
  dataplane?: Dataplane;
  /**
   * Start-up met a setting etcd refuses (its CA, certificate, password): retrying cannot help, so
   * start-up stops and this is called (`calico node` exits with the message). Unset: retried.
   */
  onConfigError?: (err: ConfigError) => void;
}

function activate(implementsList: string[]): Routes {
  return { '/Plugin.Activate': { hasBody: false, handler: () => ({ Implements: implementsList }) } };
}

export class CalicoNode {
  private servers: Array<{ server: http.Server; path: string }> = [];
  private etcd?: EmbeddedEtcd;
  private kv?: EtcdKV;
  private readyPromise: Promise<void>;
  private markReady!: () => void;
  private isReady = false;
  private lastError = 'starting';
  private stopping = false;
  private mtu?: number;
  private sandboxes = new Sandboxes();
  private watcher?: DockerWatcher;
  private reconciler?: Reconciler;
  private liveness?: Liveness;
  private routes?: RouteAgent;
  private policy?: PolicyAgent;
  private nat?: NatAgent;
  private ports?: PortsAgent;
  private kind?: Promise<'nftables' | 'iptables'>;
  private encap?: EncapAgent;
  private bird?: Bird;
  private startup?: Supervisor;
  private supervisors: Supervisor[] = [];
  /** Present when CALICO_METRICS_ADDR is set; components get it as their recorder. */
  readonly metrics?: Metrics;
  private status: StatusServer;
  readonly ctx: NodeContext;

  constructor(private opts: NodeOptions) {
    this.readyPromise = new Promise((r) => (this.markReady = r));
    const { config, log } = opts;
    const dataplane = opts.dataplane ?? createHybridDataplane(log, { procSys: config.procSys });
    // The KV is created lazily once etcd's address is known; until then handlers wait in ready().
    const kvProxy = new Proxy({} as EtcdKV, {
      get: (_t, prop) => {
        if (!this.kv) throw new UnavailableError(`calico node on ${config.nodeName} is not connected to etcd yet: ${this.lastError}`);
        const v = (this.kv as unknown as Record<string | symbol, unknown>)[prop];
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(this.kv) : v;
      },
    });
    const pools = new Pools(kvProxy);
    this.ctx = {
      host: config.nodeName,
      kv: kvProxy,
      pools,
      allocator: new Allocator(kvProxy, pools, config.nodeName, log),
      records: new Records(kvProxy, config.nodeName),
      dataplane,
      log,
      defaultMtu: async (encapsulation = 'none') => {
        if (config.mtu !== undefined) return config.mtu;
        if (this.mtu === undefined) this.mtu = (await dataplane.uplinkMtu()) ?? 1500;
        return this.mtu - OVERHEAD[encapsulation];
      },
      ready: () => this.ready(),
    };
    if (config.metricsAddr) this.metrics = this.newMetrics();
    this.status = new StatusServer(
      config,
      createStatusApp(() => this.readiness(), this.metrics, log),
      log,
    );
  }

  /** The registry, with the scrape-time sources read from this node's parts as they exist. */
  private newMetrics(): Metrics {
    const m = new Metrics();
    const { allocator, pools } = this.ctx;
    m.sources.ipam = throttled(async () => summariseIpam(await allocator.blocks.list(), await pools.list()));
    m.sources.bgpSessions = async () => (this.bird ? (await this.bird.sessions()).map((s) => ({ state: sessionState(s) })) : []);
    m.sources.firewall = () => this.policy?.counts();
    return m;
  }

  /** What keeps this node from serving fully: each part asked in parallel, each bounded. */
  async readiness(): Promise<string[]> {
    const { config } = this.opts;
    const sockets = config.pluginMode === 'managed' ? 1 : 2;
    const checks: Array<string | null | Promise<string | null>> = [
      this.servers.length === sockets && this.servers.every((s) => s.server.listening) ? null : 'the plugin sockets are not listening',
      this.isReady ? null : `start-up has not finished (${this.lastError})`,
      this.kv
        ? withDeadline(this.kv.get('health'), READY_CHECK_MS, 'an etcd read').then(
            () => null,
            (err: unknown) => `etcd does not answer: ${errorMessage(err)}`,
          )
        : `not connected to etcd yet (${this.lastError})`,
      !config.policy ? null : this.policy ? this.policy.problem() : 'the firewall agent has not started yet',
      config.bird === 'off' ? null : this.bird ? this.bird.problem(READY_CHECK_MS) : 'BIRD has not been started yet',
    ];
    return (await Promise.all(checks.map((c) => Promise.resolve(c)))).filter((p): p is string => p !== null);
  }

  private async ready(): Promise<void> {
    if (this.isReady) return;
    try {
      await withDeadline(this.readyPromise, READY_WAIT_MS, 'waiting for start-up');
    } catch {
      throw new UnavailableError(`calico node on ${this.opts.config.nodeName} is not ready: ${this.lastError}; check etcd and the calico node log`);
    }
  }

  /** Makes the sockets (legacy plugin: one per interface) and starts the background start-up. */
  async start(): Promise<void> {
    const { config, log } = this.opts;
    try {
      await this.status.listenTcp();
    } catch (err) {
      this.ctx.dataplane.close();
      throw err;
    }
    fs.mkdirSync(config.pluginDir, { recursive: true });
    const ipam = new IpamHandlers(this.ctx);
    // A managed plugin gets one socket for both interfaces; a legacy install one per driver name.
    const sockets: Array<[string, Routes]> =
      config.pluginMode === 'managed'
        ? [['calico.sock', { ...activate(['NetworkDriver', 'IpamDriver']), ...networkDriverRoutes(this.ctx, this.sandboxes), ...ipam.routes() }]]
        : [
            ['calico.sock', { ...activate(['NetworkDriver']), ...networkDriverRoutes(this.ctx, this.sandboxes) }],
            ['calico-ipam.sock', { ...activate(['IpamDriver']), ...ipam.routes() }],
          ];
    for (const [name, routes] of sockets) {
      const p = path.join(config.pluginDir, name);
      this.servers.push({ server: await listenUnix(createPluginApp(routes, log, this.metrics), p), path: p });
    }
    await this.status.listenUnix();
    log.info('plugin sockets listening', { dir: config.pluginDir, sockets: sockets.map(([n]) => n), node: config.nodeName });
    void this.initialise();
    this.watcher = new DockerWatcher(this.ctx, config.dockerHost);
    this.watcher.start();
    this.reconciler = new Reconciler(this.ctx, this.watcher, this.sandboxes, {
      intervalMs: config.reconcileIntervalMs,
      graceMs: config.reconcileGraceMs,
      metrics: this.metrics,
    });
    this.reconciler.start();
  }

  private async initialise(): Promise<void> {
    const { config, log } = this.opts;
    this.startup = new Supervisor('start-up', log, { baseMs: 250, maxMs: 5000 });
    await this.startup.run(async () => {
      let endpoints = config.etcdEndpoints;
      try {
        // The embedded etcd is reached with its own certificates, an external one as configured.
        let tls: Pick<Config, 'etcdCaFile' | 'etcdCertFile' | 'etcdKeyFile' | 'etcdUsername' | 'etcdPassword'> = config;
        if (!endpoints) {
          if (!this.etcd) {
            this.etcd = new EmbeddedEtcd(config.dataDir, config.etcdBinary, log);
            const url = await this.etcd.start();
            fs.writeFileSync(embeddedEndpointFile(config), url + '\n');
          }
          endpoints = [this.etcd.endpoint];
          const t = this.etcd.tls!;
          tls = { etcdCaFile: t.caFile, etcdCertFile: t.certFile, etcdKeyFile: t.keyFile };
        }
        this.kv ??= new EtcdKV({
          endpoints,
          caFile: tls.etcdCaFile,
          certFile: tls.etcdCertFile,
          keyFile: tls.etcdKeyFile,
          username: tls.etcdUsername,
          password: tls.etcdPassword,
          log,
          metrics: this.metrics,
        });
        for (const [family, cidr, settings] of [
          [4, config.ipv4Pool, config.ipv4PoolSettings],
          [6, config.ipv6Pool, config.ipv6PoolSettings],
        ] as const) {
          const made = await this.ctx.pools.ensureDefault(family, cidr, settings);
          if (made) log.info('created default pool', { cidr: made.cidr, blockSize: made.blockSize, ...settings });
        }
        await this.register();
        if (!this.liveness) {
          this.liveness = new Liveness(this.kv, config.nodeName, config.livenessTtl, log);
          this.liveness.start();
        }
        // Which endpoints share a container survives a restart through the endpoint records.
        for (const ep of await this.ctx.records.listEndpoints(config.nodeName)) if (ep.sandbox) this.sandboxes.joined(ep.sandbox, ep.id);
        await this.ctx.dataplane.enableForwarding(true);
      } catch (err) {
        this.lastError = errorMessage(err);
        if (err instanceof ConfigError && this.opts.onConfigError) {
          this.opts.onConfigError(err);
          return 'done';
        }
        throw err;
      }
      void this.startBackground('the route agent', () => this.startRouting());
      void this.startBackground('the outgoing NAT agent', () => this.startNat());
      void this.startBackground('the published-ports agent', () => this.startPorts());
      void this.startBackground('the encapsulation agent', () => this.startEncap());
      // Ready only with the firewall in place: no container is wired before its rules can
      // exist, and after a restart nothing denied passes once start-up is complete.
      await this.firewallFirst(FIREWALL_START_MS);
      this.isReady = true;
      this.markReady();
      log.info('calico node ready', { node: config.nodeName, etcd: endpoints });
      return 'done';
    });
  }

  /** Runs a start-up step in the background until it succeeds; its failures never stop the node. */
  private startBackground(what: string, step: () => Promise<void>): Promise<void> {
    const s = new Supervisor(`starting ${what}`, this.opts.log, { baseMs: 500, maxMs: 10_000 });
    this.supervisors.push(s);
    return s.run(async () => {
      await step();
      return 'done';
    });
  }

  /** BGP: BIRD configured from etcd (unless CALICO_BIRD=off). */
  private async startRouting(): Promise<void> {
    const { config, log } = this.opts;
    if (config.bird === 'off' || this.routes || this.stopping) return;
    const dir = path.join(config.dataDir, 'bird');
    this.bird ??= new Bird({ dir, socket: path.join(dir, 'bird.ctl'), external: config.bird === 'external', log });
    const agent = new RouteAgent(this.ctx, this.bird);
    this.routes = await started(agent);
  }

  /**
   * CALICO_FIREWALL resolved once (a libnftables probe): the policy, NAT and ports agents all
   * follow it. A refusal is not kept, so a retried start asks again.
   */
  private firewallKind(): Promise<'nftables' | 'iptables'> {
    this.kind ??= firewallKind(this.opts.config.firewall, this.opts.log).catch((err) => {
      this.kind = undefined;
      throw err;
    });
    return this.kind;
  }

  /** VXLAN and IP-in-IP tunnels and routes for the pools that ask for them, from etcd (no BGP needed). */
  private async startEncap(): Promise<void> {
    if (this.encap || this.stopping) return;
    const agent = new EncapAgent(this.ctx, { debounceMs: 100, resyncMs: this.opts.config.reconcileIntervalMs, bgp: this.opts.config.bird !== 'off' });
    this.encap = await started(agent);
  }

  /** Outgoing NAT for natOutgoing pools, on the firewall's kernel interface, whether or not policy is on. */
  private async startNat(): Promise<void> {
    if (this.nat || this.stopping) return;
    const kind = await this.firewallKind();
    const [mine, other] = kind === 'nftables' ? [new NftNat(), new IptablesNat()] : [new IptablesNat(), new NftNat()];
    const agent = new NatAgent(this.ctx, mine, other, { debounceMs: 100, resyncMs: this.opts.config.reconcileIntervalMs });
    this.nat = await started(agent);
  }

  /** DNAT for published ports (`docker run -p`), on the firewall's kernel interface, whether or not policy is on. */
  private async startPorts(): Promise<void> {
    if (this.ports || this.stopping) return;
    const kind = await this.firewallKind();
    const [mine, other] = kind === 'nftables' ? [new NftPorts(), new IptablesPorts()] : [new IptablesPorts(), new NftPorts()];
    const agent = new PortsAgent(this.ctx, mine, other, { debounceMs: 20, resyncMs: this.opts.config.reconcileIntervalMs });
    this.ports = await started(agent);
    this.ctx.ports = this.ports;
  }

  /** Starts the policy agent and waits, bounded, for its first apply (or for old rules to go when off). */
  private async firewallFirst(ms: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<false>((r) => (timer = setTimeout(() => r(false), ms)));
    const done = this.startBackground('the policy agent', () => this.startPolicy()).then(async () => {
      await (this.policy ?? (this.ctx.firewall as PolicyAgent | undefined))?.firstApplied;
      return true;
    });
    const ok = await Promise.race([done, timeout]);
    clearTimeout(timer);
    if (!ok) this.opts.log.warn('the firewall is not in place yet; start-up goes on and the rules follow as soon as they apply', { waitedMs: ms });
  }

  /** The firewall for this host's containers, from etcd (unless CALICO_POLICY=off). */
  private async startPolicy(): Promise<void> {
    const { config, log } = this.opts;
    if (!config.policy) {
      // Turned off: rules left by an earlier run must not keep filtering with no one updating them.
      await forwardWithoutPolicy(log);
      log.info('policy is off (CALICO_POLICY=off); calico firewall rules removed');
      return;
    }
    if (this.policy || this.stopping) return;
    const backend = (await this.firewallKind()) === 'nftables' ? new NftablesBackend() : new IptablesBackend();
    await prepareFirewall(backend);
    const agent = new PolicyAgent(this.ctx, { endpointToHost: config.endpointToHost, backend, metrics: this.metrics });
    log.info('firewall backend chosen', { backend: backend.name, asked: config.firewall });
    // A switch of backend leaves the other's rules behind. They go only once ours are in place:
    // until then both filter, which never lets through what either denies.
    void agent.firstApplied.then(() => removeOtherFirewalls(log, backend.name));
    try {
      this.ctx.firewall = agent;
      await agent.start();
      this.policy = agent;
    } catch (err) {
      this.ctx.firewall = undefined;
      await agent.stop();
      throw err;
    }
  }

  private async register(): Promise<void> {
    const { config } = this.opts;
    const ipv4 = config.ip ?? (await this.ctx.dataplane.uplinkIPv4());
    const ipv6 = config.ip6 ?? (await this.ctx.dataplane.uplinkIPv6());
    const ipv4Subnet = ipv4 ? await subnetOf(ipv4) : undefined;
    // What operators set on the host (its route reflector role) survives restarts.
    const prev = await this.ctx.kv.get(keys.host(config.nodeName));
    const kept = prev
      ? codecs.host.decodeAll([prev], (key, err) => this.opts.log.warn('replacing an unreadable host record', { key, error: err.message }))[0]
      : undefined;
    const rec: HostRecord = {
      name: config.nodeName,
      ...(config.asn !== undefined ? { asn: config.asn } : {}),
      version: VERSION,
      startedAt: new Date().toISOString(),
      ...(ipv4 ? { ipv4 } : {}),
      ...(ipv6 ? { ipv6 } : {}),
      ...(ipv4Subnet ? { ipv4Subnet } : {}),
      vxlanMac: vtepMac(config.nodeName),
      ...(kept?.routeReflector ? { routeReflector: kept.routeReflector } : {}),
    };
    await this.ctx.kv.put(keys.host(config.nodeName), codecs.host.encode(rec));
    this.opts.log.info('host registered', { ...rec });
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.startup?.stop();
    for (const s of this.supervisors) s.stop();
    this.watcher?.stop();
    this.reconciler?.stop();
    await this.liveness?.stop();
    await this.routes?.stop();
    await this.nat?.stop();
    await this.ports?.stop();
    await this.encap?.stop();
    await this.policy?.stop();
    await this.bird?.stop();
    for (const s of this.servers) await closeUnix(s.server, s.path);
    this.servers = [];
    await this.status.close();
    await this.kv?.close();
    await this.etcd?.stop();
    this.ctx.dataplane.close();
    this.opts.log.info('calico node stopped', { node: this.opts.config.nodeName });
  }
}

/** An agent once its start resolved; one whose start failed is stopped again (its watches and timers go). */
async function started<T extends { start(): Promise<void>; stop(): Promise<void> }>(agent: T): Promise<T> {
  try {
    await agent.start();
    return agent;
  } catch (err) {
    await agent.stop();
    throw err;
  }
}
