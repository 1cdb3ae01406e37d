/**
 * Keeps BIRD's event loop turning while its sessions come up. BIRD 2.0.12 can leave a session's
 * first UPDATE queued after the session is established: the send is scheduled from work it runs
 * after the event list, so its loop goes back to poll() with up to 3 s to wait and sends only
 * when something else wakes it (seen with strace: OPEN and KEEPALIVE answered, then 1.8 s asleep
 * with the UPDATE unsent, until a netlink message arrived). A joining host then waits that long
 * for routes. Any activity on BIRD's control socket wakes it, so while sessions are starting we
 * ask it `show protocols` every 100 ms (which also says when they are all up) and stop once every
 * BGP session has been established for one more round, or after `windowMs`.
 */
import net from 'node:net';

/** From `show protocols` text: how many BGP sessions, and whether all are Established. */
export function sessionsUp(text: string): { sessions: number; allUp: boolean } {
  const rows = text.split('\n').filter((l) => /^(?:\d{4}[- ])?\s*\S+\s+BGP\s/.test(l));
  return { sessions: rows.length, allUp: rows.every((l) => /\bEstablished\b/.test(l)) };
}

/** One `show protocols` over the control socket; '' when BIRD does not answer in `timeoutMs`. */
export function showProtocols(socket: string, timeoutMs = 500): Promise<string> {
  return new Promise((resolve) => {
    let out = '';
    const done = () => {
      clearTimeout(timer);
      c.destroy();
      resolve(out);
    };
    const c = net.createConnection(socket);
    const timer = setTimeout(done, timeoutMs);
    c.on('error', done);
    c.on('connect', () => c.write('show protocols\n'));
    c.on('data', (d) => {
      out += String(d);
      // Replies end with a line whose code is followed by a space; 0001 is the greeting.
      if (/(^|\n)(?!0001)\d{4} [^\n]*\n/.test(out)) done();
    });
  });
}

export class BirdWaker {
  private until = 0;
  private running = false;
  private stopped = false;

  constructor(
    private socket: string,
    private opts: { windowMs: number; everyMs: number } = { windowMs: 5000, everyMs: 100 },
  ) {}

  /** Sessions may be starting (BIRD started, sessions added): keep BIRD awake for a while. */
  kick(): void {
    this.until = Date.now() + this.opts.windowMs;
    if (!this.running && !this.stopped) void this.loop();
  }

  stop(): void {
    this.stopped = true;
  }

  private async loop(): Promise<void> {
    this.running = true;
    let upRounds = 0;
    try {
      while (!this.stopped && Date.now() < this.until) {
        const text = await showProtocols(this.socket);
        // No answer yet (a BIRD still starting) is not "all up": keep trying until the window ends.
        upRounds = text && sessionsUp(text).allUp ? upRounds + 1 : 0;
        // One round after all are up, so an UPDATE queued at establishment has gone out.
        if (upRounds >= 2) break;
        await new Promise((r) => setTimeout(r, this.opts.everyMs).unref());
      }
    } finally {
      this.running = false;
    }
  }
}
