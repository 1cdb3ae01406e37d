/**
 * A real 3-member etcd cluster for failover tests. Each member runs in its own throw-away
 * network namespace with one veth onto a bridge in a "fabric" namespace, so a member can be
 * killed, restarted on its data, or partitioned (nftables drops every packet in and out of its
 * namespace, like a cut cable: connections hang rather than being refused). Clients run in the
 * fabric namespace itself or in hosts attached to the same bridge. Addresses are 172.31.9.0/24
 * inside these namespaces only; every member listens on 2379/2380 in its own namespace, so no
 * free-port hunting is needed. destroy() kills every member and deletes every namespace and
 * data directory, whatever state the members are in.
 */
import { type ChildProcess, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Netns, NetnsScope } from './netns';

export const CLUSTER_GW = '172.31.9.254';
const memberIp = (i: number) => `172.31.9.${i + 1}`;
const PARTITION_TABLE = 'calico_test_partition';

export interface ClusterMember {
  name: string;
  ns: Netns;
  url: string;
  pid(): number | undefined;
}

export interface EtcdCluster {
  /** The namespace holding the bridge; it reaches every member. */
  fabric: Netns;
  members: ClusterMember[];
  /** All client URLs, comma-separated, as ETCD_ENDPOINTS takes them. */
  endpoints: string;
  kill(i: number, signal?: NodeJS.Signals): Promise<void>;
  /** Starts a stopped member again on its old data directory (it rejoins as the same member). */
  restart(i: number): Promise<void>;
  /** Drops every packet to and from member i (its process keeps running). */
  partition(i: number): Promise<void>;
  heal(i: number): Promise<void>;
  /** Index of the member the reachable members name as leader, or undefined while there is none. */
  leader(): Promise<number | undefined>;
  /** Waits until a leader is known and every running, unpartitioned member answers. */
  healthy(timeoutMs?: number): Promise<number>;
  /** Attaches a host namespace to the bridge at 172.31.9.<100+index>. */
  attach(ns: Netns, index: number): Promise<string>;
  destroy(): Promise<void>;
}

interface StatusLine {
  Endpoint: string;
  Status: { header: { member_id: number | string }; leader: number | string };
}

export async function startEtcdCluster(scope: NetnsScope, opts: { size?: number; extraArgs?: string[] } = {}): Promise<EtcdCluster> {
  try {
    execFileSync('etcdctl', ['version'], { stdio: 'ignore' });
  } catch {
    throw new Error('etcdctl is not installed (it tells which member leads): run scripts/install-deps.sh (Debian: etcd-client)');
  }
  const size = opts.size ?? 3;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'calico-test-etcd-cluster-'));
  const children: Array<ChildProcess | undefined> = [];
  const members: ClusterMember[] = [];
  const partitioned = new Set<number>();
  let fabric: Netns | undefined;
  const initialCluster = Array.from({ length: size }, (_, i) => `m${i}=http://${memberIp(i)}:2380`).join(',');

  const spawnMember = (i: number, state: 'new' | 'existing') => {
    const ip = memberIp(i);
    const log = fs.openSync(path.join(dir, `m${i}.log`), 'a');
    const child = members[i].ns.spawn(
      'etcd',
      [
        ...['--name', `m${i}`, '--data-dir', path.join(dir, `m${i}`)],
        ...['--listen-client-urls', `http://${ip}:2379`, '--advertise-client-urls', `http://${ip}:2379`],
        ...['--listen-peer-urls', `http://${ip}:2380`, '--initial-advertise-peer-urls', `http://${ip}:2380`],
        ...['--initial-cluster', initialCluster, '--initial-cluster-state', state, '--initial-cluster-token', path.basename(dir)],
        ...['--log-level', 'warn'],
        ...(opts.extraArgs ?? []),
      ],
      { stdio: ['ignore', log, log] },
    );
    fs.closeSync(log);
    children[i] = child;
  };

  const status = async (i: number): Promise<StatusLine | undefined> => {
    if (!fabric) return undefined;
    try {
      const r = await fabric.exec('etcdctl', ['--endpoints', members[i].url, '--command-timeout=1s', '--dial-timeout=1s', 'endpoint', 'status', '-w', 'json'], {
        timeoutMs: 3000,
      });
      return (JSON.parse(r.stdout) as StatusLine[])[0];
    } catch {
      return undefined;
    }
  };

  const running = (i: number) => {
    const c = children[i];
    return !!c && c.exitCode === null && c.signalCode === null;
  };

  const cluster: EtcdCluster = {
    get fabric() {
      return fabric!;
    },
    members,
    endpoints: '',
    async kill(i, signal = 'SIGKILL') {
      const c = children[i];
      if (!c || !running(i)) return;
      await new Promise<void>((resolve) => {
        c.once('exit', () => resolve());
        c.kill(signal);
      });
    },
    async restart(i) {
      if (running(i)) throw new Error(`member m${i} is still running`);
      spawnMember(i, 'existing');
      await waitUntil(async () => (await status(i)) !== undefined, 20_000, `member m${i} answering after restart`);
    },
    async partition(i) {
      const ns = members[i].ns;
      await ns.exec('nft', ['add', 'table', 'inet', PARTITION_TABLE]);
      for (const hook of ['input', 'output']) {
        await ns.exec('nft', ['add', 'chain', 'inet', PARTITION_TABLE, hook, `{ type filter hook ${hook} priority -300 ; policy drop ; }`]);
        await ns.exec('nft', ['add', 'rule', 'inet', PARTITION_TABLE, hook, hook === 'input' ? 'iif' : 'oif', 'lo', 'accept']);
      }
      partitioned.add(i);
    },
    async heal(i) {
      await members[i].ns.exec('nft', ['delete', 'table', 'inet', PARTITION_TABLE]).catch(() => undefined);
      partitioned.delete(i);
    },
    async leader() {
      const all = await Promise.all(members.map((_, i) => (running(i) && !partitioned.has(i) ? status(i) : Promise.resolve(undefined))));
      const ids = all.map((s) => (s ? String(s.Status.header.member_id) : undefined));
      for (const s of all) {
        if (!s || String(s.Status.leader) === '0') continue;
        const idx = ids.indexOf(String(s.Status.leader));
        if (idx >= 0) return idx;
      }
      return undefined;
    },
    async healthy(timeoutMs = 20_000) {
      let lead: number | undefined;
      await waitUntil(
        async () => {
          lead = await cluster.leader();
          if (lead === undefined) return false;
          const live = members.map((_, i) => i).filter((i) => running(i) && !partitioned.has(i));
          const answers = await Promise.all(live.map((i) => status(i)));
          return answers.every((a) => a && String(a.Status.leader) !== '0');
        },
        timeoutMs,
        'the etcd cluster electing a leader',
      );
      return lead!;
    },
    async attach(ns, index) {
      const ip = `172.31.9.${100 + index}`;
      const peer = `ech${index}`;
      await ns.ip(['link', 'add', 'etcd0', 'type', 'veth', 'peer', 'name', peer, 'netns', fabric!.name]);
      await fabric!.ip(['link', 'set', peer, 'master', 'br0']);
      await fabric!.ip(['link', 'set', peer, 'up']);
      await ns.ip(['addr', 'add', `${ip}/24`, 'dev', 'etcd0']);
      await ns.ip(['link', 'set', 'etcd0', 'up']);
      return ip;
    },
    async destroy() {
      await Promise.all(members.map((_, i) => cluster.kill(i)));
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };

  try {
    fabric = await scope.create('ecf');
    await fabric.ip(['link', 'add', 'br0', 'address', '02:00:00:00:09:fe', 'type', 'bridge']);
    await fabric.ip(['addr', 'add', `${CLUSTER_GW}/24`, 'dev', 'br0']);
    await fabric.ip(['link', 'set', 'br0', 'up']);
    for (let i = 0; i < size; i++) {
      const ns = await scope.create(`ec${i}`);
      await ns.ip(['link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', `ecm${i}`, 'netns', fabric.name]);
      await fabric.ip(['link', 'set', `ecm${i}`, 'master', 'br0']);
      await fabric.ip(['link', 'set', `ecm${i}`, 'up']);
      await ns.ip(['addr', 'add', `${memberIp(i)}/24`, 'dev', 'eth0']);
      await ns.ip(['link', 'set', 'eth0', 'up']);
      const url = `http://${memberIp(i)}:2379`;
      members.push({ name: `m${i}`, ns, url, pid: () => (running(i) ? children[i]?.pid : undefined) });
    }
    cluster.endpoints = members.map((m) => m.url).join(',');
    for (let i = 0; i < size; i++) spawnMember(i, 'new');
    await cluster.healthy(30_000);
  } catch (err) {
    await cluster.destroy();
    throw err;
  }
  return cluster;
}

async function waitUntil(fn: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await fn())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
