/** How CLI commands reach etcd: ETCD_ENDPOINTS (environment or settings file), else the embedded etcd `calico node` runs here. */
import fs from 'node:fs';
import { type Config, embeddedEndpointFile, loadHostConfig } from '../lib/config';
import { EtcdKV } from '../lib/datastore/etcd';
import { embeddedTlsDir, embeddedTlsFiles } from '../agent/embedded-tls';
import { BadRequestError, UnavailableError } from '../lib/errors';

export function connect(cfg: Config = loadHostConfig()): EtcdKV {
  let endpoints = cfg.etcdEndpoints;
  let tls: Pick<Config, 'etcdCaFile' | 'etcdCertFile' | 'etcdKeyFile' | 'etcdUsername' | 'etcdPassword'> = cfg;
  if (!endpoints) {
    const file = embeddedEndpointFile(cfg);
    try {
      endpoints = [fs.readFileSync(file, 'utf8').trim()];
    } catch {
      throw new UnavailableError(`ETCD_ENDPOINTS is not set and no embedded etcd is recorded in ${file}: start "calico node" first, or set ETCD_ENDPOINTS`);
    }
    const t = embeddedTlsFiles(cfg.dataDir);
    try {
      for (const f of [t.caFile, t.certFile, t.keyFile]) fs.accessSync(f, fs.constants.R_OK);
    } catch (err) {
      const denied = (err as NodeJS.ErrnoException).code === 'EACCES';
      throw new BadRequestError(
        denied
          ? `the embedded etcd's client certificate in ${embeddedTlsDir(cfg.dataDir)} is readable by root only: run calico as root (sudo calico ...)`
          : `the embedded etcd's client certificate is missing from ${embeddedTlsDir(cfg.dataDir)}: restart "calico node" (it makes them), or set ETCD_ENDPOINTS`,
      );
    }
    tls = { etcdCaFile: t.caFile, etcdCertFile: t.certFile, etcdKeyFile: t.keyFile };
  }
  return new EtcdKV({
    endpoints,
    // A one-shot command can wait longer than a plugin request: it includes connecting.
    callTimeoutMs: 10_000,
    caFile: tls.etcdCaFile,
    certFile: tls.etcdCertFile,
    keyFile: tls.etcdKeyFile,
    username: tls.etcdUsername,
    password: tls.etcdPassword,
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
