/**
 * The worker-thread side of {@link ThreadedDataplane}: owns one LinuxDataplane (so one netlink
 * socket) and serves the main thread's requests. The netlink package runs the kernel's work
 * inside sendmsg() on the thread that calls it; here, that thread is this one, so deleting a
 * veth (20-40 ms in the kernel) blocks this event loop instead of the daemon's.
 *
 * A worker thread shares the process's network namespace (it is a thread, not a process), so
 * netlink and /proc/sys act where they did on the main thread.
 *
 * Protocol (structured clone over the worker's port):
 *   in:  {id, method, args}                     one Dataplane method call
 *        {type: 'close'}                        close the dataplane and end the thread
 *        {type: 'crash'}                        fault injection for tests: an uncaught error
 *   out: {id, ok: true, value}
 *        {id, ok: false, error: {kind, name, message, code?, retryable?, stack?}}
 *        {type: 'log', level, message, meta}   LinuxDataplane's log lines, for the main logger
 *        {type: 'fatal', message}               the thread is about to exit after an uncaught error
 *
 * The netlink package's native socket aborts the whole process if its thread is torn down with
 * the socket still open (terminate(), process.exit(), an uncaught exception: its poll callback
 * then fails inside a dying environment). So this thread never exits with a socket open: an
 * uncaught error closes the dataplane first, and the main thread closes it through a shared
 * state word (SocketState in threaded.ts) before the process may exit, never with terminate().
 *
 * Requests are started as they arrive and run concurrently, exactly as concurrent calls on a
 * LinuxDataplane on the main thread would (RtNetlink caps the requests in flight); replies go
 * back in completion order, matched by id.
 */
import { isMainThread, parentPort, workerData, type MessagePort } from 'node:worker_threads';
import { LinuxDataplane, type DataplaneLogger } from './linux';
import { METHODS, SocketState, type WorkerFatal, type WorkerInit, type WorkerLog, type WorkerReply, type WorkerRequest, toWireError } from './protocol';

function serve(port: MessagePort, init: WorkerInit): void {
  const state = new Int32Array(init.state);
  // The main thread may have closed (and the process be exiting) while this thread started.
  if (Atomics.compareExchange(state, 0, SocketState.INIT, SocketState.OPEN) !== SocketState.INIT) {
    port.close();
    return;
  }
  let dp: LinuxDataplane | undefined;
  let closed = false;
  /** Closes the sockets and tells a main thread blocked in close() that it may go on. */
  const closeSockets = (): void => {
    if (closed) return;
    closed = true;
    try {
      dp?.close();
    } finally {
      Atomics.store(state, 0, SocketState.CLOSED);
      Atomics.notify(state, 0);
    }
  };
  // Uncaught errors would tear this thread down with its sockets open and abort the process.
  process.on('uncaughtException', (err) => {
    try {
      closeSockets();
      port.postMessage({ type: 'fatal', message: err instanceof Error ? (err.stack ?? err.message) : String(err) } satisfies WorkerFatal);
    } finally {
      process.exit(1);
    }
  });

  const post = (msg: WorkerReply | WorkerLog): void => {
    if (!closed) port.postMessage(msg);
  };
  const log =
    (level: WorkerLog['level']) =>
    (message: string, meta?: Record<string, unknown>): void => {
      try {
        post({ type: 'log', level, message, ...(meta ? { meta } : {}) });
      } catch {
        post({ type: 'log', level, message }); // meta not cloneable
      }
    };
  const logger: DataplaneLogger = { debug: log('debug'), info: log('info'), warn: log('warn') };
  try {
    dp = new LinuxDataplane(logger, { procSys: init.procSys });
  } catch (err) {
    closeSockets();
    throw err;
  }
  const dataplane = dp;

  port.on('message', (msg: WorkerRequest | { type: 'close' | 'crash' }) => {
    if ('type' in msg) {
      if (msg.type === 'close') {
        closeSockets();
        process.exit(0); // safe now; pending netlink timers must not keep the thread alive
      }
      if (msg.type === 'crash') {
        setImmediate(() => {
          throw new Error('dataplane worker crash requested (fault injection)');
        });
      }
      return;
    }
    void handle(msg);
  });

  async function handle({ id, method, args }: WorkerRequest): Promise<void> {
    let reply: WorkerReply;
    try {
      if (!METHODS.includes(method)) throw new TypeError(`unknown dataplane method ${JSON.stringify(method)}`);
      const fn = dataplane[method].bind(dataplane) as (...a: unknown[]) => Promise<unknown>;
      reply = { id, ok: true, value: await fn(...args) };
    } catch (err) {
      reply = { id, ok: false, error: toWireError(err) };
    }
    try {
      post(reply);
    } catch (err) {
      // A value that cannot be cloned: still answer, or the caller would wait forever.
      post({ id, ok: false, error: toWireError(err) });
    }
  }
}

const init = workerData as WorkerInit | undefined;
if (!isMainThread && parentPort && init?.calicoDataplaneWorker === true) serve(parentPort, init);
