/**
 * The outgoing-NAT agent inside `calico node`: list-watches the pools in etcd and keeps the
 * kernel's masquerade rules (nat/rules.ts) in line with their natOutgoing settings, so
 * `calico pool set --nat-outgoing` takes effect on every host within a debounce. Independent of
 * CALICO_POLICY: a host without our firewall still needs its containers to reach the outside.
 * Watching, repair and the backend switch are firewall/kept-rules.ts.
 */
import type { NodeContext } from '../agent/context';
import { codecs } from '../lib/datastore/codec';
import { keys } from '../lib/datastore/keys';
import { KeptRules } from '../firewall/kept-rules';
import type { NatBackend } from './backends';
import { natPlan } from './rules';

export interface NatAgentOptions {
  debounceMs: number;
  resyncMs: number;
}

export class NatAgent {
  private rules: KeptRules<ReturnType<typeof natPlan>>;

  constructor(
    ctx: Pick<NodeContext, 'kv' | 'log'>,
    readonly backend: NatBackend,
    /** The backend not in use: its rules go at start, so a switch never translates twice. */
    other: NatBackend,
    opts: NatAgentOptions = { debounceMs: 100, resyncMs: 30_000 },
  ) {
    const { log } = ctx;
    this.rules = new KeptRules(
      ctx,
      backend,
      other,
      {
        what: 'the outgoing NAT rules',
        prefix: keys.pools(),
        plan: (state) =>
          natPlan(codecs.pool.decodeAll(state.under(keys.pools()), (key, err) => log.warn('skipped an unreadable pool record', { key, error: err.message }))),
        applied: (plan, changed) => {
          if (changed) log.info('outgoing NAT rules applied', { backend: backend.name, natPools: [...plan.nat[4], ...plan.nat[6]] });
        },
      },
      { ...opts, retryMs: 1000 },
    );
  }

  start(): Promise<void> {
    return this.rules.start();
  }

  stop(): Promise<void> {
    return this.rules.stop();
  }
}
