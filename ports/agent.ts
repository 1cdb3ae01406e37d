/**
 * The published-ports agent inside `calico node`: list-watches this host's endpoint records and
 * keeps the kernel's DNAT (ports/rules.ts) in line with the bindings the driver marked published,
 * so a port is live once ProgramExternalConnectivity recorded it and gone once Revoke, Leave or
 * DeleteEndpoint cleared it, whichever process or restart came in between. Independent of
 * CALICO_POLICY, like outgoing NAT. The periodic pass checks the kernel and rewrites what someone
 * edited or flushed.
 */
import type { NodeContext } from '../agent/context';
import { ApplyLoop } from '../lib/apply-loop';
import { codecs } from '../lib/datastore/codec';
import type { Watch } from '../lib/datastore/kv';
import { keys } from '../lib/datastore/keys';
import { WatchedEntries } from '../lib/datastore/watched';
import { errorMessage } from '../lib/errors';
import type { PortsBackend } from './backends';
import { portsPlan, ruleCount } from './rules';

export interface PortsAgentOptions {
  debounceMs: number;
  resyncMs: number;
}

export class PortsAgent {
  private watch?: Watch;
  private state: WatchedEntries;
  private loop: ApplyLoop;
  private resync?: NodeJS.Timeout;
  private applied?: string;
  /** Endpoints whose published rules are in the kernel, and who waits for that. */
  private live = new Set<string>();
  private waiters = new Set<() => void>();

  constructor(
    private ctx: Pick<NodeContext, 'kv' | 'log' | 'host'>,
    readonly backend: PortsBackend,
    /** The backend not in use: its rules go at start, so a switch never translates twice. */
    private other: PortsBackend,
    private opts: PortsAgentOptions = { debounceMs: 20, resyncMs: 30_000 },
  ) {
    this.state = new WatchedEntries(() => this.loop.schedule());
    this.loop = new ApplyLoop(() => this.apply(), ctx.log, { debounceMs: opts.debounceMs, retryMs: 500, retryCapMs: 30_000, what: 'the published-port rules' });
  }

  async start(): Promise<void> {
    await this.other.remove().catch((err) => {
      // A backend whose tools are missing has nothing in the kernel to remove.
      this.ctx.log.debug('could not remove the published-port rules of the backend not in use', { backend: this.other.name, error: errorMessage(err) });
    });
    this.watch = this.ctx.kv.watch([keys.endpoints(this.ctx.host)], this.state);
    await this.watch.ready;
    this.resync = setInterval(() => this.loop.schedule(), this.opts.resyncMs);
    await this.loop.runNow();
  }

  private async apply(): Promise<void> {
    const { log } = this.ctx;
    const eps = codecs.endpoint.decodeAll(this.state.under(keys.endpoints(this.ctx.host)), (key, err) =>
      log.warn('skipped an unreadable endpoint record', { key, error: err.message }),
    );
    const plan = portsPlan(eps);
    const text = JSON.stringify(plan);
    if (text === this.applied) {
      if (await this.backend.intact()) return;
      log.warn('the published-port rules were changed outside calico node; rewriting them', { backend: this.backend.name });
    }
    await this.backend.apply(plan);
    const changed = text !== this.applied;
    this.applied = text;
    this.live = new Set([...plan.rules[4], ...plan.rules[6]].map((r) => r.endpoint));
    for (const w of [...this.waiters]) w();
    if (changed) log.info('published-port rules applied', { backend: this.backend.name, rules: ruleCount(plan) });
  }

  /**
   * Resolves true once the kernel has the endpoint's published rules, false after `timeoutMs`:
   * ProgramExternalConnectivity answers when the ports work, as Docker's bridge does.
   */
  covers(endpointId: string, timeoutMs: number): Promise<boolean> {
    if (this.live.has(endpointId)) return Promise.resolve(true);
    return new Promise((resolve) => {
      const done = (ok: boolean) => {
        clearTimeout(timer);
        this.waiters.delete(check);
        resolve(ok);
      };
      const check = () => this.live.has(endpointId) && done(true);
      const timer = setTimeout(() => done(false), timeoutMs);
      this.waiters.add(check);
    });
  }

  async stop(): Promise<void> {
    this.loop.stop();
    clearInterval(this.resync);
    await this.watch?.cancel();
  }
}
