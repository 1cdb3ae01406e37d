/**
 * A fake Docker daemon's plugin client: POSTs to a plugin socket the way Go's
 * pkg/plugins client does (no Content-Type, the v1.2 Accept header, JSON with a trailing
 * newline, or an empty body for argument-less calls and for retried requests).
 */
import { randomBytes } from 'node:crypto';
import http from 'node:http';

export interface Reply {
  status: number;
  body: any;
  raw: string;
}

export function callPlugin(socketPath: string, method: string, body?: unknown): Promise<Reply> {
  const payload =
    body === undefined ? '' : typeof body === 'object' && body !== null && 'raw' in body ? (body as { raw: string }).raw : JSON.stringify(body) + '\n';
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        socketPath,
        method: 'POST',
        path: `/${method}`,
        headers: { Host: 'plugin.moby.localhost', Accept: 'application/vnd.docker.plugins.v1.2+json', 'Content-Length': Buffer.byteLength(payload) },
        timeout: 60_000,
      },
      (res) => {
        let raw = '';
        res.setEncoding('utf8');
        res.on('data', (c) => (raw += c));
        res.on('end', () => {
          let parsed: unknown;
          try {
            parsed = JSON.parse(raw);
          } catch {
            parsed = undefined;
          }
          resolve({ status: res.statusCode ?? 0, body: parsed, raw });
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${method} timed out`)));
    req.on('error', reject);
    req.end(payload);
  });
}

/** Two sockets, as a legacy plugin install has them. */
export class FakeDocker {
  constructor(
    readonly networkSock: string,
    readonly ipamSock: string,
  ) {}

  net(method: string, body?: unknown) {
    return callPlugin(this.networkSock, `NetworkDriver.${method}`, body);
  }

  ipam(method: string, body?: unknown) {
    return callPlugin(this.ipamSock, `IpamDriver.${method}`, body);
  }

  /**
   * An IPv4 network as `docker network create -d calico --ipam-driver calico-ipam` makes it
   * (RequestPool, then CreateNetwork with the pool and its gateway), under a random ID.
   */
  async createIPv4Network(): Promise<{ pool: string; nid: string }> {
    const pool = await this.ok('ipam', 'RequestPool', { AddressSpace: 'CalicoLocalAddressSpace', Pool: '', SubPool: '', Options: null, V6: false });
    const nid = randomBytes(32).toString('hex');
    await this.ok('net', 'CreateNetwork', {
      NetworkID: nid,
      Options: { 'com.docker.network.generic': {} },
      IPv4Data: [{ AddressSpace: 'CalicoLocalAddressSpace', Pool: pool.Pool, Gateway: pool.Data['com.docker.network.gateway'] }],
      IPv6Data: [],
    });
    return { pool: pool.PoolID as string, nid };
  }

  /** Asserts success and returns the body. */
  async ok(which: 'net' | 'ipam', method: string, body?: unknown) {
    const r = await this[which](method, body);
    if (r.status !== 200) throw new Error(`${method} failed with ${r.status}: ${r.raw}`);
    return r.body;
  }
}
