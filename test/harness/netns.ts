/**
 * Throw-away network namespaces for tests that need a real kernel. Every command goes through
 * execFile with an argument vector (never a shell string). Namespaces are tracked in a registry
 * so they are deleted even when a test throws, and on process exit or a termination signal.
 *
 * Test traffic stays inside namespaces made here: none of them is ever given a route towards
 * the machine's real uplink. Use 172.31.0.0/16, 10.0.0.0/8 or fd00::/8 addresses inside them.
 */
import { execFile, execFileSync, spawn as spawnChild, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);

export interface ExecResult {
  stdout: string;
  stderr: string;
}

export interface Netns {
  /** `<prefix>-<pid>-<random>`: unique per run, so parallel test runs never collide. */
  readonly name: string;
  /** Runs `ip netns exec <name> cmd ...args`; rejects with stderr in the message on failure. */
  exec(cmd: string, args?: string[], opts?: { timeoutMs?: number }): Promise<ExecResult>;
  /** Runs `ip -n <name> ...args` (cheaper than exec: no mount namespace juggling). */
  ip(args: string[]): Promise<string>;
  /** `ip -j -n <name> ...args`, parsed. */
  ipJson<T = unknown>(args: string[]): Promise<T>;
  /** Reads a /proc/sys value as seen inside the namespace (`net/ipv4/ip_forward`). */
  sysctl(key: string): Promise<string>;
  /** Starts a long-running child inside the namespace; it is killed by destroy(). */
  spawn(cmd: string, args?: string[], opts?: SpawnOptions): ChildProcess;
  /** Kills children started with spawn() and deletes the namespace. Safe to call twice. */
  destroy(): Promise<void>;
}

const live = new Map<string, Set<ChildProcess>>();
let hooksInstalled = false;

/** Synchronous last-chance cleanup: 'exit' handlers cannot wait for promises. */
function destroyAllSync(): void {
  for (const [name, children] of live) {
    for (const c of children) c.kill('SIGKILL');
    try {
      execFileSync('ip', ['netns', 'delete', name], { stdio: 'ignore' });
    } catch {
      // already gone
    }
  }
  live.clear();
}

function installHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on('exit', destroyAllSync);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      destroyAllSync();
      // Re-raise with the default disposition so the exit status still says "killed by signal".
      process.kill(process.pid, signal);
    });
  }
}

async function run(cmd: string, args: string[], timeoutMs = 30_000): Promise<ExecResult> {
  try {
    const { stdout, stderr } = await execFileP(cmd, args, { timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 });
    return { stdout, stderr };
  } catch (err) {
    const e = err as Error & { stderr?: string; stdout?: string; code?: unknown };
    const detail = (e.stderr || e.stdout || e.message).trim();
    throw new Error(`${cmd} ${args.join(' ')} failed (${String(e.code)}): ${detail}`, { cause: err });
  }
}

/** True when this process can create namespaces (root with iproute2); tests skip otherwise. */
export function canCreateNetns(): boolean {
  if (process.getuid?.() !== 0) return false;
  try {
    execFileSync('ip', ['netns', 'list'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Creates a namespace with loopback up, registered for cleanup. */
export async function createNetns(prefix: string): Promise<Netns> {
  if (!/^[A-Za-z0-9_-]{1,40}$/.test(prefix)) throw new Error(`invalid netns prefix ${JSON.stringify(prefix)}`);
  installHooks();
  const name = `${prefix}-${process.pid}-${randomBytes(3).toString('hex')}`;
  const children = new Set<ChildProcess>();
  await run('ip', ['netns', 'add', name]);
  live.set(name, children);

  const ns: Netns = {
    name,
    exec: (cmd, args = [], opts) => run('ip', ['netns', 'exec', name, cmd, ...args], opts?.timeoutMs),
    ip: async (args) => (await run('ip', ['-n', name, ...args])).stdout,
    ipJson: async <T>(args: string[]) => {
      const out = (await run('ip', ['-j', '-n', name, ...args])).stdout.trim();
      return (out === '' ? [] : JSON.parse(out)) as T;
    },
    sysctl: async (key) => (await ns.exec('cat', [`/proc/sys/${key}`])).stdout.trim(),
    spawn: (cmd, args = [], opts = {}) => {
      const child = spawnChild('ip', ['netns', 'exec', name, cmd, ...args], { stdio: 'pipe', ...opts });
      children.add(child);
      child.once('exit', () => children.delete(child));
      return child;
    },
    destroy: async () => {
      if (!live.has(name)) return;
      live.delete(name);
      await Promise.all([...children].map((c) => killAndWait(c)));
      await run('ip', ['netns', 'delete', name]).catch(() => undefined);
    },
  };
  try {
    await ns.ip(['link', 'set', 'lo', 'up']);
  } catch (err) {
    await ns.destroy();
    throw err;
  }
  return ns;
}

function killAndWait(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGKILL');
  });
}

/**
 * Collects namespaces for one test and destroys them all at the end, failure or not:
 * `const scope = netnsScope(); t.after(() => scope.destroyAll()); const a = await scope.create('a')`.
 */
export interface NetnsScope {
  create(prefix: string): Promise<Netns>;
  destroyAll(): Promise<void>;
}

export function netnsScope(): NetnsScope {
  const mine: Netns[] = [];
  return {
    async create(prefix) {
      const ns = await createNetns(prefix);
      mine.push(ns);
      return ns;
    },
    async destroyAll() {
      await Promise.all(mine.splice(0).map((ns) => ns.destroy()));
    },
  };
}

/** Runs `fn` with a fresh scope and destroys its namespaces afterwards, whatever happens. */
export async function withNetns<T>(fn: (scope: NetnsScope) => Promise<T>): Promise<T> {
  const scope = netnsScope();
  try {
    return await fn(scope);
  } finally {
    await scope.destroyAll();
  }
}

export interface LinkEnd {
  ns: Netns;
  ifName: string;
  /** CIDRs to assign, e.g. `172.31.0.1/24` or `fd31::1/64`. */
  addrs?: string[];
  mtu?: number;
}

/** Joins two namespaces with a veth pair, assigns the addresses and brings both ends up. */
export async function linkNetns(a: LinkEnd, b: LinkEnd): Promise<void> {
  await a.ns.ip(['link', 'add', a.ifName, 'type', 'veth', 'peer', 'name', b.ifName, 'netns', b.ns.name]);
  for (const end of [a, b]) {
    if (end.mtu) await end.ns.ip(['link', 'set', end.ifName, 'mtu', String(end.mtu)]);
    for (const cidr of end.addrs ?? []) {
      const v6 = cidr.includes(':');
      // nodad: otherwise an IPv6 address stays tentative (unusable) for a second or more.
      await end.ns.ip([...(v6 ? ['-6'] : []), 'addr', 'add', cidr, 'dev', end.ifName, ...(v6 ? ['nodad'] : [])]);
    }
    await end.ns.ip(['link', 'set', end.ifName, 'up']);
  }
}

export interface NodeResult extends ExecResult {
  /** Parses the last non-empty stdout line as JSON. */
  json<T = unknown>(): T;
}

/** Runs a compiled JS file with this Node binary inside the namespace. */
export async function runNodeInNetns(ns: Netns, scriptPath: string, args: string[] = [], opts?: { timeoutMs?: number }): Promise<NodeResult> {
  const res = await ns.exec(process.execPath, [scriptPath, ...args], opts);
  return {
    ...res,
    json<T>() {
      const lines = res.stdout.split('\n').filter((l) => l.trim() !== '');
      const last = lines[lines.length - 1];
      if (last === undefined) throw new Error(`no output from ${scriptPath}; stderr: ${res.stderr}`);
      return JSON.parse(last) as T;
    },
  };
}
