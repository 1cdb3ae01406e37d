/** Bounded, jittered retries and deadlines: no loop in this project spins forever or in lockstep. */
import { UnavailableError } from './errors';

export interface RetryOptions {
  /** Total attempts, first included. */
  attempts: number;
  /** Base delay in ms; attempt n waits up to base * 2^n, capped. */
  baseMs: number;
  maxMs: number;
  /** Return true to retry after this error; false rethrows at once. */
  retryOn?: (err: unknown) => boolean;
}

export function jitteredDelay(attempt: number, baseMs: number, maxMs: number): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** attempt);
  // "Full jitter": concurrent losers of the same race spread out instead of colliding again.
  return Math.random() * ceiling;
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export async function retry<T>(fn: (attempt: number) => Promise<T>, opts: RetryOptions): Promise<T> {
  let last: unknown;
  for (let attempt = 0; attempt < opts.attempts; attempt++) {
    try {
      return await fn(attempt);
    } catch (err) {
      last = err;
      if (opts.retryOn && !opts.retryOn(err)) throw err;
      if (attempt + 1 < opts.attempts) await sleep(jitteredDelay(attempt, opts.baseMs, opts.maxMs));
    }
  }
  throw last;
}

/** Rejects with an UnavailableError when `p` has not settled within `ms`. */
export function withDeadline<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new UnavailableError(`${what} timed out after ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/** Serialises async work per key, so concurrent requests on one host do not race each other. */
export class KeyedMutex {
  private tails = new Map<string, Promise<unknown>>();

  run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.tails.get(key) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    const tail = next.catch(() => undefined);
    this.tails.set(key, tail);
    void tail.then(() => {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    });
    return next;
  }

  /** Holds several keys at once, taken in sorted order so two callers cannot deadlock. */
  runAll<T>(keys: string[], fn: () => Promise<T>): Promise<T> {
    const sorted = [...new Set(keys)].sort();
    const step = (i: number): Promise<T> => (i === sorted.length ? fn() : this.run(sorted[i], () => step(i + 1)));
    return step(0);
  }
}
