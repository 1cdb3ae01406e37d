/**
 * Errors classified by behaviour, not by message (libnetwork's types.go, etcd3's errors.ts).
 * Handlers throw these; one mapper (toPluginReply) turns a class into an HTTP status and
 * the `{"Err": ...}` body Docker shows to users. Retryability is a trait, not a class.
 */

export type ErrorKind = 'bad-request' | 'not-found' | 'conflict' | 'unavailable' | 'config' | 'internal';

const retryable = Symbol.for('calico-libnetwork.retryable');

export abstract class CalicoError extends Error {
  abstract readonly kind: ErrorKind;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** The request itself is wrong: a field is missing, malformed or not allowed. */
export class BadRequestError extends CalicoError {
  readonly kind = 'bad-request' as const;
}

/** Something the request refers to does not exist (a pool, a network, an endpoint). */
export class NotFoundError extends CalicoError {
  readonly kind = 'not-found' as const;
}

/** The request collides with existing state: an address held by someone else, a pool overlap. */
export class ConflictError extends CalicoError {
  readonly kind = 'conflict' as const;
}

/** A dependency (etcd, the kernel) cannot serve us now; trying again later may work. */
export class UnavailableError extends CalicoError {
  readonly kind = 'unavailable' as const;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    markRetryable(this);
  }
}

/**
 * This host's settings are wrong (a config file line, a certificate, a password etcd refused):
 * retrying cannot help until the operator changes the setting the message names.
 */
export class ConfigError extends CalicoError {
  readonly kind = 'config' as const;
}

/** A bug or an unexpected failure: nothing the caller can fix by changing the request. */
export class InternalError extends CalicoError {
  readonly kind = 'internal' as const;
}

export function markRetryable<T extends object>(err: T): T {
  (err as Record<symbol, unknown>)[retryable] = true;
  return err;
}

export function isRetryable(err: unknown): boolean {
  return typeof err === 'object' && err !== null && (err as Record<symbol, unknown>)[retryable] === true;
}

export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}

/** Wraps anything thrown into a CalicoError, keeping known classes as they are. */
export function classify(err: unknown): CalicoError {
  if (err instanceof CalicoError) return err;
  return new InternalError(`internal error: ${errorMessage(err)}`, { cause: err });
}

/**
 * What the caller did wrong is a 4xx, what went wrong on our side a 5xx. A missing resource is
 * not 404: Docker reads 404 from some methods as "not implemented" and would hide the error.
 */
const httpStatus: Record<ErrorKind, number> = {
  'bad-request': 400,
  'not-found': 400,
  conflict: 400,
  unavailable: 500,
  // The request was fine; this host cannot serve it until its operator fixes a setting.
  config: 500,
  internal: 500,
};

/** The CLI's exit status: 1 when the request or the settings must change, 2 when trying again may work. */
const exitStatus: Record<ErrorKind, number> = {
  'bad-request': 1,
  'not-found': 1,
  conflict: 1,
  config: 1,
  unavailable: 2,
  internal: 2,
};

/** The single place where errors become the CLI's one line on stderr and its exit status. */
export function toCliExit(err: unknown): { status: number; message: string } {
  const e = classify(err);
  return { status: exitStatus[e.kind], message: e.message };
}

/**
 * The single place where errors become plugin replies. Docker reads `Err` from any non-200
 * reply (NetworkDriver and IpamDriver alike); `Error` is added for IPAM's 200-error field name
 * so any client that reads either key sees the message.
 */
export function toPluginReply(err: unknown): { status: number; body: { Err: string; Error: string } } {
  const e = classify(err);
  return { status: httpStatus[e.kind], body: { Err: e.message, Error: e.message } };
}
