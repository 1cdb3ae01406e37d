/**
 * A host with a real Docker engine: a network namespace with an uplink to a router namespace,
 * its own dockerd (own roots, own plugin directory bind-mounted over /run/docker/plugins in a
 * private mount namespace, as docs/testing.md §2 describes), a locally made busybox image and
 * `calico node` beside it. Tests use only the docker and calico CLIs against it.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { NetnsScope, Netns } from './netns';
import { startCalico, type CalicoProcess } from './calico';
import { giveUplink } from './sandbox';

export interface CmdResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function runCmd(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; input?: Buffer; timeoutMs?: number } = {}): Promise<CmdResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: opts.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 120_000);
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    // A command that exits before reading its input closes the pipe: that is not a failure.
    child.stdin.on('error', () => undefined);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? 1, stdout, stderr });
    });
    child.stdin.end(opts.input ?? '');
  });
}

/** The image's filesystem: busybox-static and the applets the tests use. */
function busyboxTar(dir: string): Promise<Buffer> {
  fs.mkdirSync(path.join(dir, 'bin'), { recursive: true });
  fs.copyFileSync('/usr/bin/busybox', path.join(dir, 'bin', 'busybox'));
  for (const a of ['sh', 'ip', 'ping', 'nc', 'wget', 'sleep', 'cat', 'ifconfig', 'route', 'true', 'echo', 'grep', 'hostname', 'httpd', 'mkdir', 'chmod']) {
    fs.symlinkSync('busybox', path.join(dir, 'bin', a));
  }
  return new Promise((resolve, reject) => {
    const tar = spawn('tar', ['-C', dir, '-c', '.']);
    const chunks: Buffer[] = [];
    tar.stdout.on('data', (c) => chunks.push(c));
    tar.on('error', reject);
    tar.on('close', (code) => (code === 0 ? resolve(Buffer.concat(chunks)) : reject(new Error(`tar exited ${code}`))));
  });
}

export interface DockerHost {
  name: string;
  ns: Netns;
  node: CalicoProcess;
  dockerHost: string;
  /** dockerd's log, where a managed plugin's output also lands. */
  dockerdLog(): string;
  docker(args: string[], opts?: { timeoutMs?: number }): Promise<CmdResult>;
  /** Like docker() but throws on a non-zero exit. */
  dockerOk(args: string[]): Promise<string>;
  calico(args: string[]): Promise<CmdResult>;
  /** Stops dockerd (its containers stop, as on a daemon restart without live-restore) and starts it again. */
  restartDockerd(): Promise<void>;
  destroy(): Promise<void>;
}

export interface DockerHostOptions {
  name: string;
  etcd?: string;
  env?: Record<string, string>;
  /** Attach to a shared fabric instead of a private router: the host namespace and its address. */
  onFabric?: { ns: Netns; ip: string };
  /**
   * Run dockerd with its own firewall on (`--iptables=true`), as real hosts do, and its FORWARD
   * policy DROP in both families: dockerd sets that when it turns forwarding on, which calico
   * node has already done here, so the harness sets it as dockerd would have.
   */
  dockerIptables?: boolean;
  /**
   * Start dockerd (and import the image) but not `calico node`: the test starts it with
   * `host.node.start()` and waits with `host.node.ready()`, to time a host joining.
   */
  deferNode?: boolean;
}

export async function startDockerHost(scope: NetnsScope, opts: DockerHostOptions): Promise<DockerHost> {
  let ns: Netns;
  if (opts.onFabric) {
    ns = opts.onFabric.ns;
  } else {
    ns = await scope.create(opts.name);
    await giveUplink(ns, await scope.create(`${opts.name}r`));
  }
  const id = randomBytes(3).toString('hex');
  const root = fs.mkdtempSync(path.join(os.tmpdir(), `calico-e2e-${opts.name}-`));
  const execRoot = `/run/cdk-${id}`; // short: containerd's socket paths must fit 108 bytes
  const sock = `/run/cdk-${id}.sock`;
  const node = await startCalico(ns, { name: opts.name, etcd: opts.etcd, env: { DOCKER_HOST: `unix://${sock}`, ...opts.env }, deferStart: opts.deferNode });
  fs.mkdirSync('/run/docker/plugins', { recursive: true });
  // Positional parameters, not interpolation: the script text is fixed.
  const script = 'mount -t cgroup2 none /sys/fs/cgroup && mount --bind "$1" /run/docker/plugins && shift && exec dockerd "$@"';
  const log = fs.createWriteStream(path.join(root, 'dockerd.log'));
  const env = { ...process.env, DOCKER_HOST: `unix://${sock}` };
  const docker = (args: string[], o: { timeoutMs?: number } = {}) => runCmd('docker', args, { env, timeoutMs: o.timeoutMs });
  let dockerd: ReturnType<Netns['spawn']>;
  const launch = async () => {
    dockerd = ns.spawn('unshare', [
      '-m',
      '--propagation',
      'private',
      'sh',
      '-c',
      script,
      'sh',
      node.pluginDir,
      '--data-root',
      path.join(root, 'docker'),
      '--exec-root',
      execRoot,
      '-H',
      `unix://${sock}`,
      '--pidfile',
      path.join(root, 'dockerd.pid'),
      '--bridge=none',
      ...(opts.dockerIptables ? ['--iptables=true'] : ['--iptables=false', '--ip6tables=false', '--ip-masq=false']),
    ]);
    dockerd.stdout?.pipe(log, { end: false });
    dockerd.stderr?.pipe(log, { end: false });
    const deadline = Date.now() + 60_000;
    while ((await docker(['version', '--format', '{{.Server.Version}}'])).code !== 0) {
      if (dockerd.exitCode !== null) throw new Error(`dockerd exited: ${fs.readFileSync(path.join(root, 'dockerd.log'), 'utf8')}`);
      if (Date.now() > deadline) throw new Error('dockerd did not start within 60 s');
      await new Promise((r) => setTimeout(r, 200));
    }
  };
  const stopDockerd = async () => {
    if (dockerd.exitCode !== null || dockerd.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => dockerd.kill('SIGKILL'), 30_000);
      dockerd.once('exit', () => {
        clearTimeout(t);
        resolve();
      });
      dockerd.kill('SIGTERM');
    });
  };
  await launch();
  if (opts.dockerIptables) for (const t of ['iptables', 'ip6tables']) await ns.exec(t, ['-w', '-P', 'FORWARD', 'DROP']);
  const imported = await runCmd('docker', ['import', '-', 'busybox:latest'], { env, input: await busyboxTar(path.join(root, 'image')) });
  if (imported.code !== 0) throw new Error(`docker import failed: ${imported.stderr}`);
  if (!opts.deferNode) await node.ready();
  const host: DockerHost = {
    name: opts.name,
    ns,
    node,
    dockerHost: `unix://${sock}`,
    dockerdLog: () => fs.readFileSync(path.join(root, 'dockerd.log'), 'utf8'),
    docker,
    dockerOk: async (args) => {
      const r = await docker(args);
      if (r.code !== 0) throw new Error(`docker ${args.join(' ')} failed (${r.code}): ${r.stderr}`);
      return r.stdout.trim();
    },
    calico: (args) => node.cli(args, { allowFail: true }),
    restartDockerd: async () => {
      await stopDockerd();
      await launch();
    },
    destroy: async () => {
      const ps = await docker(['ps', '-aq']);
      if (ps.code === 0 && ps.stdout.trim()) await docker(['rm', '-f', ...ps.stdout.trim().split(/\s+/)]);
      await stopDockerd();
      await node.destroy();
      await runCmd('umount', ['-R', path.join(root, 'docker')]).catch(() => undefined);
      fs.rmSync(root, { recursive: true, force: true });
      fs.rmSync(execRoot, { recursive: true, force: true });
      fs.rmSync(sock, { force: true });
    },
  };
  return host;
}
