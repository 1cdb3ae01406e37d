/**
 * {@link Dataplane} off the main thread. The netlink package runs the kernel's rtnetlink work
 * synchronously inside sendmsg() on the calling thread: about 1 ms to create a veth, 20-40 ms to
 * delete one. On the daemon's event loop that stalls every other plugin request while a
 * container is torn down. Here each call is posted to a worker thread that owns a
 * LinuxDataplane (and so its own netlink socket), and only the reply comes back.
 *
 * A worker thread shares the process's network namespace and /proc/sys view, so it acts on the
 * same kernel objects the main thread would.
 *
 * Pool: `workers` threads (default {@link DEFAULT_WORKERS}). Calls about one interface
 * (wireEndpoint, unwireEndpoint, ensureRoute) always go to the worker chosen by a hash of the
 * host interface name, so calls for one endpoint reach its LinuxDataplane in the order they were
 * made, as they did on the main thread; other calls go round-robin. Within a worker, calls run
 * concurrently as they would on one LinuxDataplane.
 *
 * Failure: if a worker dies, the calls it was running fail with UnavailableError (retryable; the
 * operations are idempotent) and it is restarted after a jittered backoff. Calls made meanwhile
 * wait for the new worker. After `maxRestarts` crashes in a row (a worker that lived
 * `stableMs` resets the count) the slot gives up and its calls fail at once.
 *
 * Shutdown: the netlink package's native socket aborts the process when its thread is torn down
 * with the socket open, and worker.terminate() or process.exit() with a live worker do exactly
 * that. So workers are never terminated: close() asks each to close its sockets and blocks
 * (Atomics.wait, a few ms, bounded) until it has, and a process 'exit' hook does the same for a
 * process that exits without calling close(). Callers may call process.exit() right after close().
 */
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { BadRequestError, UnavailableError, errorMessage } from '../errors';
import { jitteredDelay } from '../retry';
import type { DataplaneLogger } from './linux';
import type { Dataplane, EndpointWiring, WiringResult, WorkloadRoute } from './types';
// The protocol only: the main thread never loads the worker's code (nor the netlink addon).
import {
  type DataplaneMethod,
  SocketState,
  type WorkerFatal,
  type WorkerInit,
  type WorkerLog,
  type WorkerReply,
  type WorkerRequest,
  fromWireError,
} from './protocol';

/**
 * Two threads, each with its own netlink socket. One is enough to keep the main loop free, but
 * a create queued behind deletes on the same thread waits for them; with two, deletes also
 * overlap in the kernel. Measured in a namespace on a 2-vCPU VM, 200 endpoints, 8 in flight
 * (wire / unwire wall time): 1 worker 0.3 / 3.5 s, 2 workers 0.65 / 2.0 s, 4 workers 1.0-1.9 /
 * 1.0 s; wires made while 100 endpoints are torn down: p50 180 / 95 / 54 ms. More threads slow
 * bursts of creates (they contend for the kernel's rtnl lock) and, on few CPUs, starve the main
 * thread (timer gaps up to 85 ms with 4 workers, 20 ms with 2).
 */
export const DEFAULT_WORKERS = 2;

/**
 * A worker holds no state beyond one call's netlink messages, but V8 sizes each isolate's young
 * generation as for a large program (up to 16 MB per semi-space), which it then keeps resident.
 */
const WORKER_HEAP = { maxYoungGenerationSizeMb: 4 };

export interface ThreadedDataplaneOptions {
  /** Root of the sysctl tree, `/proc/sys` by default (a managed plugin: `/host/proc/sys`). */
  procSys?: string;
  /** Worker threads, 1-16. */
  workers?: number;
  /** Restarts in a row (a worker that lived `stableMs` resets the count); one more crash and the slot gives up. Default 5. */
  maxRestarts?: number;
  /** Backoff before a restart: base * 2^n with full jitter, capped. Defaults 100 ms and 5 s. */
  restartBaseMs?: number;
  restartMaxMs?: number;
  /** A worker that lived this long before dying starts the crash count afresh. Default 60 s. */
  stableMs?: number;
  /** Script of the worker thread; the compiled worker.js next to this file by default. */
  workerPath?: string;
  /** How long close() waits for a worker to close its sockets. Default 2 s. */
  closeWaitMs?: number;
}

/** The error classes of lib/errors.ts by kind: what the HTTP mapping switches on. */
/** FNV-1a: a stable, cheap spread of interface names over the workers. */
function hashName(name: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) {
    h ^= name.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

interface Call {
  req: WorkerRequest;
  resolve(value: unknown): void;
  reject(err: unknown): void;
}

interface SlotConfig {
  workerPath: string;
  init: Omit<WorkerInit, 'state'>;
  closeWaitMs: number;
  maxRestarts: number;
  restartBaseMs: number;
  restartMaxMs: number;
  stableMs: number;
  logger?: DataplaneLogger & { error?(message: string, meta?: Record<string, unknown>): unknown };
}

/** One worker thread and the calls made to it; restarts it when it dies. */
class WorkerSlot {
  private worker?: Worker;
  /** Posted to the current worker, waiting for a reply. */
  private readonly inFlight = new Map<number, Call>();
  /** Made while no worker runs (restart pending); posted in order once one does. */
  private backlog: Call[] = [];
  private crashes = 0;
  private startedAt = 0;
  private lastError?: string;
  private restartTimer?: NodeJS.Timeout;
  private gaveUp?: UnavailableError;
  private closed = false;
  /** Shared with the current worker: {@link SocketState}. */
  private state?: Int32Array;
  /** Settles when the current worker has exited (after close()). */
  exited: Promise<void> = Promise.resolve();

  constructor(
    private readonly index: number,
    private readonly cfg: SlotConfig,
  ) {
    this.start();
  }

  private start(): void {
    this.restartTimer = undefined;
    let worker: Worker;
    const state = new Int32Array(new SharedArrayBuffer(4));
    try {
      worker = new Worker(this.cfg.workerPath, { workerData: { ...this.cfg.init, state: state.buffer } satisfies WorkerInit, resourceLimits: WORKER_HEAP });
    } catch (err) {
      this.lastError = errorMessage(err);
      this.crashed(`could not start: ${this.lastError}`);
      return;
    }
    this.worker = worker;
    this.state = state;
    this.startedAt = Date.now();
    let exitedResolve!: () => void;
    this.exited = new Promise((r) => (exitedResolve = r));
    worker.on('message', (msg: WorkerReply | WorkerLog | WorkerFatal) => this.onMessage(msg));
    worker.on('error', (err) => {
      this.lastError = errorMessage(err);
      this.cfg.logger?.warn('dataplane worker failed', { worker: this.index, err: this.lastError });
    });
    worker.on('messageerror', (err) => {
      this.cfg.logger?.warn('dataplane worker sent a message that could not be read', { worker: this.index, err: errorMessage(err) });
    });
    worker.on('exit', (code) => {
      exitedResolve();
      if (this.worker !== worker) return;
      this.worker = undefined;
      if (this.closed) return;
      this.crashed(`exited with code ${code}${this.lastError ? ` (${this.lastError})` : ''}`);
    });
    for (const call of this.backlog.splice(0)) this.post(call);
    this.updateRef();
  }

  /** Fails what the dead worker was running and schedules a restart, within bounds. */
  private crashed(reason: string): void {
    const lived = this.startedAt ? Date.now() - this.startedAt : 0;
    if (lived >= this.cfg.stableMs) this.crashes = 0;
    this.crashes++;
    for (const [id, call] of this.inFlight) {
      this.inFlight.delete(id);
      call.reject(new UnavailableError(`dataplane worker ${reason} while ${call.req.method} was in progress; the operation may be half done: retry it`));
    }
    if (this.crashes > this.cfg.maxRestarts) {
      this.gaveUp = new UnavailableError(
        `dataplane worker ${this.index} died ${this.crashes} times in a row and is not restarted again; last: ${reason}; restart calico node`,
      );
      (this.cfg.logger?.error ?? this.cfg.logger?.warn)?.call(this.cfg.logger, 'dataplane worker given up', {
        worker: this.index,
        reason,
        crashes: this.crashes,
      });
      for (const call of this.backlog.splice(0)) call.reject(this.gaveUp);
      return;
    }
    const delay = this.cfg.restartBaseMs + jitteredDelay(this.crashes - 1, this.cfg.restartBaseMs, this.cfg.restartMaxMs);
    this.cfg.logger?.warn('dataplane worker died; restarting', { worker: this.index, reason, crashes: this.crashes, delayMs: Math.round(delay) });
    this.lastError = undefined;
    this.restartTimer = setTimeout(() => this.start(), delay);
  }

  private onMessage(msg: WorkerReply | WorkerLog | WorkerFatal): void {
    if ('type' in msg) {
      if (msg.type === 'log') this.cfg.logger?.[msg.level](msg.message, { ...msg.meta, worker: this.index });
      if (msg.type === 'fatal') this.lastError = msg.message.split('\n')[0];
      return;
    }
    const call = this.inFlight.get(msg.id);
    if (!call) return; // failed already (worker restarted or dataplane closed)
    this.inFlight.delete(msg.id);
    this.updateRef();
    if (msg.ok) call.resolve(msg.value);
    else call.reject(fromWireError(msg.error));
  }

  submit(call: Call): void {
    if (this.closed) return call.reject(new UnavailableError('the dataplane is closed'));
    if (this.gaveUp) return call.reject(this.gaveUp);
    if (this.worker) this.post(call);
    else this.backlog.push(call);
    this.updateRef();
  }

  private post(call: Call): void {
    try {
      this.worker!.postMessage(call.req);
    } catch (err) {
      // Arguments that cannot be cloned (a function, say) never reach the worker.
      return call.reject(new BadRequestError(`invalid arguments to ${call.req.method}: ${errorMessage(err)}`));
    }
    this.inFlight.set(call.req.id, call);
  }

  /** Keeps the process alive while calls wait on this worker, and only then. */
  private updateRef(): void {
    if (!this.worker) return;
    if (this.inFlight.size + this.backlog.length > 0) this.worker.ref();
    else this.worker.unref();
  }

  /** Fault injection for tests: makes the worker throw an uncaught error, as a bug would. */
  crash(): void {
    this.worker?.postMessage({ type: 'crash' });
  }

  /**
   * Fails what is pending and has the worker close its sockets, waiting (blocking, bounded)
   * until it has: only then may the process exit. The thread then ends by itself.
   */
  close(): void {
    if (!this.closed) {
      this.closed = true;
      clearTimeout(this.restartTimer);
      const err = new UnavailableError('the dataplane was closed before the operation finished');
      for (const call of [...this.inFlight.values(), ...this.backlog.splice(0)]) call.reject(err);
      this.inFlight.clear();
      this.worker?.unref();
    }
    this.closeSockets();
  }

  /** Safe to call again (from the process 'exit' hook): returns at once once the sockets are closed. */
  closeSockets(): void {
    const state = this.state;
    if (!state || !this.worker) return;
    // A worker still starting sees REFUSED and never opens a socket.
    const was = Atomics.compareExchange(state, 0, SocketState.INIT, SocketState.REFUSED);
    if (was !== SocketState.OPEN) return;
    this.worker.postMessage({ type: 'close' });
    const t0 = Date.now();
    const outcome = Atomics.wait(state, 0, SocketState.OPEN, this.cfg.closeWaitMs);
    if (outcome === 'timed-out') {
      this.cfg.logger?.warn('dataplane worker did not close its netlink sockets in time', { worker: this.index, waitedMs: Date.now() - t0 });
    }
  }
}

/** {@link Dataplane} whose kernel work runs on worker threads, off the caller's event loop. */
export class ThreadedDataplane implements Dataplane {
  private readonly slots: WorkerSlot[];
  private nextId = 1;
  private roundRobin = 0;

  constructor(logger?: DataplaneLogger, opts: ThreadedDataplaneOptions = {}) {
    const n = opts.workers ?? DEFAULT_WORKERS;
    if (!Number.isInteger(n) || n < 1 || n > 16) throw new BadRequestError(`invalid number of dataplane workers ${n}: want 1-16`);
    const init: Omit<WorkerInit, 'state'> = { calicoDataplaneWorker: true };
    if (opts.procSys !== undefined) init.procSys = opts.procSys;
    const cfg: SlotConfig = {
      workerPath: opts.workerPath ?? path.join(__dirname, 'worker.js'),
      init,
      closeWaitMs: opts.closeWaitMs ?? 2000,
      maxRestarts: opts.maxRestarts ?? 5,
      restartBaseMs: opts.restartBaseMs ?? 100,
      restartMaxMs: opts.restartMaxMs ?? 5000,
      stableMs: opts.stableMs ?? 60_000,
      logger,
    };
    this.slots = Array.from({ length: n }, (_, i) => new WorkerSlot(i, cfg));
    process.on('exit', this.onExit);
  }

  /** A process exiting without close() (process.exit(), an uncaught error) must not abort. */
  private readonly onExit = (): void => {
    for (const s of this.slots) s.closeSockets();
  };

  /** Settles once every worker thread has ended after close(). */
  whenClosed(): Promise<void> {
    return Promise.all(this.slots.map((s) => s.exited)).then(() => undefined);
  }

  private call<T>(method: DataplaneMethod, args: unknown[], ifName?: string): Promise<T> {
    const slot = ifName !== undefined ? this.slots[hashName(ifName) % this.slots.length] : this.slots[this.roundRobin++ % this.slots.length];
    const req: WorkerRequest = { id: this.nextId++, method, args };
    return new Promise<T>((resolve, reject) => slot.submit({ req, resolve: resolve, reject }));
  }

  wireEndpoint(w: EndpointWiring): Promise<WiringResult> {
    return this.call('wireEndpoint', [w], (w as Partial<EndpointWiring> | null | undefined)?.hostIfName ?? '');
  }

  unwireEndpoint(hostIfName: string): Promise<void> {
    return this.call('unwireEndpoint', [hostIfName], hostIfName);
  }

  ensureRoute(hostIfName: string, ip: string): Promise<void> {
    return this.call('ensureRoute', [hostIfName, ip], hostIfName);
  }

  listWorkloadLinks(): Promise<string[]> {
    return this.call('listWorkloadLinks', []);
  }

  listWorkloadRoutes(): Promise<WorkloadRoute[]> {
    return this.call('listWorkloadRoutes', []);
  }

  enableForwarding(ipv6: boolean): Promise<void> {
    return this.call('enableForwarding', [ipv6]);
  }

  uplinkMtu(): Promise<number | undefined> {
    return this.call('uplinkMtu', []);
  }

  uplinkIPv4(): Promise<string | undefined> {
    return this.call('uplinkIPv4', []);
  }

  uplinkIPv6(): Promise<string | undefined> {
    return this.call('uplinkIPv6', []);
  }

  /** Makes worker `index` throw an uncaught error (tests of the restart path). */
  crashWorker(index = 0): void {
    this.slots[index]?.crash();
  }

  /**
   * Fails calls still pending with UnavailableError and ends the worker threads, after they
   * have closed their sockets (so the process may exit as soon as this returns).
   */
  close(): void {
    process.off('exit', this.onExit);
    for (const s of this.slots) s.close();
  }
}

/** The dataplane of this process's network namespace, served by worker threads. */
export function createThreadedDataplane(logger?: DataplaneLogger, opts: ThreadedDataplaneOptions = {}): ThreadedDataplane {
  return new ThreadedDataplane(logger, opts);
}
