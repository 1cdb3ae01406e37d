/**
 * The daemon's dataplane. Changes to an endpoint's links and routes run on worker threads: the
 * kernel does that work synchronously inside sendmsg() on the calling thread (about 1 ms to
 * create a veth, 20-40 ms to delete one), and on the event loop it stalled every other plugin
 * request meanwhile; with eight containers starting at once that was an eighth of the loop.
 * Reads (listings, the uplink) stay here. Calls for one interface are serialised here,
 * whichever thread runs them.
 *
 * An unwire first asks here whether the veth still exists: DeleteEndpoint unwires again after
 * Leave (for rollbacks that skip Leave), and posted to a worker that lookup waited behind the
 * worker's other deletions (each blocks its thread 20-40 ms) only to find nothing to do; with 8
 * containers stopping at once that was a third of teardown's time.
 */
import { KeyedMutex } from '../retry';
import { type DataplaneLogger, createLinuxDataplane } from './linux';
import { createThreadedDataplane } from './threaded';
import type { Dataplane, EndpointWiring, WiringResult, WorkloadRoute } from './types';

/** A main-thread dataplane that can also say, cheaply, whether a link exists. */
export type LocalDataplane = Dataplane & { hasLink?(name: string): Promise<boolean> };

export class HybridDataplane implements Dataplane {
  private order = new KeyedMutex();

  constructor(
    private local: LocalDataplane,
    private threaded: Dataplane,
  ) {}

  wireEndpoint(w: EndpointWiring): Promise<WiringResult> {
    return this.order.run(w.hostIfName, () => this.threaded.wireEndpoint(w));
  }

  unwireEndpoint(hostIfName: string): Promise<void> {
    return this.order.run(hostIfName, async () => {
      // A failed lookup says nothing: the worker's unwire decides (and reports) then.
      if (this.local.hasLink && !(await this.local.hasLink(hostIfName).catch(() => true))) return;
      await this.threaded.unwireEndpoint(hostIfName);
    });
  }

  ensureRoute(hostIfName: string, ip: string): Promise<void> {
    return this.order.run(hostIfName, () => this.threaded.ensureRoute(hostIfName, ip));
  }

  listWorkloadLinks(): Promise<string[]> {
    return this.local.listWorkloadLinks();
  }

  listWorkloadRoutes(): Promise<WorkloadRoute[]> {
    return this.local.listWorkloadRoutes();
  }

  enableForwarding(ipv6: boolean): Promise<void> {
    return this.local.enableForwarding(ipv6);
  }

  uplinkMtu(): Promise<number | undefined> {
    return this.local.uplinkMtu();
  }

  uplinkIPv4(): Promise<string | undefined> {
    return this.local.uplinkIPv4();
  }

  uplinkIPv6(): Promise<string | undefined> {
    return this.local.uplinkIPv6();
  }

  close(): void {
    this.threaded.close();
    this.local.close();
  }
}

export function createHybridDataplane(logger?: DataplaneLogger, opts: { procSys?: string } = {}): HybridDataplane {
  return new HybridDataplane(createLinuxDataplane(logger, opts), createThreadedDataplane(logger, opts));
}
