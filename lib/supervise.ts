/**
 * The one shape of a loop that must keep going: run a task, and when it fails, wait a bounded,
 * jittered, growing delay and run it again. Logged once when it starts failing (warn) and once
 * when it works again (info); the failures in between go to debug, so a long outage is two lines,
 * not thousands.
 */
import { errorMessage } from './errors';
import type { Logger } from './log';
import { jitteredDelay } from './retry';

export interface SuperviseOptions {
  /** First retry after about `baseMs`, growing to `maxMs`. */
  baseMs?: number;
  maxMs?: number;
}

export class Supervisor {
  private stopped = false;
  private wakeUp?: () => void;

  constructor(
    private what: string,
    private log: Logger,
    private opts: SuperviseOptions = {},
  ) {}

  get stopping(): boolean {
    return this.stopped;
  }

  /**
   * Runs `task` until it returns 'done' or the supervisor is stopped. 'again' runs it again at
   * once (a stream that ended normally); a throw retries after the backoff.
   */
  async run(task: (attempt: number) => Promise<'done' | 'again'>): Promise<void> {
    const base = this.opts.baseMs ?? 250;
    const max = this.opts.maxMs ?? 10_000;
    let failures = 0;
    while (!this.stopped) {
      try {
        const out = await task(failures);
        if (failures > 0) this.log.info(`${this.what}: working again`, { after: failures });
        failures = 0;
        if (out === 'done') return;
      } catch (err) {
        if (this.stopped) return;
        this.log.log(failures === 0 ? 'warn' : 'debug', `${this.what} failed; retrying`, { attempt: failures, error: errorMessage(err) });
        await this.pause(base + jitteredDelay(failures++, base, max));
      }
    }
  }

  /** A wait that stop() cuts short, so a stopped supervisor holds no timer. */
  private pause(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const t = setTimeout(resolve, ms);
      this.wakeUp = () => {
        clearTimeout(t);
        resolve();
      };
    });
  }

  stop(): void {
    this.stopped = true;
    this.wakeUp?.();
  }
}
