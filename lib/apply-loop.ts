/**
 * How the agents (policy, routes) turn a stream of changes into applies: one apply at a time;
 * changes within the debounce window coalesce into one apply, and a pending apply is never
 * pushed back by later ones (a burst would otherwise starve it); a change during an apply
 * causes exactly one more after it; a failed apply is logged (warn once per streak, then debug)
 * and retried after a growing, jittered delay. `schedule(true)` skips the debounce for a caller
 * that is waiting.
 */
import { errorMessage } from './errors';
import type { Logger } from './log';
import { jitteredDelay } from './retry';

export interface ApplyLoopOptions {
  debounceMs: number;
  /** First retry after about `retryMs`, growing up to `retryCapMs`. */
  retryMs: number;
  retryCapMs: number;
  /** Names what failed in the log line: "could not apply <what>; retrying". */
  what: string;
}

export class ApplyLoop {
  private timer?: NodeJS.Timeout;
  private busy = false;
  private again = false;
  private againNow = false;
  private stopped = false;
  private failures = 0;

  constructor(
    private apply: () => Promise<void>,
    private log: Logger,
    private opts: ApplyLoopOptions,
  ) {}

  schedule(now = false): void {
    if (this.stopped) return;
    if (now) {
      clearTimeout(this.timer);
      this.timer = undefined;
      void this.run(true);
      return;
    }
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.run(false);
    }, this.opts.debounceMs);
  }

  /** Applies at once and resolves when done; for start-up, before anything else schedules. */
  async runNow(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.run(true);
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private async run(now: boolean): Promise<void> {
    if (this.busy) {
      this.again = true;
      this.againNow ||= now;
      return;
    }
    this.busy = true;
    try {
      await this.apply();
      this.failures = 0;
    } catch (err) {
      this.log.log(this.failures === 0 ? 'warn' : 'debug', `could not apply ${this.opts.what}; retrying`, { error: errorMessage(err) });
      setTimeout(() => this.schedule(), this.opts.retryMs + jitteredDelay(this.failures++, this.opts.retryMs, this.opts.retryCapMs)).unref();
    } finally {
      this.busy = false;
      if (this.again) {
        const now2 = this.againNow;
        this.again = this.againNow = false;
        this.schedule(now2);
      }
    }
  }
}
