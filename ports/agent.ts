/**
 * The published-ports agent inside `calico node`: list-watches this host's endpoint records and
 * keeps the kernel's DNAT (ports/rules.ts) in line with the bindings the driver marked published,
 * so a port is live once ProgramExternalConnectivity recorded it and gone once Revoke, Leave or
 * DeleteEndpoint cleared it, whichever process or restart came in between. Independent of
 * CALICO_POLICY, like outgoing NAT. The periodic pass checks the kernel and rewrites what someone
 * edited or flushed.
 */
import type { NodeContext } from '../agent/context';
import { codecs } from '../lib/datastore/codec';
import { keys } from '../lib/datastore/keys';
import { KeptRules } from '../firewall/kept-rules';
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
  private rules: KeptRules<PortsPlan>;
  /** Each endpoint's published rules in the kernel (as rulesOf renders them), and who waits for that. */
  private live = new Map<string, string>();
  private waiters = new Set<() => void>();

  constructor(
    ctx: Pick<NodeContext, 'kv' | 'log' | 'host'>,
    readonly backend: PortsBackend,
    /** The backend not in use: its rules go at start, so a switch never translates twice. */
    other: PortsBackend,
    opts: PortsAgentOptions = { debounceMs: 20, resyncMs: 30_000 },
  ) {
    const { log } = ctx;
    const prefix = keys.endpoints(ctx.host);
    this.rules = new KeptRules(
      ctx,
      backend,
      other,
      {
        what: 'the published-port rules',
        prefix,
        plan: (state) =>
          portsPlan(
            codecs.endpoint.decodeAll(state.under(prefix), (key, err) => log.warn('skipped an unreadable endpoint record', { key, error: err.message })),
          ),
        applied: (plan, changed) => {
          this.live = rulesByEndpoint(plan);
          for (const w of [...this.waiters]) w();
          if (changed) log.info('published-port rules applied', { backend: backend.name, rules: ruleCount(plan) });
        },
      },
      { ...opts, retryMs: 500 },
    );
  }

  start(): Promise<void> {
    return this.rules.start();
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

  stop(): Promise<void> {
    return this.rules.stop();
  }
}
