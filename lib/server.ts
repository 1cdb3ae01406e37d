/**
 * The plugin HTTP server on a unix socket (Docker's plugin transport: POST /<Iface>.<Method>,
 * JSON bodies, 200 + JSON on success, non-200 + {"Err"} on failure). Parsing, logging and the
 * error mapping live here once; handlers only see parsed bodies and return plain objects.
 */
import fs from 'node:fs';
import http from 'node:http';
import express from 'express';
import { BadRequestError, classify, errorMessage, toPluginReply } from './errors';
import type { Logger } from './log';

export type Handler = (body: unknown) => Promise<unknown> | unknown;

export interface Route {
  handler: Handler;
  /** Calls Docker sends with no arguments (Activate, GetCapabilities, ...) have empty bodies. */
  hasBody: boolean;
}

export type Routes = Record<string, Route>;

export const PLUGIN_CONTENT_TYPE = 'application/vnd.docker.plugins.v1.1+json';

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

export function createPluginApp(routes: Routes, log: Logger): express.Express {
  const app = express();
  app.disable('x-powered-by');
  // Docker sends no Content-Type, so take every body raw and decode it ourselves.
  app.use(express.raw({ type: () => true, limit: '4mb' }));
  app.use(async (req, res) => {
    const started = process.hrtime.bigint();
    const send = (status: number, body: unknown) => {
      res.status(status).type(PLUGIN_CONTENT_TYPE).send(JSON.stringify(body));
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      log.debug('plugin request', { method: req.path, status, ms: Math.round(ms * 100) / 100 });
    };
    const route = Object.prototype.hasOwnProperty.call(routes, req.path) ? routes[req.path] : undefined;
    if (!route) {
      send(404, { Err: `calico does not implement ${req.path}` });
      return;
    }
    try {
      const body = route.hasBody ? decodeBody(req.body as Buffer | undefined, req.path) : undefined;
      const out = await route.handler(body);
      send(200, out ?? {});
    } catch (err) {
      const e = classify(err);
      if (e.kind === 'internal') log.error('plugin request failed', { method: req.path, error: e.message, stack: (e.cause as Error | undefined)?.stack ?? e.stack });
      else log.warn('plugin request refused', { method: req.path, kind: e.kind, error: e.message });
      const reply = toPluginReply(e);
      send(reply.status, reply.body);
    }
  });
  return app;
}

/**
 * Listens on a unix socket, replacing a stale one left by a crash (Docker stalls ~15 s on a
 * socket nobody serves, and listen() would fail with EADDRINUSE).
 */
export async function listenUnix(app: express.Express, socketPath: string, mode = 0o660): Promise<http.Server> {
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
