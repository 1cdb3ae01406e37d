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
