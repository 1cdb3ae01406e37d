/**
 * The one compare-and-swap loop: read, decide, write guarded by what was read; when another
 * writer won, read again and decide again. Bounded and jittered, with one limit for the whole
 * project, so concurrent hosts spread out instead of colliding in lockstep, and a key that keeps
 * changing ends in a clear retryable error rather than a spin.
 */
import { UnavailableError } from '../errors';
import { jitteredDelay, sleep } from '../retry';
import type { Compare, KV, Op } from './kv';

export const CAS_ATTEMPTS = 20;

/** What one attempt decided: write `ops` if `compares` still hold, or nothing to write. */
export type Step<T> = { compares: Compare[]; ops: Op[]; result: T } | { done: T };

export interface TransactOptions {
  /** Names what kept changing, for the error: "block 10.0.0.0/26". */
  what: string;
  attempts?: number;
  /** Called with the store revision when the write landed. */
  onCommit?: (revision: string) => void;
}

export async function transact<T>(kv: KV, step: (attempt: number) => Promise<Step<T>>, opts: TransactOptions): Promise<T> {
  const attempts = opts.attempts ?? CAS_ATTEMPTS;
  for (let attempt = 0; attempt < attempts; attempt++) {
    const s = await step(attempt);
    if ('done' in s) return s.done;
    const rev = await kv.txn(s.compares, s.ops);
    if (rev !== undefined) {
      opts.onCommit?.(rev);
      return s.result;
    }
    if (attempt + 1 < attempts) await sleep(jitteredDelay(attempt, 2, 50));
  }
  throw new UnavailableError(`${opts.what} kept changing under concurrent writers (${attempts} attempts); try again`);
}
