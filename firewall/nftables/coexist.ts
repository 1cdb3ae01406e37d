/**
 * Living next to iptables. On Debian 12 `iptables` is iptables-nft and dockerd (--iptables=true)
 * sets FORWARD's policy to DROP in `ip filter`: a packet our base chain accepted is still dropped
 * by Docker's. So for both families FORWARD gets, at the top, "accept from and to `cali+`"
 * (what our table lets through has been filtered already; what it refused never gets there).
 * The iptables backend needs none of this: its own jump sits in the same FORWARD chain. Called
 * on full applies, checks and removal only (not per change), so spawning iptables is fine.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { WORKLOAD_PREFIX } from '../../lib/dataplane/types';
import { FAMILIES, type Family } from '../desired';
import { tool } from '../iptables/tools';

const run = promisify(execFile);
const WL = `${WORKLOAD_PREFIX}+`;
/** The rules, in the order they end up at the top of FORWARD. */
export const COEXIST_RULES: readonly string[][] = [
  ['-i', WL, '-j', 'ACCEPT'],
  ['-o', WL, '-j', 'ACCEPT'],
];

async function has(f: Family, rule: readonly string[]): Promise<boolean> {
  try {
    await run(tool(f), ['-w', '-C', 'FORWARD', ...rule]);
    return true;
  } catch {
    return false;
  }
}

/** Whether iptables is on this machine at all (a pure nftables host has nothing to coexist with). */
async function present(f: Family): Promise<boolean> {
  try {
    await run(tool(f), ['--version']);
    return true;
  } catch {
    return false;
  }
}

export async function coexistIntact(): Promise<boolean> {
  for (const f of FAMILIES) {
    if (!(await present(f))) continue;
    for (const r of COEXIST_RULES) if (!(await has(f, r))) return false;
  }
  return true;
}

export async function ensureCoexist(): Promise<void> {
  for (const f of FAMILIES) {
    if (!(await present(f))) continue;
    // Inserted last first, so they end in COEXIST_RULES' order at the top.
    for (const r of [...COEXIST_RULES].reverse()) if (!(await has(f, r))) await run(tool(f), ['-w', '-I', 'FORWARD', '1', ...r]);
  }
}

export async function removeCoexist(): Promise<void> {
  for (const f of FAMILIES) {
    if (!(await present(f))) continue;
    for (const r of COEXIST_RULES) {
      // -D removes one copy; more only come from someone else's hand, so a few tries.
      for (let i = 0; i < 5 && (await has(f, r)); i++) await run(tool(f), ['-w', '-D', 'FORWARD', ...r]).catch(() => undefined);
    }
  }
}
