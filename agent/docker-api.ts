/**
 * The few Engine API calls the Docker watcher makes (events, containers, networks, inspect),
 * over node:http. A client library was used before; it loads an SSH stack (ssh2 and its
 * WebAssembly Poly1305) at require time for remote daemons this daemon never talks to, which
 * was 22 MB of every `calico node`'s resident memory.
 */
import http from 'node:http';
import { UnavailableError } from '../lib/errors';

export interface DockerNetworkSummary {
  Id: string;
  Name: string;
}

export interface DockerContainerSummary {
  Id: string;
  NetworkSettings?: { Networks?: Record<string, { EndpointID?: string } | null> };
}

export interface DockerContainer {
  Id: string;
  Name: string;
  Config?: { Labels?: Record<string, string> | null };
  NetworkSettings?: { Networks?: Record<string, { EndpointID?: string } | null> };
}

const TIMEOUT_MS = 10_000;
/** A Docker answer larger than this is not one of these calls'; refuse it rather than hold it. */
const MAX_BODY = 64 * 1024 * 1024;

export class DockerApi {
  private readonly target: { socketPath: string } | { host: string; port: number };

  /** `unix:///var/run/docker.sock` or `tcp://host:port` (DOCKER_HOST's forms). */
  constructor(dockerHost: string) {
    if (dockerHost.startsWith('unix://')) this.target = { socketPath: dockerHost.slice('unix://'.length) };
    else {
      const u = new URL(dockerHost.replace(/^tcp:/, 'http:'));
      this.target = { host: u.hostname, port: Number(u.port || 2375) };
    }
  }

  listNetworks(): Promise<DockerNetworkSummary[]> {
    return this.json('/networks');
  }

  listContainers(): Promise<DockerContainerSummary[]> {
    return this.json('/containers/json');
  }

  inspectContainer(id: string): Promise<DockerContainer> {
    return this.json(`/containers/${encodeURIComponent(id)}/json`);
  }

  /** The event stream (one JSON object per line) of these types, open until Docker ends it. */
  events(types: string[]): Promise<http.IncomingMessage> {
    const filters = encodeURIComponent(JSON.stringify({ type: types }));
    return new Promise((resolve, reject) => {
      const req = http.get({ ...this.target, path: `/events?filters=${filters}` }, (res) => {
        if (res.statusCode !== 200) {
          res.resume();
          reject(new UnavailableError(`Docker refused its event stream: HTTP ${res.statusCode}`));
        } else resolve(res);
      });
      // Only until the stream opens: a quiet stream is not a dead one.
      req.setTimeout(TIMEOUT_MS, () => req.destroy(new UnavailableError(`Docker did not open its event stream within ${TIMEOUT_MS / 1000} s`)));
      req.on('response', () => req.setTimeout(0));
      req.on('error', reject);
    });
  }

  private json<T>(path: string): Promise<T> {
    return new Promise((resolve, reject) => {
      const req = http.get({ ...this.target, path, timeout: TIMEOUT_MS }, (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > MAX_BODY) req.destroy(new UnavailableError(`Docker's answer to GET ${path} is over ${MAX_BODY} bytes`));
          else chunks.push(c);
        });
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          if (res.statusCode !== 200)
            return reject(new UnavailableError(`Docker answered GET ${path} with HTTP ${res.statusCode}: ${text.trim().slice(0, 300)}`));
          try {
            resolve(JSON.parse(text) as T);
          } catch {
            reject(new UnavailableError(`Docker's answer to GET ${path} is not JSON`));
          }
        });
        res.on('error', reject);
      });
      req.on('timeout', () => req.destroy(new UnavailableError(`Docker did not answer GET ${path} within ${TIMEOUT_MS / 1000} s`)));
      req.on('error', reject);
    });
  }
}
