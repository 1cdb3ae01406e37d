/**
 * The wire protocol between ThreadedDataplane (threaded.ts, main thread) and its workers
 * (worker.ts): the messages each way, the shared socket-state word, and the two error codecs
 * (errors cross the thread boundary as plain data and come back as the same classes). Both sides
 * import this module and not each other.
 */
import {
  BadRequestError,
  CalicoError,
  ConfigError,
  ConflictError,
  type ErrorKind,
  InternalError,
  NotFoundError,
  UnavailableError,
  classify,
  isRetryable,
  markRetryable,
} from '../errors';
import { errnoCode } from './errno';
import type { Dataplane } from './types';

/**
 * Values of the word shared with each worker (Int32Array[0]), through which the main thread
 * learns, without waiting for a message, whether the worker holds open netlink sockets.
 */
export const SocketState = {
  /** Started, no socket yet. */
  INIT: 0,
  /** Sockets open (or about to be): must be closed before the process exits. */
  OPEN: 1,
  /** Sockets closed: the thread may be torn down. */
  CLOSED: 2,
  /** The main thread closed first: the worker must never open a socket. */
  REFUSED: 3,
} as const;

export interface WorkerInit {
  /** Set by ThreadedDataplane: only a thread started for this serves (importing this file elsewhere does nothing). */
  calicoDataplaneWorker: true;
  procSys?: string;
  /** Int32Array(1) of SocketState (threaded.ts). */
  state: SharedArrayBuffer;
}

export type DataplaneMethod = Exclude<keyof Dataplane, 'close'>;

export interface WorkerRequest {
  id: number;
  method: DataplaneMethod;
  args: unknown[];
}

export interface WireError {
  kind: CalicoError['kind'];
  name: string;
  message: string;
  /** errno name of the underlying failure (`EEXIST`, `ENOENT`...), when there was one. */
  code?: string;
  retryable?: boolean;
  /** Stack of the error in the worker, for logs. */
  stack?: string;
}

export type WorkerReply = { id: number; ok: true; value: unknown } | { id: number; ok: false; error: WireError };

export interface WorkerFatal {
  type: 'fatal';
  message: string;
}

export interface WorkerLog {
  type: 'log';
  level: 'debug' | 'info' | 'warn';
  message: string;
  meta?: Record<string, unknown>;
}

export const METHODS: readonly DataplaneMethod[] = [
  'wireEndpoint',
  'unwireEndpoint',
  'ensureRoute',
  'listWorkloadLinks',
  'listWorkloadRoutes',
  'enableForwarding',
  'uplinkMtu',
  'uplinkIPv4',
  'uplinkIPv6',
];

/** A thrown value as plain data: kind, name and message survive the thread boundary. */
export function toWireError(err: unknown): WireError {
  // Anything but a CalicoError becomes the InternalError the HTTP layer would have made of it.
  const e = classify(err);
  const out: WireError = { kind: e.kind, name: e.name, message: e.message };
  const code = errnoCode(err);
  if (code !== undefined) out.code = code;
  if (isRetryable(e)) out.retryable = true;
  if (e.stack !== undefined) out.stack = e.stack;
  return out;
}

const errorClasses: Record<ErrorKind, new (message: string, options?: { cause?: unknown }) => CalicoError> = {
  'bad-request': BadRequestError,
  'not-found': NotFoundError,
  conflict: ConflictError,
  unavailable: UnavailableError,
  config: ConfigError,
  internal: InternalError,
};

/** Re-creates a worker's error as the same class with the same message, kind and retryability. */
export function fromWireError(e: WireError): CalicoError {
  const Cls = errorClasses[e.kind] ?? InternalError;
  // The cause carries what only the worker saw: its stack and the errno name.
  const cause = Object.assign(new Error(`${e.name} in the dataplane worker: ${e.message}`), e.code !== undefined ? { code: e.code } : {});
  if (e.stack !== undefined) cause.stack = e.stack;
  const err = new Cls(e.message, { cause });
  if (e.retryable && !isRetryable(err)) markRetryable(err);
  return err;
}
