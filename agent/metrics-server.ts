/**
 * The node's own HTTP endpoints: /metrics (Prometheus text), /healthz (the process answers) and
 * /readyz (200 when every part is up, else 503 naming what is not). Served on CALICO_METRICS_ADDR
 * when it is set, and always on a unix socket in the data directory, which `calico node health`
 * asks, so a health check works without opening a TCP port.
 */
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import type { Config, MetricsAddr } from '../lib/config';
import { BadRequestError, errorMessage } from '../lib/errors';
import type { Logger } from '../lib/log';
import type { Metrics } from '../lib/metrics';
import { closeUnix, listenUnix } from '../lib/server';

/** Where the health socket is: `calico node health` and the node agree through the data directory. */
export function healthSocketPath(cfg: Pick<Config, 'dataDir'>): string {
  return path.join(cfg.dataDir, 'health.sock');
}

/** Resolves to the problems that keep the node from being ready; none: ready. */
export type Readiness = () => Promise<string[]>;

/** The text /readyz answers with, and `calico node health` prints: one line. */
export function readinessLine(problems: string[]): string {
  return problems.length ? `not ready: ${problems.join('; ')}` : 'ready';
}

export function createStatusApp(readiness: Readiness, metrics: Metrics | undefined, log: Logger): http.RequestListener {
  const reply = (res: http.ServerResponse, status: number, body: string, type = 'text/plain; charset=utf-8') => {
    res.writeHead(status, { 'Content-Type': type, 'Content-Length': Buffer.byteLength(body), 'Cache-Control': 'no-store' });
    res.end(body);
  };
  const handle = async (req: http.IncomingMessage, res: http.ServerResponse) => {
    req.resume();
    const p = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('Allow', 'GET, HEAD');
      return reply(res, 405, `${req.method ?? ''} is not served here; use GET\n`);
    }
    if (p === '/healthz') return reply(res, 200, 'ok\n');
    if (p === '/readyz') {
      const problems = await readiness().catch((err: unknown) => [`the readiness check failed: ${errorMessage(err)}`]);
      return reply(res, problems.length ? 503 : 200, readinessLine(problems) + '\n');
    }
    if (p === '/metrics' && metrics) {
      try {
        return reply(res, 200, await metrics.text(), metrics.registry.contentType);
      } catch (err) {
        log.warn('metrics could not be collected', { error: errorMessage(err) });
        return reply(res, 500, `metrics could not be collected: ${errorMessage(err)}\n`);
      }
    }
    reply(res, 404, `not found: ${p.slice(0, 200)}; try /healthz, /readyz${metrics ? ' or /metrics' : ''}\n`);
  };
  return (req, res) => void handle(req, res);
}

/** Listens on CALICO_METRICS_ADDR; an address that cannot be bound is refused naming the variable. */
export async function listenMetrics(app: http.RequestListener, addr: MetricsAddr): Promise<http.Server> {
  const server = http.createServer({ headersTimeout: 10_000, requestTimeout: 30_000 }, app);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: addr.host, port: addr.port }, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (err) {
    server.close();
    const code = (err as NodeJS.ErrnoException).code;
    const why =
      code === 'EADDRINUSE'
        ? 'the port is in use by another process'
        : code === 'EADDRNOTAVAIL'
          ? 'the address is not one of this host'
          : code === 'EACCES'
            ? 'binding it needs more privilege'
            : code === 'ENOTFOUND' || code === 'EAI_AGAIN'
              ? 'the host name does not resolve'
              : errorMessage(err);
    throw new BadRequestError(`CALICO_METRICS_ADDR="${addr.text}" cannot be listened on: ${why}; pick a free port on an address of this host, or unset it`);
  }
  return server;
}

/** The HTTP endpoints of one node: the TCP listener (optional) and the health socket. */
export class StatusServer {
  private tcp?: http.Server;
  private unix?: http.Server;

  constructor(
    private cfg: Pick<Config, 'dataDir' | 'metricsAddr'>,
    private app: http.RequestListener,
    private log: Logger,
  ) {}

  /** The TCP port first: a bad CALICO_METRICS_ADDR stops the node before anything else is up. */
  async listenTcp(): Promise<void> {
    if (!this.cfg.metricsAddr) return;
    this.tcp = await listenMetrics(this.app, this.cfg.metricsAddr);
    const a = this.tcp.address() as net.AddressInfo;
    this.log.info('metrics and health served', { address: this.cfg.metricsAddr.text, port: a.port });
  }

  /** The health socket is a convenience: without it the node still serves, and says so. */
  async listenUnix(): Promise<void> {
    const p = healthSocketPath(this.cfg);
    try {
      fs.mkdirSync(this.cfg.dataDir, { recursive: true });
      this.unix = await listenUnix(this.app, p, 0o600);
    } catch (err) {
      this.log.warn('the health socket could not be made; "calico node health" will not reach this node', { path: p, error: errorMessage(err) });
    }
  }

  async close(): Promise<void> {
    if (this.tcp) {
      this.tcp.closeAllConnections();
      await new Promise<void>((r) => this.tcp!.close(() => r()));
    }
    if (this.unix) await closeUnix(this.unix, healthSocketPath(this.cfg));
    this.tcp = this.unix = undefined;
  }
}
