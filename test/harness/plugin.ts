/**
 * Installs the managed plugin on a test Docker host the way a user would: build its directory
 * with scripts/build-plugin.sh, `docker plugin create`, `docker plugin set`, `enable`.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { type DockerHost, runCmd } from './docker';

export interface InstalledPlugin {
  name: string;
  remove(): Promise<void>;
}

export async function installPlugin(
  h: DockerHost,
  /** certs: files copied into the directory mounted at /etc/calico/certs, by their name there. */
  opts: { name: string; etcd: string; nodeName: string; env?: Record<string, string>; certs?: Record<string, string> },
): Promise<InstalledPlugin> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'calico-plugin-'));
  const built = await runCmd(path.resolve(__dirname, '../../../scripts/build-plugin.sh'), [path.join(dir, 'plugin')], { timeoutMs: 900_000 });
  if (built.code !== 0) throw new Error(`build-plugin.sh failed: ${built.stderr}`);
  for (const d of ['data', 'certs']) fs.mkdirSync(path.join(dir, d));
  for (const [name, from] of Object.entries(opts.certs ?? {})) fs.copyFileSync(from, path.join(dir, 'certs', name));
  await h.dockerOk(['plugin', 'create', opts.name, path.join(dir, 'plugin')]);
  await h.dockerOk([
    'plugin',
    'set',
    opts.name,
    `ETCD_ENDPOINTS=${opts.etcd}`,
    `CALICO_NODENAME=${opts.nodeName}`,
    'CALICO_IPV4POOL_CIDR=10.65.0.0/16',
    'CALICO_IPV6POOL_CIDR=fd65::/64',
    'CALICO_LOG_LEVEL=debug',
    ...Object.entries(opts.env ?? {}).map(([k, v]) => `${k}=${v}`),
    `data.source=${path.join(dir, 'data')}`,
    `etcd-certs.source=${path.join(dir, 'certs')}`,
    `docker-sock.source=${h.dockerHost.replace('unix://', '')}`,
  ]);
  await h.dockerOk(['plugin', 'enable', opts.name]);
  return {
    name: opts.name,
    remove: async () => {
      await h.docker(['plugin', 'disable', '-f', opts.name]);
      await h.docker(['plugin', 'rm', '-f', opts.name]);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
