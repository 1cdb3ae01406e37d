/**
 * Prometheus metrics of one `calico node` (CALICO_METRICS_ADDR). The registry is this node's own,
 * not prom-client's global one, so tests and several nodes in one process never share counts.
 * Components see only the small recorder interfaces below; the node hands them this object when
 * metrics are on and nothing when they are off, so a node without metrics does no metric work.
 * Counters and histograms are bound to their labels once, where the label set is known in advance,
 * so the hot path (a container start) only adds to numbers. Gauges that are costly to know (IPAM,
 * BGP) are computed on scrape from sources the node sets, each under a deadline.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { ErrorKind } from './errors';
import { withDeadline } from './retry';

/** A plugin request's outcome: success, the class of the error it was refused with, or the client hung up. */
export type Outcome = 'ok' | ErrorKind | 'client-gone';
const OUTCOMES: readonly Outcome[] = ['ok', 'bad-request', 'not-found', 'conflict', 'unavailable', 'internal', 'client-gone'];

/** Records one plugin method's requests; bound per method by the server. */
export type RequestRecorder = (outcome: Outcome, seconds: number) => void;
export interface PluginRecorder {
  /** The recorder for one method; called once per route when the server is made. */
  method(name: string): RequestRecorder;
}

export type EtcdOp = 'get' | 'list' | 'txn' | 'lease-put';
export interface EtcdRecorder {
  /** One call (retries included) that took `seconds`, and whether it failed in the end. */
  etcdRequest(op: EtcdOp, seconds: number, failed: boolean): void;
}

export interface FirewallRecorder {
  firewallApplied(backend: string, how: 'full' | 'delta' | 'resync', seconds: number, objects: number): void;
  firewallFailed(backend: string, seconds: number): void;
}

export interface RepairRecorder {
  repaired(kind: string): void;
  reconcilePass(seconds: number, failed: boolean): void;
}

export interface IpamRow {
  pool: string;
  host: string;
  inUse: number;
  borrowed: number;
  free: number;
  blocks: number;
}
export interface FirewallCounts {
  backend: string;
  rules: number;
  sets: number;
  setMembers: number;
  policies: number;
  localEndpoints: number;
}

/** What the gauges read on scrape; the node fills these in as its parts start. */
export interface MetricSources {
  ipam?: () => Promise<{ rows: IpamRow[]; poolSizes: Array<{ pool: string; size: number }> }>;
  bgpSessions?: () => Promise<Array<{ state: string }>>;
  firewall?: () => FirewallCounts | undefined;
}

/** A scrape-time source that does not answer within this is reported down, not waited for. */
const SOURCE_DEADLINE_MS = 3000;
const FAST_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

export class Metrics implements PluginRecorder, EtcdRecorder, FirewallRecorder, RepairRecorder {
  readonly registry = new Registry();
  readonly sources: MetricSources = {};
  private requests = new Counter({
    name: 'calico_plugin_requests_total',
    help: 'Plugin requests by method and outcome',
    labelNames: ['method', 'outcome'] as const,
    registers: [this.registry],
  });
  private requestSeconds = new Histogram({
    name: 'calico_plugin_request_duration_seconds',
    help: 'Plugin request latency by method',
    labelNames: ['method'] as const,
    buckets: FAST_BUCKETS,
    registers: [this.registry],
  });
  private etcdRequests = new Counter({
    name: 'calico_etcd_requests_total',
    help: 'etcd calls (retries included) by operation',
    labelNames: ['op'] as const,
    registers: [this.registry],
  });
  private etcdErrors = new Counter({
    name: 'calico_etcd_request_errors_total',
    help: 'etcd calls that failed after their retries, by operation',
    labelNames: ['op'] as const,
    registers: [this.registry],
  });
  private etcdSeconds = new Histogram({
    name: 'calico_etcd_request_duration_seconds',
    help: 'etcd call latency (retries included) by operation',
    labelNames: ['op'] as const,
    buckets: FAST_BUCKETS,
    registers: [this.registry],
  });
  private fwApplies = new Counter({
    name: 'calico_firewall_applies_total',
    help: 'Firewall applies by backend, kind (full, delta, resync) and outcome',
    labelNames: ['backend', 'how', 'outcome'] as const,
    registers: [this.registry],
  });
  private fwSeconds = new Histogram({
    name: 'calico_firewall_apply_duration_seconds',
    help: 'Firewall apply duration by backend',
    labelNames: ['backend'] as const,
    buckets: FAST_BUCKETS,
    registers: [this.registry],
  });
  private fwObjects = new Counter({
    name: 'calico_firewall_objects_changed_total',
    help: 'Kernel objects (rules, chains, sets, elements) written by firewall applies',
    labelNames: ['backend'] as const,
    registers: [this.registry],
  });
  private repairs = new Counter({
    name: 'calico_reconcile_repairs_total',
    help: 'Repairs made by reconciliation, by kind',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });
  private passes = new Counter({
    name: 'calico_reconcile_passes_total',
    help: 'Reconciliation passes by outcome',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });
  private passSeconds = new Histogram({
    name: 'calico_reconcile_pass_duration_seconds',
    help: 'Reconciliation pass duration',
    buckets: [0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });

  constructor(opts: { processMetrics?: boolean } = {}) {
    if (opts.processMetrics !== false) collectDefaultMetrics({ register: this.registry });
    this.scrapeGauges();
  }

  method(name: string): RequestRecorder {
    const counts = new Map(OUTCOMES.map((o) => [o, this.requests.labels(name, o)]));
    const hist = this.requestSeconds.labels(name);
    return (outcome, seconds) => {
      counts.get(outcome)!.inc();
      hist.observe(seconds);
    };
  }

  etcdRequest(op: EtcdOp, seconds: number, failed: boolean): void {
    this.etcdRequests.labels(op).inc();
    this.etcdSeconds.labels(op).observe(seconds);
    if (failed) this.etcdErrors.labels(op).inc();
  }

  firewallApplied(backend: string, how: 'full' | 'delta' | 'resync', seconds: number, objects: number): void {
    this.fwApplies.labels(backend, how, 'ok').inc();
    this.fwSeconds.labels(backend).observe(seconds);
    if (objects) this.fwObjects.labels(backend).inc(objects);
  }

  firewallFailed(backend: string, seconds: number): void {
    this.fwApplies.labels(backend, 'any', 'error').inc();
    this.fwSeconds.labels(backend).observe(seconds);
  }

  repaired(kind: string): void {
    this.repairs.labels(kind).inc();
  }

  reconcilePass(seconds: number, failed: boolean): void {
    this.passes.labels(failed ? 'error' : 'ok').inc();
    this.passSeconds.observe(seconds);
  }

  /** The Prometheus text exposition of every metric. */
  text(): Promise<string> {
    return this.registry.metrics();
  }

  /** Runs a scrape-time source under the deadline; undefined (and marked down) when it fails. */
  private async source<T>(name: string, fn: (() => Promise<T>) | undefined, up: Map<string, number>): Promise<T | undefined> {
    if (!fn) return undefined;
    try {
      const v = await withDeadline(fn(), SOURCE_DEADLINE_MS, `metrics source ${name}`);
      up.set(name, 1);
      return v;
    } catch {
      up.set(name, 0);
      return undefined;
    }
  }

  private scrapeGauges(): void {
    const registers = [this.registry];
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const m = this;
    // prom-client collects every metric of a scrape at once: the first gauge to ask starts one
    // read of each source (in parallel, under its deadline) and every other gauge waits for it.
    interface Round {
      ipam?: Awaited<ReturnType<NonNullable<MetricSources['ipam']>>>;
      bgp?: Array<{ state: string }>;
      up: Map<string, number>;
    }
    let pending: Promise<Round> | undefined;
    const read = async (): Promise<Round> => {
      const up = new Map<string, number>();
      const [ipam, bgp] = await Promise.all([m.source('ipam', m.sources.ipam, up), m.source('bgp', m.sources.bgpSessions, up)]);
      return { ipam, bgp, up };
    };
    const round = () => (pending ??= read().finally(() => setImmediate(() => (pending = undefined))));
    new Gauge({
      name: 'calico_metrics_source_up',
      help: 'Whether a scrape-time source (ipam, bgp) answered within its deadline in this scrape',
      labelNames: ['source'] as const,
      registers,
      async collect() {
        const r = await round();
        this.reset();
        for (const [name, v] of r.up) this.labels(name).set(v);
      },
    });
    const ipamGauge = (name: string, help: string, field: 'inUse' | 'borrowed' | 'free' | 'blocks') =>
      new Gauge({
        name,
        help,
        labelNames: ['pool', 'host'] as const,
        registers,
        async collect() {
          const r = await round();
          this.reset();
          for (const row of r.ipam?.rows ?? []) this.labels(row.pool, row.host).set(row[field]);
        },
      });
    ipamGauge('calico_ipam_addresses_in_use', 'Addresses allocated by a host in its own blocks, by pool and host', 'inUse');
    ipamGauge('calico_ipam_addresses_borrowed', 'Addresses allocated by a host in blocks not affine to it, by pool and host', 'borrowed');
    ipamGauge('calico_ipam_addresses_free', 'Unallocated addresses in blocks, by pool and the host the block is affine to ("" for none)', 'free');
    ipamGauge('calico_ipam_blocks', 'Blocks by pool and the host they are affine to ("" for none)', 'blocks');
    new Gauge({
      name: 'calico_ipam_pool_addresses',
      help: 'Addresses in each pool (claimed into blocks or not)',
      labelNames: ['pool'] as const,
      registers,
      async collect() {
        const r = await round();
        this.reset();
        for (const p of r.ipam?.poolSizes ?? []) this.labels(p.pool).set(p.size);
      },
    });
    new Gauge({
      name: 'calico_bgp_sessions',
      help: "BGP sessions of this host's BIRD by state",
      labelNames: ['state'] as const,
      registers,
      async collect() {
        const r = await round();
        this.reset();
        const by = new Map<string, number>();
        for (const s of r.bgp ?? []) by.set(s.state, (by.get(s.state) ?? 0) + 1);
        for (const [state, n] of by) this.labels(state).set(n);
      },
    });
    const fwGauge = (name: string, help: string, field: Exclude<keyof FirewallCounts, 'backend'>) =>
      new Gauge({
        name,
        help,
        labelNames: ['backend'] as const,
        registers,
        collect() {
          this.reset();
          const c = m.sources.firewall?.();
          if (c) this.labels(c.backend).set(c[field]);
        },
      });
    fwGauge('calico_firewall_rules', 'Rules of the policies and profiles the firewall holds', 'rules');
    fwGauge('calico_firewall_sets', 'Address sets the firewall holds', 'sets');
    fwGauge('calico_firewall_set_members', 'Members of all address sets the firewall holds', 'setMembers');
    fwGauge('calico_firewall_policies', 'Policies the firewall holds', 'policies');
    fwGauge('calico_firewall_local_endpoints', "This host's endpoints the firewall covers", 'localEndpoints');
  }
}
