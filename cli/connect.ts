/** How CLI commands reach etcd: ETCD_ENDPOINTS, else the embedded etcd `calico node` runs here. */
import fs from 'node:fs';
import { type Config, embeddedEndpointFile, loadConfig } from '../lib/config';
import { EtcdKV } from '../lib/datastore/etcd';
import { UnavailableError } from '../lib/errors';

export function connect(cfg: Config = loadConfig()): EtcdKV {
  let endpoints = cfg.etcdEndpoints;
  if (!endpoints) {
    const file = embeddedEndpointFile(cfg);
    try {
      endpoints = [fs.readFileSync(file, 'utf8').trim()];
    } catch {
      throw new UnavailableError(`ETCD_ENDPOINTS is not set and no embedded etcd is recorded in ${file}: start "calico node" first, or set ETCD_ENDPOINTS`);
    }
  }
  return new EtcdKV({
    endpoints,
    // A one-shot command can wait longer than a plugin request: it includes connecting.
    callTimeoutMs: 10_000,
    caFile: cfg.etcdCaFile,
    certFile: cfg.etcdCertFile,
    keyFile: cfg.etcdKeyFile,
    username: cfg.etcdUsername,
    password: cfg.etcdPassword,
  });
}

/** Runs fn with a connection to etcd, closed afterwards whatever happens. */
export async function withKv<T>(fn: (kv: EtcdKV) => Promise<T>, cfg?: Config): Promise<T> {
  const kv = connect(cfg);
  try {
    return await fn(kv);
  } finally {
    await kv.close();
  }
}
