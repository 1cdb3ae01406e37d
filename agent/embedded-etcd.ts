/**
 * The embedded default: with ETCD_ENDPOINTS unset, `calico node` runs a private single-member
 * etcd on loopback with its data under CALICO_DATA_DIR, and stops it on exit. Enough for one
 * host; a cluster shares an external etcd. It serves TLS only and demands a client certificate
 * only root can read (embedded-tls.ts); a data directory from a version that served plain HTTP
 * keeps its data: the certificates are made and the listeners change, nothing else.
 */
import type { ChildProcess } from 'node:child_process';
import { spawnBound } from '../lib/child';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { UnavailableError } from '../lib/errors';
import type { Logger } from '../lib/log';
import { sleep } from '../lib/retry';
import { type EmbeddedTls, ensureEmbeddedTls, readCredentials } from './embedded-tls';
import { EtcdMaintenance, MAINTENANCE_DEFAULTS, type MaintenanceOptions } from './etcd-maintenance';

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

async function reachable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

function cmdline(pid: number): string[] {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  } catch {
    return [];
  }
}

export class EmbeddedEtcd {
  private child?: ChildProcess;
  private maintenance?: EtcdMaintenance;
  endpoint = '';
  /** The CA and client certificate to reach it with, once started. */
  tls?: EmbeddedTls;

  constructor(
    private dataDir: string,
    private binary: string,
    private log: Logger,
    private maintenanceOptions: MaintenanceOptions = MAINTENANCE_DEFAULTS,
  ) {}

  /** The child's process ID while it runs. */
  get pid(): number | undefined {
    return this.child && this.child.exitCode === null ? this.child.pid : undefined;
  }

  private get pidFile(): string {
    return path.join(this.dataDir, 'etcd.pid');
  }

  /**
   * A `calico node` killed with SIGKILL cannot stop its etcd, which then holds the data
   * directory's lock: stop such an orphan (only an etcd on our data dir) before starting anew.
   */
  private async reapOrphan(dir: string): Promise<void> {
    let pid: number;
    try {
      pid = Number(fs.readFileSync(this.pidFile, 'utf8').trim());
    } catch {
      return;
    }
    if (!Number.isInteger(pid) || pid <= 1 || !cmdline(pid).includes(dir)) return;
    this.log.warn('stopping an embedded etcd left running by a previous calico node', { pid });
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      return;
    }
    for (let i = 0; i < 50 && cmdline(pid).includes(dir); i++) await sleep(100);
    if (cmdline(pid).includes(dir)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone meanwhile
      }
      for (let i = 0; i < 20 && cmdline(pid).includes(dir); i++) await sleep(100);
    }
  }

  async start(timeoutMs = 20_000): Promise<string> {
    const dir = path.join(this.dataDir, 'etcd');
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    // etcd warns about, and other users could read, a data directory an older version left open.
    fs.chmodSync(dir, 0o700);
    await this.reapOrphan(dir);
    const tls = (this.tls = await ensureEmbeddedTls(this.dataDir));
    const [client, peer] = [await freePort(), await freePort()];
    this.endpoint = `https://127.0.0.1:${client}`;
    // The peer listener too: a single member has no peers, but an open one would accept raft messages.
    const peerUrl = `https://127.0.0.1:${peer}`;
    const args = [
      '--name',
      'calico-embedded',
      '--data-dir',
      dir,
      '--listen-client-urls',
      this.endpoint,
      '--advertise-client-urls',
      this.endpoint,
      '--listen-peer-urls',
      peerUrl,
      '--initial-advertise-peer-urls',
      peerUrl,
      '--initial-cluster',
      `calico-embedded=${peerUrl}`,
      '--client-cert-auth',
      '--trusted-ca-file',
      tls.caFile,
      '--cert-file',
      tls.serverCertFile,
      '--key-file',
      tls.serverKeyFile,
      '--peer-client-cert-auth',
      '--peer-trusted-ca-file',
      tls.caFile,
      '--peer-cert-file',
      tls.serverCertFile,
      '--peer-key-file',
      tls.serverKeyFile,
      // Every IPAM write adds a revision of a block document. EtcdMaintenance compacts to the
      // newest 10,000 revisions every 30 s; etcd's own revision auto-compaction (on its own,
      // coarser schedule) is the backstop should that loop not run. The quota is etcd's 2 GiB default, stated:
      // bounded history keeps the database far below it (bench/churn.ts).
      '--auto-compaction-mode',
      'revision',
      '--auto-compaction-retention',
      '10000',
      '--quota-backend-bytes',
      String(2 * 1024 ** 3),
      '--log-level',
      'warn',
    ];
    const logFile = fs.openSync(path.join(this.dataDir, 'etcd.log'), 'a');
    this.child = spawnBound(this.binary, args, { stdio: ['ignore', logFile, logFile] });
    fs.closeSync(logFile);
    if (this.child.pid) fs.writeFileSync(this.pidFile, `${this.child.pid}\n`);
    let exited: string | undefined;
    this.child.once('error', (err) => (exited = err.message));
    this.child.once('exit', (code, sig) => {
      exited = `exited with ${code ?? sig}`;
      this.log.warn('embedded etcd stopped', { code, signal: sig });
    });
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (exited) break;
      if (await reachable(client)) {
        this.log.info('embedded etcd started', { endpoint: this.endpoint, dataDir: dir });
        this.maintenance = new EtcdMaintenance(this.endpoint, this.log, this.maintenanceOptions, readCredentials(tls));
        this.maintenance.start();
        return this.endpoint;
      }
      await sleep(100);
    }
    await this.stop();
    throw new UnavailableError(
      `the embedded etcd (${this.binary}) did not start${exited ? `: ${exited}` : ` within ${timeoutMs} ms`}; see ${path.join(this.dataDir, 'etcd.log')}, install etcd (Debian: etcd-server) or set ETCD_ENDPOINTS`,
    );
  }

  /** One compaction/defragmentation pass now (the benchmark reports what it did). */
  maintain() {
    return this.maintenance?.runOnce();
  }

  async stop(): Promise<void> {
    this.maintenance?.stop();
    this.maintenance = undefined;
    const c = this.child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const done = new Promise<void>((r) => c.once('exit', () => r()));
    c.kill('SIGTERM');
    const t = setTimeout(() => c.kill('SIGKILL'), 5000);
    await done;
    clearTimeout(t);
  }
}
