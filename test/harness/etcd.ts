/**
 * A real etcd for tests, started inside a namespace on a free port, with its data in a temp
 * dir that is removed on stop. `stop()` then `start()` restarts it on the same data and port
 * (the fault tests need etcd to come back where the nodes expect it).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import net from 'node:net';
import type { ChildProcess } from 'node:child_process';
import type { Netns } from './netns';
import type { TestPki } from './pki';

function randomPort(): number {
  return 20000 + Math.floor(Math.random() * 40000);
}

export interface TestEtcd {
  endpoint: string;
  start(): Promise<void>;
  stop(): Promise<void>;
  /** The etcd process's ID (`ip netns exec` execs it), while it runs. */
  pid(): number | undefined;
  /** Stops and deletes its data. */
  destroy(): Promise<void>;
}

async function waitForPort(ns: Netns, host: string, port: number, timeoutMs: number, child: ChildProcess): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`etcd exited with ${child.exitCode}`);
    try {
      // Probe from inside the namespace: the port is not reachable from the test's own.
      await ns.exec(
        process.execPath,
        ['-e', `const s=require('net').connect(${port},'${host}');s.on('connect',()=>process.exit(0));s.on('error',()=>process.exit(1))`],
        { timeoutMs: 2000 },
      );
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  throw new Error(`etcd did not listen on ${host}:${port} within ${timeoutMs} ms`);
}

export interface EtcdOptions {
  /** Serve clients over TLS with these certificates, and only clients holding one from its CA. */
  tls?: TestPki;
}

export async function startEtcd(ns: Netns, host = '127.0.0.1', opts: EtcdOptions = {}): Promise<TestEtcd> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'calico-test-etcd-'));
  const client = randomPort();
  const peer = client + 1;
  const endpoint = `${opts.tls ? 'https' : 'http'}://${host}:${client}`;
  const tls = opts.tls ? ['--cert-file', opts.tls.serverCert, '--key-file', opts.tls.serverKey, '--trusted-ca-file', opts.tls.ca, '--client-cert-auth'] : [];
  let child: ChildProcess | undefined;
  const log = fs.createWriteStream(path.join(dir, 'etcd.log'), { flags: 'a' });
  const start = async () => {
    child = ns.spawn('etcd', [
      '--name',
      'test',
      '--data-dir',
      path.join(dir, 'data'),
      '--listen-client-urls',
      endpoint,
      '--advertise-client-urls',
      endpoint,
      '--listen-peer-urls',
      `http://${host}:${peer}`,
      '--initial-advertise-peer-urls',
      `http://${host}:${peer}`,
      '--initial-cluster',
      `test=http://${host}:${peer}`,
      '--log-level',
      'warn',
      ...tls,
    ]);
    child.stdout?.pipe(log, { end: false });
    child.stderr?.pipe(log, { end: false });
    await waitForPort(ns, host, client, 20_000, child);
  };
  const stop = async () => {
    const c = child;
    child = undefined;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      c.once('exit', () => resolve());
      c.kill('SIGTERM');
    });
  };
  await start();
  return {
    endpoint,
    start,
    stop,
    pid: () => (child && child.exitCode === null ? child.pid : undefined),
    destroy: async () => {
      await stop();
      log.end();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Turns on etcd authentication with a root user and one user whose role may read and write only
 * calico's prefix (what an operator grants), through etcdctl with the client certificate.
 */
export async function enableAuth(ns: Netns, etcd: TestEtcd, pki: TestPki, user: string, password: string): Promise<void> {
  const ctl = (...args: string[]) =>
    ns.exec('etcdctl', ['--endpoints', etcd.endpoint, '--cacert', pki.ca, '--cert', pki.clientCert, '--key', pki.clientKey, '--command-timeout=5s', ...args]);
  await ctl('user', 'add', 'root', '--new-user-password', `${password}-root`);
  await ctl('role', 'add', 'calico');
  await ctl('role', 'grant-permission', 'calico', '--prefix=true', 'readwrite', '/calico-libnetwork/');
  await ctl('user', 'add', user, '--new-user-password', password);
  await ctl('user', 'grant-role', user, 'calico');
  await ctl('auth', 'enable');
}

export { net };
