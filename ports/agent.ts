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
import type { EndpointRecord } from '../lib/datastore/records';
import { type PortsPlan, portsPlan, ruleCount } from './rules';

/** Each endpoint's rules of a plan, as comparable text. */
function rulesByEndpoint(plan: PortsPlan): Map<string, string> {
  const by = new Map<string, string[]>();
  for (const f of [4, 6] as const) for (const r of plan.rules[f]) by.set(r.endpoint, [...(by.get(r.endpoint) ?? []), `${f} ${JSON.stringify(r)}`]);
  return new Map([...by].map(([id, rules]) => [id, rules.sort().join('\n')]));
}

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
  /** Each endpoint's published rules in the kernel (as rulesOf renders them), and who waits for that. */
  private live = new Map<string, string>();
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
    this.live = rulesByEndpoint(plan);
    for (const w of [...this.waiters]) w();
    if (changed) log.info('published-port rules applied', { backend: this.backend.name, rules: ruleCount(plan) });
  }

  /**
   * Resolves true once the kernel has exactly the published rules of `ep` (as recorded), false
   * after `timeoutMs`: ProgramExternalConnectivity answers when the ports work, as Docker's bridge.
   */
  covers(ep: EndpointRecord, timeoutMs: number): Promise<boolean> {
    const want = rulesByEndpoint(portsPlan([ep])).get(ep.id);
    const ok = () => this.live.get(ep.id) === want;
    if (ok()) return Promise.resolve(true);
    return new Promise((resolve) => {
      const done = (v: boolean) => {
        clearTimeout(timer);
        this.waiters.delete(check);
        resolve(v);
      };
      const check = () => ok() && done(true);
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
