/**
 * The plugin HTTP server on a unix socket (Docker's plugin transport: POST /<Iface>.<Method>,
 * JSON bodies, 200 + JSON on success, non-200 + {"Err"} on failure). Parsing, logging and the
 * error mapping live here once; handlers only see parsed bodies and return plain objects.
 */
import fs from 'node:fs';
import http from 'node:http';
import { BadRequestError, classify, errorMessage, toPluginReply } from './errors';
import type { Logger } from './log';

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
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new BadRequestError(`malformed JSON in request body for ${path}: ${errorMessage(err)}`);
  }
}

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
    req.on('error', reject);
  });
}

/**
 * The request handler for one socket. Plain node:http rather than a framework: the protocol is
 * an exact-match table of POST paths with raw JSON bodies, and express's per-request machinery
 * (router, prototype swaps, body parser, ETags) was a tenth of calico node's CPU per container
 * start in `npm run bench`.
 */
export function createPluginApp(routes: Routes, log: Logger): http.RequestListener {
  const handle = async (req: http.IncomingMessage, res: http.ServerResponse) => {
    const started = process.hrtime.bigint();
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q < 0 ? url : url.slice(0, q);
    const send = (status: number, body: unknown) => {
      let payload: string;
      try {
        payload = JSON.stringify(body);
      } catch (err) {
        // A handler bug (a BigInt, a cycle) must still get Docker an answer, not kill the daemon.
        log.error('plugin reply could not be encoded', { method: path, error: errorMessage(err) });
        [status, payload] = [
          500,
          JSON.stringify({ Err: `calico could not encode its reply to ${path}: ${errorMessage(err)}; this is a bug, please report it` }),
        ];
      }
      if (res.headersSent) return;
      res.writeHead(status, { 'Content-Type': REPLY_CONTENT_TYPE, 'Content-Length': Buffer.byteLength(payload) });
      res.end(payload);
      if (log.isDebugEnabled()) {
        const ms = Number(process.hrtime.bigint() - started) / 1e6;
        log.debug('plugin request', { method: path, status, ms: Math.round(ms * 100) / 100 });
      }
    };
    const route = Object.prototype.hasOwnProperty.call(routes, path) ? routes[path] : undefined;
    if (!route) {
      req.resume();
      send(404, { Err: `calico does not implement ${path}` });
      return;
    }
    try {
      const body = route.hasBody ? decodeBody(await readBody(req), path) : (req.resume(), undefined);
      const out = await route.handler(body);
      send(200, out ?? {});
    } catch (err) {
      const e = classify(err);
      if (e.kind === 'internal')
        log.error('plugin request failed', { method: path, error: e.message, stack: (e.cause as Error | undefined)?.stack ?? e.stack });
      else log.warn('plugin request refused', { method: path, kind: e.kind, error: e.message });
      const reply = toPluginReply(e);
      send(reply.status, reply.body);
    }
  };
  return (req, res) => void handle(req, res);
}

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
  // Go's client may send an empty Host line; keep idle connections open for the daemon's reuse.
  const server = http.createServer({ requireHostHeader: false, keepAliveTimeout: 0 } as http.ServerOptions, app);
  server.keepAliveTimeout = 0;
  server.headersTimeout = 0;
  server.requestTimeout = 0;
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
