/**
 * Runs the real `calico node` (the compiled CLI) inside a namespace, and the `calico` CLI
 * against the same etcd, as a user would.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import type { Netns } from './netns';
import { FakeDocker } from './plugin-client';

export const CLI = path.resolve(__dirname, '../../cli/main.js');

export interface CalicoProcess {
  name: string;
  pluginDir: string;
  dataDir: string;
  env: Record<string, string>;
  docker: FakeDocker;
  logs(): string;
  /** The daemon's process ID (`ip netns exec` and `env` exec it), while it runs. */
  pid(): number | undefined;
  /** Launches a node made with `deferStart`; resolves when its plugin sockets exist. */
  start(): Promise<void>;
  /** Waits until the log says start-up finished. */
  ready(timeoutMs?: number): Promise<void>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  /** Starts it again with the same settings (after stop or kill). */
  restart(): Promise<void>;
  cli(args: string[], opts?: { allowFail?: boolean }): Promise<{ code: number; stdout: string; stderr: string }>;
  destroy(): Promise<void>;
}

export async function startCalico(
  ns: Netns,
  opts: {
    name: string;
    etcd?: string;
    env?: Record<string, string>;
    /** The settings file's text (KEY=VALUE lines). */
    settings?: string;
    /** Make the directories but launch nothing until `start()`: for tests that time a node's start. */
    deferStart?: boolean;
  },
): Promise<CalicoProcess> {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), `calico-test-${opts.name}-`));
  const pluginDir = path.join(root, 'plugins');
  const dataDir = path.join(root, 'data');
  fs.mkdirSync(pluginDir, { recursive: true });
  // Its own settings file (empty unless the test gives one): the machine's /etc/calico/calico.env never leaks in.
  const configFile = path.join(root, 'calico.env');
  fs.writeFileSync(configFile, opts.settings ?? '');
  const env: Record<string, string> = {
    CALICO_CONFIG: configFile,
    CALICO_NODENAME: opts.name,
    CALICO_PLUGIN_DIR: pluginDir,
    CALICO_DATA_DIR: dataDir,
    CALICO_LOG_LEVEL: 'debug',
    CALICO_IPV4POOL_CIDR: '10.65.0.0/16',
    CALICO_IPV6POOL_CIDR: 'fd65::/64',
    ...(opts.etcd ? { ETCD_ENDPOINTS: opts.etcd } : {}),
    ...opts.env,
  };
  let child: ChildProcess | undefined;
  let log = '';
  const launch = async () => {
    // CALICO_TEST_NODE_ARGS passes node flags (e.g. --cpu-prof) to the daemon when profiling.
    const nodeArgs = process.env.CALICO_TEST_NODE_ARGS ? process.env.CALICO_TEST_NODE_ARGS.split(' ') : [];
    child = ns.spawn('env', [...Object.entries(env).map(([k, v]) => `${k}=${v}`), process.execPath, ...nodeArgs, CLI, 'node']);
    child.stdout?.on('data', (d) => (log += d));
    child.stderr?.on('data', (d) => (log += d));
    const sock = path.join(pluginDir, 'calico-ipam.sock');
    const deadline = Date.now() + 15_000;
    // The sockets are replaced at start; wait for this process's, not a stale one: made after
    // the launch (the file clock is coarse, hence the slack). The socket, not a log line, so a
    // quiet log level (warn) waits no longer than the start takes.
    const launchedAt = Date.now() - 50;
    const fresh = (p: string) => {
      const st = fs.statSync(p, { throwIfNoEntry: false });
      return !!st && st.mtimeMs >= launchedAt;
    };
    while (!fresh(sock)) {
      if (child.exitCode !== null) throw new Error(`calico node exited (${child.exitCode}):\n${log}`);
      if (Date.now() > deadline) throw new Error(`calico node did not make its sockets within 15 s:\n${log}`);
      await new Promise((r) => setTimeout(r, 10));
    }
    // The health socket follows at once; the node serves without it (and logs why), so no failure.
    const health = path.join(dataDir, 'health.sock');
    for (const until = Date.now() + 2000; !fresh(health) && Date.now() < until;) await new Promise((r) => setTimeout(r, 10));
  };
  let mark = 0;
  try {
    if (!opts.deferStart) await launch();
  } catch (err) {
    // Nothing is returned to destroy, so clean up here: a failed start leaves no daemon or dir.
    child?.kill('SIGKILL');
    fs.rmSync(root, { recursive: true, force: true });
    throw err;
  }
  const proc: CalicoProcess = {
    name: opts.name,
    pluginDir,
    dataDir,
    env,
    docker: new FakeDocker(path.join(pluginDir, 'calico.sock'), path.join(pluginDir, 'calico-ipam.sock')),
    logs: () => log,
    pid: () => (child && child.exitCode === null ? child.pid : undefined),
    start: async () => {
      if (child) throw new Error(`calico node ${opts.name} was started already; use restart()`);
      await launch();
    },
    ready: async (timeoutMs = 30_000) => {
      const deadline = Date.now() + timeoutMs;
      const quiet = env.CALICO_LOG_LEVEL === 'warn' || env.CALICO_LOG_LEVEL === 'error';
      const isReady = async () => {
        if (!quiet) return /"calico node ready"/.test(log.slice(mark));
        // No info lines to watch: ask for something that needs etcd and the default pools.
        const r = await proc.docker
          .ipam('RequestPool', { AddressSpace: 'CalicoLocalAddressSpace', Pool: '', SubPool: '', Options: null, V6: false })
          .catch(() => undefined);
        return r?.status === 200;
      };
      while (!(await isReady())) {
        if (Date.now() > deadline) throw new Error(`calico node ${opts.name} not ready after ${timeoutMs} ms:\n${log}`);
        if (child?.exitCode !== null && child?.exitCode !== undefined) throw new Error(`calico node exited:\n${log}`);
        await new Promise((r) => setTimeout(r, 25));
      }
    },
    stop: async (signal = 'SIGTERM') => {
      const c = child;
      if (!c || c.exitCode !== null || c.signalCode !== null) return c?.exitCode ?? null;
      // `ip netns exec` execs, so the signal reaches env, which execs node: the daemon itself.
      const code = await new Promise<number | null>((resolve) => {
        c.once('exit', (code) => resolve(code));
        c.kill(signal);
      });
      return code;
    },
    restart: async () => {
      mark = log.length;
      await launch();
    },
    cli: async (args, o = {}) => {
      try {
        const r = await ns.exec('env', [...Object.entries(env).map(([k, v]) => `${k}=${v}`), process.execPath, CLI, ...args], { timeoutMs: 60_000 });
        return { code: 0, ...r };
      } catch (err) {
        if (!o.allowFail) throw err;
        const cause = (err as Error & { cause?: { code?: number; stdout?: string; stderr?: string } }).cause;
        return { code: typeof cause?.code === 'number' ? cause.code : 1, stdout: cause?.stdout ?? '', stderr: cause?.stderr ?? '' };
      }
    },
    destroy: async () => {
      await proc.stop(process.env.CALICO_TEST_NODE_ARGS ? 'SIGTERM' : 'SIGKILL');
      fs.rmSync(root, { recursive: true, force: true });
    },
  };
  return proc;
}
