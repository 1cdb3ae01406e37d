/**
 * The plugin HTTP server on a unix socket (Docker's plugin transport: POST /<Iface>.<Method>,
 * JSON bodies, 200 + JSON on success, non-200 + {"Err"} on failure). Parsing, logging and the
 * error mapping live here once; handlers only see parsed bodies and return plain objects.
 */
import fs from 'node:fs';
import http from 'node:http';
import { BadRequestError, classify, errorMessage, toPluginReply } from './errors';
import type { Logger } from './log';
import type { Outcome, PluginRecorder, RequestRecorder } from './metrics';
import { MAX_BODY_DEPTH, tooDeep } from './validate';

export type Handler = (body: unknown) => unknown;

export interface Route {
  handler: Handler;
  /** Calls Docker sends with no arguments (Activate, GetCapabilities, ...) have empty bodies. */
  hasBody: boolean;
}

export type Routes = Record<string, Route>;

export const PLUGIN_CONTENT_TYPE = 'application/vnd.docker.plugins.v1.1+json';
const REPLY_CONTENT_TYPE = `${PLUGIN_CONTENT_TYPE}; charset=utf-8`;

function decodeBody(raw: Buffer | undefined, path: string): unknown {
  const text = raw && raw.length ? raw.toString('utf8').trim() : '';
  if (!text) {
    throw new BadRequestError(
      `empty request body for ${path}: Docker sends an empty body when it retries a request it already sent; the first attempt's outcome stands, so check "calico endpoint ls" and retry the docker command`,
    );
  }
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch (err) {
    throw new BadRequestError(`malformed JSON in request body for ${path}: ${errorMessage(err)}`);
  }
  // Handlers (and JSON.stringify anywhere after them) recurse: bound the nesting before they run.
  const deep = tooDeep(body);
  if (deep !== undefined) {
    throw new BadRequestError(`invalid request body for ${path}: field "${deep}" nests deeper than ${MAX_BODY_DEPTH} levels; Docker never sends this`);
  }
  return body;
}

/** Error replies are shown to users and logged: a message built from a huge request stays short. */
export const MAX_ERROR_LENGTH = 1024;

function bounded(msg: string): string {
  return msg.length > MAX_ERROR_LENGTH ? `${msg.slice(0, MAX_ERROR_LENGTH)}... (${msg.length - MAX_ERROR_LENGTH} more characters)` : msg;
}

/** The client hung up before its request was read: not a failure of ours. */
class ClientGoneError extends Error {}

const BODY_LIMIT = 4 << 20;

/** Docker sends no Content-Type, so every body is taken raw and decoded by decodeBody. */
function readBody(req: http.IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size <= BODY_LIMIT) chunks.push(c);
    });
    req.on('end', () => {
      if (size > BODY_LIMIT)
        reject(new BadRequestError(`request body of ${size} bytes is over the ${BODY_LIMIT}-byte limit; Docker never sends one this large`));
      else resolve(Buffer.concat(chunks, size));
    });
    req.on('error', (err) => reject(new ClientGoneError(errorMessage(err))));
    req.on('aborted', () => reject(new ClientGoneError('aborted')));
  });
}

/**
 * The request handler for one socket. Plain node:http rather than a framework: the protocol is
 * an exact-match table of POST paths with raw JSON bodies, and express's per-request machinery
 * (router, prototype swaps, body parser, ETags) was a tenth of calico node's CPU per container
 * start in `npm run bench`.
 */
export function createPluginApp(routes: Routes, log: Logger, metrics?: PluginRecorder): http.RequestListener {
  // Bound once per method, so a request costs two additions; paths we do not serve share one label.
  const recorders = new Map<string, RequestRecorder>();
  const unknown = metrics?.method('unknown');
  if (metrics) for (const p of Object.keys(routes)) recorders.set(p, metrics.method(p.replace(/^\//, '')));
  const record = (path: string, started: bigint, outcome: Outcome) => {
    if (unknown) (recorders.get(path) ?? unknown)(outcome, Number(process.hrtime.bigint() - started) / 1e9);
  };
  const handle = async (req: http.IncomingMessage, res: http.ServerResponse) => {
    const started = process.hrtime.bigint();
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q < 0 ? url : url.slice(0, q);
    const send = (status: number, body: unknown, outcome: Outcome) => {
      let payload: string;
      try {
        payload = JSON.stringify(body);
      } catch (err) {
        // A handler bug (a BigInt, a cycle) must still get Docker an answer, not kill the daemon.
        log.error('plugin reply could not be encoded', { method: path, error: errorMessage(err) });
        outcome = 'internal';
        [status, payload] = [
          500,
          JSON.stringify({ Err: `calico could not encode its reply to ${path}: ${errorMessage(err)}; this is a bug, please report it` }),
        ];
      }
      if (res.headersSent) return;
      if (res.destroyed) {
        log.debug('plugin client went away before its answer', { method: path, status });
        record(path, started, 'client-gone');
        return;
      }
      record(path, started, outcome);
      res.writeHead(status, { 'Content-Type': REPLY_CONTENT_TYPE, 'Content-Length': Buffer.byteLength(payload) });
      res.end(payload);
      if (log.isDebugEnabled()) {
        const ms = Number(process.hrtime.bigint() - started) / 1e6;
        log.debug('plugin request', { method: path, status, ms: Math.round(ms * 100) / 100 });
      }
    };
    // Docker only ever POSTs; serving other methods the same would let a GET or PUT change state.
    if (req.method !== 'POST') {
      req.resume();
      res.setHeader('Allow', 'POST');
      send(405, { Err: `method ${bounded(req.method ?? '')} is not allowed on ${bounded(path)}: the plugin protocol only uses POST` }, 'bad-request');
      return;
    }
    const route = Object.prototype.hasOwnProperty.call(routes, path) ? routes[path] : undefined;
    if (!route) {
      req.resume();
      send(404, { Err: `calico does not implement ${bounded(path)}` }, 'not-found');
      return;
    }
    try {
      const body = route.hasBody ? decodeBody(await readBody(req), path) : (req.resume(), undefined);
      const out = await route.handler(body);
      send(200, out ?? {}, 'ok');
    } catch (err) {
      if (err instanceof ClientGoneError || res.destroyed) {
        log.debug('plugin client went away', { method: path, error: errorMessage(err) });
        record(path, started, 'client-gone');
        return;
      }
      const e = classify(err);
      const message = bounded(e.message);
      if (e.kind === 'internal') log.error('plugin request failed', { method: path, error: message, stack: (e.cause as Error | undefined)?.stack ?? e.stack });
      else log.warn('plugin request refused', { method: path, kind: e.kind, error: message });
      const reply = toPluginReply(e);
      send(reply.status, { ...reply.body, Err: message, Error: message }, e.kind);
    }
  };
  return (req, res) => void handle(req, res);
}

export const HEADERS_TIMEOUT_MS = 10_000;
export const REQUEST_TIMEOUT_MS = 30_000;

/**
 * Listens on a unix socket, replacing a stale one left by a crash (Docker stalls ~15 s on a
 * socket nobody serves, and listen() would fail with EADDRINUSE).
 */
export async function listenUnix(app: http.RequestListener, socketPath: string, mode = 0o660): Promise<http.Server> {
  try {
    fs.unlinkSync(socketPath);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  // Go's client may send an empty Host line; keep idle connections open for the daemon's reuse
  // (closing one just as Go reuses it makes Docker retry with an empty body). A client that is
  // slow to send its request is dropped: headers within 10 s, the whole request within 30 s,
  // checked every second; Docker sends each request at once.
  const server = http.createServer(
    {
      requireHostHeader: false,
      keepAliveTimeout: 0,
      connectionsCheckingInterval: 1000,
      headersTimeout: HEADERS_TIMEOUT_MS,
      requestTimeout: REQUEST_TIMEOUT_MS,
    },
    app,
  );
  server.keepAliveTimeout = 0;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => {
      server.off('error', reject);
      resolve();
    });
  });
  fs.chmodSync(socketPath, mode);
  return server;
}

export async function closeUnix(server: http.Server, socketPath: string): Promise<void> {
  server.closeAllConnections?.();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  try {
    fs.unlinkSync(socketPath);
  } catch {
    // already gone
  }
}
