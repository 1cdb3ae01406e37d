/**
 * Runs and supervises BIRD for this host (unless an external BIRD is in use), and swaps in new
 * configurations safely: written to a temporary file, checked with `bird -p`, renamed over the
 * live file (atomic), then applied with `birdc configure`, which reports errors and keeps
 * unchanged sessions up. Every program is run with an argument vector, never a shell string.
 */
import { type ChildProcess, execFile } from 'node:child_process';
import { spawnBound } from '../lib/child';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { InternalError, errorMessage } from '../lib/errors';
import type { Logger } from '../lib/log';
import { Supervisor } from '../lib/supervise';
import { BirdWaker } from './bird-wake';

const BGP_STATES = new Set(['Idle', 'Connect', 'Active', 'OpenSent', 'OpenConfirm', 'Established', 'Passive']);

/**
 * A session's BGP state from a `show protocols` row: BIRD's protocol state (up, start, down) says
 * little on its own, the Info column names the BGP finite-state-machine state while it is starting.
 */
export function sessionState(s: { state: string; info: string }): string {
  if (s.state === 'up') return 'Established';
  const first = s.info.split(/\s+/)[0];
  return BGP_STATES.has(first) ? first : s.state === 'start' ? 'Idle' : 'Down';
}

/**
 * BIRD's flags for a start: graceful-restart recovery (`-R`) only when the kernel still holds
 * routes a previous BIRD installed (`proto bird`), the sign of a restart. Recovery keeps the
 * kernel's routes until every session is back and has sent all its routes, or 15 s: on a first
 * start there is nothing to keep, and it would only hold back the routes this host learns.
 */
export function startFlags(leftoverRoutes: number): string[] {
  return leftoverRoutes > 0 ? ['-R'] : [];
}

/** A BIRD that ran this long and then died is restarted at once, with a fresh backoff. */
const STABLE_MS = 60_000;

const run = promisify(execFile);

export interface BirdOptions {
  dir: string;
  socket: string;
  /** Another process runs BIRD on `socket`: only write the configuration and reconfigure it. */
  external: boolean;
  log: Logger;
}

export class Bird {
  private child?: ChildProcess;
  private childStarted = 0;
  private started = false;
  private stopped = false;
  private supervisor: Supervisor;
  private waker: BirdWaker;
  readonly confPath: string;

  constructor(private o: BirdOptions) {
    this.confPath = path.join(o.dir, 'bird.conf');
    this.waker = new BirdWaker(o.socket);
    this.supervisor = new Supervisor('running BIRD', o.log, { baseMs: 500, maxMs: 30_000 });
  }

  /** Checks `text` with `bird -p`, then installs it atomically. Throws (installing nothing) if BIRD refuses it. */
  async install(text: string): Promise<void> {
    fs.mkdirSync(this.o.dir, { recursive: true });
    const tmp = path.join(this.o.dir, `.bird.conf.${process.pid}.tmp`);
    fs.writeFileSync(tmp, text);
    try {
      await run('bird', ['-p', '-c', tmp], { timeout: 10_000 });
    } catch (err) {
      fs.rmSync(tmp, { force: true });
      const detail = (err as { stderr?: string }).stderr?.trim() || errorMessage(err);
      throw new InternalError(`BIRD refused the rendered configuration: ${detail}`);
    }
    fs.renameSync(tmp, this.confPath);
  }

  /**
   * Starts BIRD if it is ours to run; restarts it when it dies (supervised: bounded backoff).
   * Once: between a death and its restart `running` is false, and a second supervisor would run
   * a second BIRD on the same socket.
   */
  start(): void {
    if (this.o.external || this.started || this.stopped) return;
    this.started = true;
    void this.supervisor.run(() => this.runOnce());
  }

  /** Routes a previous BIRD left in the kernel (`persist`), both families. */
  private async leftoverRoutes(): Promise<number> {
    // Both at once: this is on the way from a host's start to its first BGP session.
    const out = await Promise.all(['-4', '-6'].map((fam) => run('ip', [fam, 'route', 'show', 'proto', 'bird'], { timeout: 5000 })));
    return out.reduce((n, { stdout }) => n + stdout.split('\n').filter((l) => l.trim()).length, 0);
  }

  /** Runs BIRD until it exits: an exit after a long run restarts at once, an early one backs off. */
  private async runOnce(): Promise<'again'> {
    const flags = startFlags(await this.leftoverRoutes());
    if (this.stopped) return 'again';
    // SIGKILL, not SIGTERM, when calico node goes: a BIRD that shuts down cleanly tells its peers
    // to withdraw our routes, while one that just vanishes lets them keep the routes for the
    // graceful-restart time, so containers here stay reachable until BIRD is back.
    const child = spawnBound(
      'bird',
      ['-f', ...flags, '-c', this.confPath, '-s', this.o.socket, '-P', path.join(this.o.dir, 'bird.pid')],
      { stdio: ['ignore', 'ignore', 'pipe'] },
      'SIGKILL',
    );
    this.child = child;
    const started = Date.now();
    this.childStarted = started;
    let stderr = '';
    child.stderr?.on('data', (d) => (stderr = (stderr + String(d)).slice(-2000)));
    this.o.log.info('BIRD started', { config: this.confPath, socket: this.o.socket, recovery: flags.includes('-R') });
    // Its sessions start now: keep it from sleeping on their first UPDATEs (routing/bird-wake.ts).
    this.waker.kick();
    return new Promise((resolve, reject) => {
      child.once('error', (err) => {
        this.child = undefined;
        reject(new InternalError(`cannot run BIRD (is bird2 installed?): ${err.message}`));
      });
      child.once('exit', (code, signal) => {
        this.child = undefined;
        if (this.stopped) return resolve('again');
        const why = `BIRD exited (code ${String(code)}, signal ${String(signal)}): ${stderr.trim()}`;
        if (Date.now() - started > STABLE_MS) {
          this.o.log.warn(`${why}; restarting it`);
          resolve('again');
        } else reject(new InternalError(why));
      });
    });
  }

  /**
   * Until the BIRD we just started has made its control socket (a stale file from the last run
   * does not count), for at most 3 s: a configuration applied in that moment, as a first
   * container's block is, would otherwise fail and wait for the retry.
   */
  private async socketUp(): Promise<void> {
    if (this.o.external || !this.child) return;
    const since = this.childStarted - 50; // the file clock is coarse
    for (const until = this.childStarted + 3000; Date.now() < until;) {
      const st = fs.statSync(this.o.socket, { throwIfNoEntry: false });
      if (st && st.mtimeMs >= since) return;
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** Applies the installed configuration to the running BIRD. */
  async configure(): Promise<void> {
    await this.socketUp();
    // BIRD re-reads the file it was started with (-c); an external BIRD must be started on it too.
    const { stdout } = await run('birdc', ['-s', this.o.socket, 'configure'], { timeout: 10_000 });
    if (!/Reconfigured|Reconfiguration in progress|Reconfiguration confirmed/.test(stdout)) {
      throw new InternalError(`birdc configure did not reconfigure BIRD: ${stdout.trim()}`);
    }
    // Sessions may have been added (a host joined): the same as at a start.
    this.waker.kick();
  }

  /** `birdc show protocols` parsed into sessions (for `calico status`). */
  async sessions(): Promise<Array<{ name: string; state: string; since: string; info: string }>> {
    const { stdout } = await run('birdc', ['-s', this.o.socket, 'show', 'protocols'], { timeout: 5000 });
    return stdout
      .split('\n')
      .map((l) => l.trim().split(/\s+/))
      .filter((f) => f.length >= 5 && f[1] === 'BGP')
      .map((f) => ({ name: f[0], state: f[3], since: f[4], info: f.slice(5).join(' ') }));
  }

  /** Null when BIRD answers on its control socket within `timeoutMs`, else why not (for /readyz). */
  async problem(timeoutMs = 2000): Promise<string | null> {
    try {
      const { stdout } = await run('birdc', ['-s', this.o.socket, 'show', 'status'], { timeout: timeoutMs });
      return /Daemon is up and running/.test(stdout) ? null : `BIRD is not up: ${stdout.trim().split('\n').pop() ?? ''}`;
    } catch (err) {
      const detail = (err as { stdout?: string }).stdout?.trim() || errorMessage(err);
      return `BIRD does not answer on ${this.o.socket}: ${detail.split('\n')[0]}`;
    }
  }

  /** Routes BIRD holds from its BGP peers: destination, next hop and the session it came by. */
  async learnedRoutes(): Promise<Array<{ dst: string; via?: string; protocol: string }>> {
    const { stdout } = await run('birdc', ['-s', this.o.socket, 'show', 'route'], { timeout: 5000 });
    const out: Array<{ dst: string; via?: string; protocol: string }> = [];
    let last: { dst: string; via?: string; protocol: string } | undefined;
    let dst = '';
    for (const l of stdout.split('\n')) {
      const head = /^(\S+\/\d+)?\s+\S+\s+\[(\S+)\s/.exec(l);
      if (head) {
        if (head[1]) dst = head[1];
        last = { dst, protocol: head[2] };
        if (/^(mesh|rr|global|node)_/.test(last.protocol)) out.push(last);
        continue;
      }
      const via = /^\s+via\s+(\S+)/.exec(l);
      if (via && last) last.via = via[1];
    }
    return out;
  }

  get external(): boolean {
    return this.o.external;
  }

  get running(): boolean {
    return !!this.child;
  }

  /**
   * Stops BIRD as a restart, not a withdrawal: killed, so peers keep this host's routes as
   * stale for the graceful-restart time and the kernel keeps its own (`persist`). A host leaving
   * for good is removed with `calico node rm`, which withdraws everything.
   */
  async stop(): Promise<void> {
    this.stopped = true;
    this.supervisor.stop();
    this.waker.stop();
    const c = this.child;
    if (!c) return;
    await new Promise<void>((resolve) => {
      c.once('exit', () => resolve());
      c.kill('SIGKILL');
    });
  }
}
