/**
 * Firewall backends for tests: a backend driven inside a namespace (backend-runner.js), our
 * nftables table as the kernel holds it, and a host namespace wired the way calico node wires
 * one (cali veths to container namespaces, /32 and /128 routes, proxy ARP, the IPv6 link-local
 * gateway) for the conformance suite's traffic.
 */
import { type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import type { Desired } from '../../firewall/desired';
import { deltaToJSON, desiredToJSON, diffDesired } from '../../firewall/diff';
import { addonCandidates } from '../../firewall/nftables/addon';
import type { Netns } from './netns';

export type BackendName = 'iptables' | 'nftables';
export const BACKENDS: readonly BackendName[] = ['iptables', 'nftables'];
const RUNNER = path.join(__dirname, 'backend-runner.js');

export const addonLoads = () => addonCandidates().some((p) => fs.existsSync(p));

export interface BackendRunner {
  apply(d: Desired, prev?: Desired): Promise<unknown>;
  check(d: Desired): Promise<boolean>;
  remove(): Promise<unknown>;
  close(): void;
}

/** A backend living in `ns`, driven request by request (its state lasts as long as the child). */
export function backendRunner(ns: Netns, backend: BackendName): BackendRunner {
  const child: ChildProcess = ns.spawn(process.execPath, [RUNNER, backend]);
  let stderr = '';
  child.stderr?.on('data', (b) => (stderr += String(b)));
  const replies = readline.createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  const call = async (req: unknown) => {
    child.stdin!.write(JSON.stringify(req) + '\n');
    const next = await replies.next();
    if (next.done) throw new Error(`backend runner exited: ${stderr}`);
    const r = JSON.parse(String(next.value)) as { ok: boolean; value?: unknown; error?: string };
    if (!r.ok) throw new Error(r.error);
    return r.value;
  };
  return {
    apply: (d, prev) => call({ op: 'apply', desired: desiredToJSON(d), ...(prev ? { delta: deltaToJSON(diffDesired(prev, d)) } : {}) }),
    check: (d) => call({ op: 'check', desired: desiredToJSON(d) }) as Promise<boolean>,
    remove: () => call({ op: 'remove' }),
    close: () => void child.stdin?.end(),
  };
}

type Elem = string | { concat?: unknown[]; prefix?: { addr: string; len: number }; range?: unknown[] } | unknown[];
function elemText(e: Elem): string {
  if (typeof e === 'string') return e;
  if (Array.isArray(e)) return `${elemText(e[0] as Elem)} : ${JSON.stringify(e[1])}`;
  if (e.concat) return e.concat.map((x) => elemText(x as Elem)).join(' . ');
  if (e.prefix) return `${e.prefix.addr}/${e.prefix.len}`;
  return JSON.stringify(e);
}

/** Our table: chains with their rules (expressions as JSON, no handles) and sets and maps with sorted elements. */
export async function nftTable(ns: Netns): Promise<{ chains: Record<string, string[]>; sets: Record<string, string[]> }> {
  const out = JSON.parse((await ns.exec('nft', ['-j', 'list', 'table', 'inet', 'calico'])).stdout) as { nftables: Array<Record<string, any>> };
  const chains: Record<string, string[]> = {};
  const sets: Record<string, string[]> = {};
  for (const o of out.nftables) {
    if (o.chain) chains[o.chain.name] ??= [];
    if (o.rule) (chains[o.rule.chain] ??= []).push(JSON.stringify(o.rule.expr));
    const s = o.set ?? o.map;
    if (s) sets[s.name] = ((s.elem ?? []) as Elem[]).map(elemText).sort();
  }
  return { chains, sets };
}

// ---------------------------------------------------------------------------------------------
// A host as calico node wires it, for traffic through a backend.

/** Where a probe starts: a container, the outside (`ext`, beyond the host's uplink) or the host itself. */
export type Place = 'a' | 'b' | 'c' | 'u' | 'ext' | 'host';

export interface Box {
  ns: Netns;
  /** Host end of its veth (`u`'s is a `cali…` interface no desired state names). */
  ifName: string;
  v4: string;
  v6?: string;
}

export const PORTS = [22, 80, 81, 443, 8080] as const;
const HOST_MAC = 'ee:ee:ee:ee:ee:ee';
const GW6 = 'fe80::ecee:eeff:feee:eeee';
export const HOST_V4 = '172.31.0.1';
export const EXT_V4 = '172.31.0.254';

interface Prober {
  call(req: Record<string, unknown>): Promise<Record<string, unknown>>;
}

/** A long-lived probe process in a namespace (this file run as a script): servers on {@link PORTS}, connects on request. */
function prober(ns: Netns): Promise<Prober> {
  const child = ns.spawn(process.execPath, [__filename, 'probe']);
  const waiting = new Map<number, { resolve: (r: Record<string, unknown>) => void; reject: (e: Error) => void }>();
  let id = 0;
  readline.createInterface({ input: child.stdout! }).on('line', (line) => {
    const r = JSON.parse(line) as Record<string, unknown> & { id: number };
    waiting.get(r.id)?.resolve(r);
    waiting.delete(r.id);
  });
  child.once('exit', () => {
    for (const w of waiting.values()) w.reject(new Error(`the probe in ${ns.name} exited`));
    waiting.clear();
  });
  const call = (req: Record<string, unknown>) =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      const n = ++id;
      waiting.set(n, { resolve, reject });
      child.stdin!.write(JSON.stringify({ ...req, id: n }) + '\n');
    });
  return call({ op: 'ready' }).then(() => ({ call }));
}

export interface World {
  host: Netns;
  boxes: Record<'a' | 'b' | 'c' | 'u', Box>;
  fw: BackendRunner;
  /** Applies `d` as a delta from the last state applied (in full the first time and when endpointToHost, which is configuration, changes). */
  apply(d: Desired): Promise<void>;
  /** One TCP connection attempt; `src` binds a source address (added to the box's interface). */
  tcp(from: Place, to: string, port: number, src?: string): Promise<boolean>;
  ping(from: Place, to: string): Promise<boolean>;
  destroy(): Promise<void>;
}

const BOXES = { a: 1, b: 2, c: 3, u: 9 } as const;

export async function buildWorld(backend: BackendName, create: (prefix: string) => Promise<Netns>): Promise<World> {
  const host = await create('fwh');
  const ext = await create('fwx');
  await host.ip(['link', 'add', 'uplink', 'type', 'veth', 'peer', 'name', 'down0', 'netns', ext.name]);
  await host.ip(['addr', 'add', `${HOST_V4}/24`, 'dev', 'uplink']);
  await ext.ip(['addr', 'add', `${EXT_V4}/24`, 'dev', 'down0']);
  await host.ip(['link', 'set', 'uplink', 'up']);
  await ext.ip(['link', 'set', 'down0', 'up']);
  // The host's default route leads to ext (proxy ARP answers for 169.254.1.1 only with a route to it); ext routes nowhere further.
  await host.ip(['route', 'add', 'default', 'via', EXT_V4]);
  await ext.ip(['route', 'add', '10.65.0.0/16', 'via', HOST_V4]);
  await host.exec('sysctl', ['-q', '-w', 'net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1']);
  const boxes = {} as World['boxes'];
  for (const [name, n] of Object.entries(BOXES) as Array<[keyof typeof BOXES, number]>) {
    const ns = await create(`fw${name}`);
    const ifName = `cali${name.repeat(3)}${String(n).padStart(8, '0')}`;
    const box: Box = { ns, ifName, v4: `10.65.0.${n}`, ...(name === 'c' ? {} : { v6: `fd65::${n}` }) };
    await host.ip(['link', 'add', ifName, 'address', HOST_MAC, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns.name]);
    for (const [k, v] of [
      [`net.ipv4.conf.${ifName}.proxy_arp`, 1],
      [`net.ipv4.neigh.${ifName}.proxy_delay`, 0],
      [`net.ipv6.conf.${ifName}.accept_ra`, 0],
    ])
      await host.exec('sysctl', ['-q', '-w', `${k}=${v}`]);
    await host.ip(['-6', 'addr', 'add', `${GW6}/64`, 'dev', ifName, 'nodad']);
    await host.ip(['link', 'set', ifName, 'up']);
    await ns.ip(['addr', 'add', `${box.v4}/32`, 'dev', 'eth0']);
    if (box.v6) await ns.ip(['-6', 'addr', 'add', `${box.v6}/128`, 'dev', 'eth0', 'nodad']);
    await ns.ip(['link', 'set', 'eth0', 'up']);
    await ns.ip(['route', 'add', '169.254.1.1', 'dev', 'eth0', 'scope', 'link']);
    await ns.ip(['route', 'add', 'default', 'via', '169.254.1.1', 'dev', 'eth0']);
    await ns.ip(['-6', 'route', 'add', 'default', 'via', GW6, 'dev', 'eth0']);
    await host.ip(['route', 'add', `${box.v4}/32`, 'dev', ifName, 'scope', 'link']);
    if (box.v6) await host.ip(['-6', 'route', 'add', `${box.v6}/128`, 'dev', ifName]);
    boxes[name] = box;
  }
  const places: Record<Place, Netns> = { ...Object.fromEntries(Object.entries(boxes).map(([k, b]) => [k, b.ns])), ext, host } as Record<Place, Netns>;
  const probes = Object.fromEntries(await Promise.all(Object.entries(places).map(async ([k, ns]) => [k, await prober(ns)] as const))) as Record<Place, Prober>;
  const fw = backendRunner(host, backend);
  let last: Desired | undefined;
  return {
    host,
    boxes,
    fw,
    async apply(d) {
      await fw.apply(d, last?.endpointToHost === d.endpointToHost ? last : undefined);
      last = d;
    },
    async tcp(from, to, port, src) {
      if (src && from in boxes) {
        // The address on the box and a host route back to it: only the firewall stands in the way.
        const cidr = `${src}/${src.includes(':') ? 128 : 32}`;
        await places[from].ip(['addr', 'replace', cidr, 'dev', 'eth0', ...(src.includes(':') ? ['nodad'] : [])]);
        await host.ip(['route', 'replace', cidr, 'dev', boxes[from as keyof World['boxes']].ifName]);
      }
      return (await probes[from].call({ op: 'connect', host: to, port, src, timeoutMs: 500 })).ok === true;
    },
    async ping(from, to) {
      return places[from].exec('ping', ['-c', '1', '-W', '0.5', to]).then(
        () => true,
        () => false,
      );
    },
    async destroy() {
      fw.close();
    },
  };
}

/** The probe process: TCP servers on {@link PORTS} (v4 and v6), one connection attempt per request line. */
async function probeMain(): Promise<void> {
  const net = await import('node:net');
  await Promise.all(
    PORTS.map((port) => new Promise<void>((resolve) => net.createServer((c) => c.on('error', () => undefined).end()).listen({ port, host: '::' }, resolve))),
  );
  readline.createInterface({ input: process.stdin }).on('line', (line) => {
    const req = JSON.parse(line) as { id: number; op: string; host: string; port: number; src?: string; timeoutMs: number };
    const reply = (ok: boolean) => process.stdout.write(JSON.stringify({ id: req.id, ok }) + '\n');
    if (req.op !== 'connect') {
      reply(true);
      return;
    }
    const s = net.connect({ host: req.host, port: req.port, ...(req.src ? { localAddress: req.src } : {}) });
    const done = (v: boolean) => {
      clearTimeout(timer);
      s.destroy();
      reply(v);
    };
    const timer = setTimeout(() => done(false), req.timeoutMs);
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

if (require.main === module && process.argv[2] === 'probe') void probeMain();
