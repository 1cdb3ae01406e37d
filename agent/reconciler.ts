/**
 * Reconciliation at start-up and on a timer: gathers Docker's, etcd's and the kernel's views of
 * this host, plans repairs (reconcile-plan.ts) and carries them out, logging each one. It makes
 * crashes harmless: a node killed between RequestAddress and CreateEndpoint, a Docker that
 * forgot to call Leave, a route deleted by hand, all converge without an operator.
 */
import type { Sandboxes } from '../driver/sandboxes';
import * as blk from '../ipam/block';
import type { NodeContext } from './context';
import type { Owner } from '../lib/datastore/records';
import { errorMessage } from '../lib/errors';
import { formatIP, parseIP } from '../lib/ip';
import type { RepairRecorder } from '../lib/metrics';
import { jitteredDelay, sleep } from '../lib/retry';
import type { DockerWatcher } from './docker-watcher';
import { type Repair, planRepairs } from './reconcile-plan';

export interface ReconcileOptions {
  intervalMs: number;
  graceMs: number;
  /** Counts passes and repairs by kind (metrics on). */
  metrics?: RepairRecorder;
}

export class Reconciler {
  private suspects = new Map<string, string>();
  private stopped = false;
  private running?: Promise<void>;

  constructor(
    private ctx: NodeContext,
    private docker: DockerWatcher,
    private sandboxes: Sandboxes,
    private opts: ReconcileOptions,
  ) {}

  start(): void {
    void this.loop();
  }

  stop(): void {
    this.stopped = true;
  }

  private async loop(): Promise<void> {
    while (!this.stopped) {
      try {
        await this.ctx.ready();
        const t0 = performance.now();
        await this.runOnce().catch((err: unknown) => {
          this.opts.metrics?.reconcilePass((performance.now() - t0) / 1000, true);
          throw err;
        });
        this.opts.metrics?.reconcilePass((performance.now() - t0) / 1000, false);
      } catch (err) {
        this.ctx.log.warn('reconciliation pass failed; the next one retries', { error: errorMessage(err) });
      }
      // Jitter keeps many hosts from hitting etcd in the same second.
      await sleep(this.opts.intervalMs * 0.75 + jitteredDelay(0, this.opts.intervalMs * 0.5, this.opts.intervalMs * 0.5));
    }
  }

  /** One pass; concurrent callers share it. Returns the repairs made. */
  runOnce(): Promise<void> {
    this.running ??= this.pass().finally(() => (this.running = undefined));
    return this.running;
  }

  private async pass(): Promise<void> {
    const { ctx } = this;
    const t0 = performance.now();
    // Order matters: the kernel first, then Docker, then etcd. CreateEndpoint starts writing the
    // record before Join makes the link, and DeleteEndpoint removes the link before the record,
    // so a link seen here has its record in the later listing, or in the writes still in flight
    // just before it (a write that finished before the listing began is in the listing), unless
    // it is already going.
    const links = await ctx.dataplane.listWorkloadLinks();
    const routes = await ctx.dataplane.listWorkloadRoutes();
    const dockerEndpoints = await this.docker.liveEndpointIds();
    const writing = ctx.records.writingEndpoints();
    const [listed, networks, blocks] = await Promise.all([
      ctx.records.listEndpoints(ctx.host),
      ctx.records.listNetworks(ctx.host),
      ctx.allocator.blocks.list(),
    ]);
    const endpoints = [...listed, ...writing.filter((w) => !listed.some((e) => e.id === w.id))];
    const allocations: Array<{ ip: string; owner: Owner }> = [];
    for (const b of blocks) {
      for (const a of blk.allocations(b.rec, b.net)) if (a.owner.host === ctx.host) allocations.push({ ip: formatIP(a.ip), owner: a.owner });
    }
    const plan = planRepairs({
      host: ctx.host,
      now: Date.now(),
      dockerEndpoints,
      endpoints,
      networks,
      allocations,
      links,
      routes,
      suspects: this.suspects,
      graceMs: this.opts.graceMs,
    });
    this.suspects = plan.suspects;
    for (const r of plan.repairs) {
      try {
        if (await this.apply(r)) this.opts.metrics?.repaired(r.kind);
      } catch (err) {
        ctx.log.warn('repair failed; the next pass retries', { repair: r.kind, error: errorMessage(err) });
      }
    }
    // Its duration and sizes show how a pass grows with the endpoints of the host (bench/scale-host.ts reads them).
    ctx.log.debug('reconciliation pass done', {
      repairs: plan.repairs.length,
      docker: dockerEndpoints ? 'answered' : 'unreachable',
      durationMs: Math.round(performance.now() - t0),
      links: links.length,
      endpoints: endpoints.length,
      blocks: blocks.length,
    });
  }

  /** Carries out one repair; false when there was nothing left to do. */
  private async apply(r: Repair): Promise<boolean> {
    const { ctx } = this;
    switch (r.kind) {
      case 'add-route':
        await ctx.dataplane.ensureRoute(r.ifName, r.ip);
        ctx.log.info('repaired: added missing host route', { interface: r.ifName, ip: r.ip, why: r.why });
        return true;
      case 'remove-link':
        await ctx.dataplane.unwireEndpoint(r.ifName);
        ctx.log.info('repaired: removed a veth', { interface: r.ifName, why: r.why });
        return true;
      case 'remove-endpoint': {
        const e = r.endpoint;
        await ctx.dataplane.unwireEndpoint(e.ifName);
        this.sandboxes.left(e.id);
        await ctx.records.deleteEndpoint(e.id);
        for (const cidr of [...e.ipv4, ...e.ipv6]) await ctx.allocator.release(parseIP(cidr.split('/')[0]));
        ctx.log.info('repaired: removed an endpoint and released its addresses', { endpoint: e.id, addresses: [...e.ipv4, ...e.ipv6], why: r.why });
        return true;
      }
      case 'release': {
        const out = await ctx.allocator.release(parseIP(r.ip), { handle: r.handle });
        if (out === 'released') ctx.log.info('repaired: released a leaked address', { ip: r.ip, why: r.why });
        return out === 'released';
      }
    }
  }
}
